"""Calibration of the DMFT error bars: spread of S solves with different seeds / mean reported error.

    PYTHONPATH=$PWD python3 bench/calib_errbars.py --seeds 24 --paths 4000 --T 3 --dt 0.1

For each model (logistic, committee, linreg; tau > 0) and each scalar observable (train/test loss,
entries of Q and M) at t = T/2 and T: ratio = sd over seeds (ddof 1) / mean reported ``*_err``.
Calibrated: ratio ~ 1 (for the default replicas = 8, E[err] = c4(8) sigma = 0.965 sigma, so about
1.04); sampling 90 % range of the ratio ~ 1 +- 1.645 / sqrt(2 (S - 1)). Also the pooled
sqrt(mean z^2) with z = (value - mean over seeds) / err * sqrt(S / (S - 1)) over all observables.
"""
import argparse
import json
import math
import sys
import time

import numpy as np

from dmftgen import Settings, load_model
from dmftgen.dmft import solve


def scalars(model, res, k):
    out = {"train_loss": (res["train_loss"][k], res["train_loss_err"][k]),
           "test_loss": (res["test_loss"][k], res["test_loss_err"][k])}
    Q, Qe = res["Q"][k], res["Q_err"][k]
    for a in range(model.m):
        for b in range(a, model.m):
            out[f"Q{a}{b}"] = (Q[a, b], Qe[a, b])
    M, Me = res["M"][k], res["M_err"][k]
    for a in range(model.m):
        for j in range(model.k):
            out[f"M{a}{j}"] = (M[a, j], Me[a, j])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="logistic,committee,linreg")
    ap.add_argument("--seeds", type=int, default=24)
    ap.add_argument("--paths", type=int, default=4000)
    ap.add_argument("--T", type=float, default=3.0)
    ap.add_argument("--dt", type=float, default=0.1)
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--replicas", default="auto")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    rep = a.replicas if a.replicas == "auto" else int(a.replicas)
    rows = []
    t0 = time.perf_counter()
    for name in a.models.split(","):
        model = load_model(name)
        st = Settings(delta=2.0, tau=a.tau, T=a.T, dt=a.dt)
        N = st.n_steps
        ks = (N // 2, N)
        vals = {}
        for s in range(a.seeds):
            res = solve(model, st.replace(seed=1000 + s), paths=a.paths, replicas=rep)
            assert res.ok, res.message
            for k in ks:
                for obs, (v, e) in scalars(model, res, k).items():
                    vals.setdefault((obs, k), []).append((v, e))
        for (obs, k), ve in vals.items():
            v, e = np.array(ve).T
            if np.mean(e) <= 0:
                continue
            S = len(v)
            z = (v - v.mean()) / e * math.sqrt(S / (S - 1))
            rows.append({"model": name, "obs": obs, "t": float(st.times[k]), "ratio": float(v.std(ddof=1) / e.mean()),
                         "rms_z": float(np.sqrt(np.mean(z ** 2)))})
    S = a.seeds
    band = 1.645 / math.sqrt(2 * (S - 1))
    print(f"# {a.seeds} solves per model, paths={a.paths}, replicas={a.replicas}, T={a.T}, dt={a.dt}, "
          f"tau={a.tau}, delta=2; wall {time.perf_counter() - t0:.0f}s")
    print(f"# ratio = sd over seeds / mean reported err; 90 % sampling range ~ [{1 - band:.2f}, {1 + band:.2f}]")
    print(f"{'model':<10} {'obs':<11} {'t':>5} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:<10} {r['obs']:<11} {r['t']:>5.3g} {r['ratio']:>6.2f}")
    rat = np.array([r["ratio"] for r in rows])
    pooled = math.sqrt(np.mean([r["rms_z"] ** 2 for r in rows]))
    print(f"# all {len(rows)} entries: median ratio {np.median(rat):.3f}, range [{rat.min():.2f}, {rat.max():.2f}], "
          f"in [0.8, 1.25]: {np.mean((rat >= 0.8) & (rat <= 1.25)):.0%}; pooled RMS z {pooled:.3f}")
    for name in a.models.split(","):
        rr = [r for r in rows if r["model"] == name]
        pz = math.sqrt(np.mean([r["rms_z"] ** 2 for r in rr]))
        print(f"#   {name}: pooled RMS z {pz:.3f} over {len(rr)} entries")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
