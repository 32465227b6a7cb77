"""Stationary state (dmftgen.stationary): checks against ERM and long SGF simulations, with figures.

    python bench/bench_stationary.py --case erm      # tau = 0, lam = 0.1: vs scipy ERM at d = 2000, 4000
    python bench/bench_stationary.py --case law      # tau = 0.5: theta-row law vs SGF at d = 2000, T = 60;
                                                     # fluctuation-dissipation test (not Gibbs)
    nice -n 10 python bench/bench_stationary.py --case cost --repeats 3
                                                     # CPU seconds (time.process_time) per point at the
                                                     # default accuracy: logistic tau 0 / 0.5, committee
                                                     # tau 0.2 (lam 0.1, delta 2, dt 0.2); medians over seeds

Writes out/stationary/<case>.json and docs/img/stationary_<case>_logistic.png.

* ``erm``: the tau = 0 stationary state of logistic regression with ridge lam = 0.1 (delta = 2,
  beta = 5) against direct minimisation of the empirical risk (dmftgen.dmft.erm, L-BFGS to a
  gradient norm < 1e-8) at d = 2000 and 4000, 3 seeds each.
* ``law``: tau = 0.5, dt = 0.2: the law of a theta row (Gaussian given theta*) against the rows
  of SGF simulations (Euler--Maruyama at the same dt, so both target the same discrete
  stationary state) at d = 2000, t = 60 (about 11 relaxation times), quantiles and W2 with its
  sampling floor (dmftgen.w2). Not Gibbs: a Gibbs law exp(-F/T) of an isotropic Langevin
  dynamics satisfies the fluctuation-dissipation theorem c(0) - c(u) = T chi(u),
  chi(u) = dt sum_{n<=u} R(n), with one temperature T at every lag; the SGF stationary state's
  ratio (c(0) - c(u)) / chi(u) is plotted against u (constant for Gibbs).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def case_erm(dims=(2000, 4000), seeds=3):
    from dmftgen import Settings, load_model, stationary
    from dmftgen.dmft.erm import erm

    model = load_model("logistic")
    st = Settings(delta=2.0, tau=0.0, lam=0.1, dt=0.2)
    t0 = time.perf_counter()
    res = stationary(model, st)
    t_stat = time.perf_counter() - t0
    keys = ["train_loss", "test_loss", "train_error", "test_error", "Q", "M"]
    out = {"stationary": {k: [float(np.ravel(res[k])[0]), float(np.ravel(res[k + "_err"])[0])] for k in keys},
           "stationary_time_s": t_stat, "erm": {}}
    for d in dims:
        runs = []
        for s in range(seeds):
            t1 = time.perf_counter()
            r = erm(model, st.replace(seed=s), d)
            runs.append({k: float(np.ravel(r[k])[0]) for k in keys} | {"grad_norm": r["grad_norm"],
                                                                       "time_s": time.perf_counter() - t1})
        out["erm"][str(d)] = runs
    return out


def plot_erm(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["train_loss", "test_loss", "train_error", "test_error", "Q", "M"]
    fig, axes = plt.subplots(1, len(keys), figsize=(15, 3.2))
    for ax, k in zip(axes, keys):
        v, e = out["stationary"][k]
        ax.axhspan(v - 2 * e, v + 2 * e, color="C0", alpha=0.3, label="stationary DMFT (2 s.e.)")
        ax.axhline(v, color="C0")
        for j, (d, runs) in enumerate(out["erm"].items()):
            x = np.full(len(runs), j) + np.linspace(-0.1, 0.1, len(runs))
            ax.plot(x, [r[k] for r in runs], "o", color=f"C{j + 1}", label=f"ERM d = {d}")
        ax.set_xticks(range(len(out["erm"])), [f"d={d}" for d in out["erm"]])
        ax.set_title(k, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle("logistic, delta = 2, lam = 0.1, tau = 0: stationary DMFT state vs scipy ERM (3 seeds per d)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def case_law(d=2000, seeds=2, T=60.0):
    from dmftgen import Settings, load_model, simulate, stationary
    from dmftgen.w2 import w2_against_dmft

    model = load_model("logistic")
    st = Settings(delta=2.0, tau=0.5, lam=0.1, dt=0.2, T=T, seed=3)
    t0 = time.perf_counter()
    res = stationary(model, st, theta_samples=20000)
    t_stat = time.perf_counter() - t0
    t1 = time.perf_counter()
    sim = simulate(model, st, d=d, seeds=seeds, theta_rows=d)
    t_sim = time.perf_counter() - t1
    rows = np.asarray(sim["theta_rows"])[:, -1, :, 0]  # (seeds, d)
    TS = np.asarray(res["theta_samples"])[0]
    w2 = [w2_against_dmft(rows[i][:, None], TS, np.random.default_rng(i)) for i in range(seeds)]
    late = sim.t >= T - 20
    out = {"stationary_time_s": t_stat, "sim_time_s": t_sim, "d": d, "seeds": seeds, "T": T,
           "w2": [x["w2"] for x in w2], "w2_floor": [float(np.mean(x["floor_all"])) for x in w2],
           "sim_late": {k: [float(np.mean(sim[k][late])), float(np.mean(sim[k + "_sem"][late]))]
                        for k in ("train_loss", "test_loss")},
           "stationary": {k: [float(np.ravel(res[k])[0]), float(np.ravel(res[k + "_err"])[0])]
                          for k in ("train_loss", "test_loss", "Q", "M")},
           "sim_final_Q": float(np.ravel(sim["Q"][-1])[0]), "sim_final_M": float(np.ravel(sim["M"][-1])[0])}
    qs = np.linspace(0.005, 0.995, 199)
    out["quantiles"] = {"q": qs.tolist(), "dmft": np.quantile(TS[:, 0], qs).tolist(),
                        "sim": np.quantile(rows.ravel(), qs).tolist()}
    # fluctuation-dissipation ratio of the stationary state
    C = np.asarray(res["C_lag"])[:, 0, 0]
    R = np.asarray(res["R_lag"])[:, 0, 0]
    chi = st.dt * np.cumsum(R)
    u = np.asarray(res["lag"])
    W = min(len(C), len(chi))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (C[0] - C[:W]) / chi[:W]
    out["fdt"] = {"u": u[1:W].tolist(), "ratio": ratio[1:W].tolist(), "C0_minus_C": (C[0] - C[1:W]).tolist(),
                  "chi": chi[1:W].tolist(), "tau_E_ell2_over_2": 0.5 * st.tau * float(res["E_ell_ell"][0, 0, 0])}
    return out


def plot_law(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    q = out["quantiles"]
    ax = axes[0]
    ax.plot(q["dmft"], q["sim"], ".", ms=3, label=f"SGF d = {out['d']}, t = {out['T']:g}, {out['seeds']} seeds")
    lo, hi = min(q["dmft"]), max(q["dmft"])
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="y = x")
    ax.set_xlabel("stationary DMFT quantile of a theta row")
    ax.set_ylabel("simulated quantile")
    ax.set_title(f"Q-Q: W2 = {np.mean(out['w2']):.3f} (sampling floor {np.mean(out['w2_floor']):.3f})", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    f = out["fdt"]
    ax.plot(f["u"], f["ratio"], "-", label="(C(0) - C(u)) / chi(u)")
    ax.axhline(f["ratio"][0], color="gray", ls=":", lw=0.8, label="Gibbs: one temperature at all lags")
    ax.set_xlabel("lag u")
    ax.set_ylabel("effective temperature")
    ax.set_title("fluctuation-dissipation ratio: not constant -> not Gibbs", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle("logistic, delta = 2, lam = 0.1, tau = 0.5, dt = 0.2: stationary law", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


COST_CASES = {"logistic_tau0": ("logistic", 0.0), "logistic_tau0.5": ("logistic", 0.5),
              "committee_tau0.2": ("committee", 0.2)}


def case_cost(repeats=3, names=None):
    """CPU time (time.process_time: all threads of this process) of one default-accuracy point,
    after one small warm-up solve per model (numba's on-disk cache loaded); medians over
    ``repeats`` seeds, with the values, their error budgets and the passes per replica."""
    from dmftgen import Settings, load_model, stationary

    out = {}
    for name in names or COST_CASES:
        model_name, tau = COST_CASES[name]
        model = load_model(model_name)
        st = Settings(delta=2.0, tau=tau, lam=0.1, dt=0.2)
        stationary(model, st, replicas=2, paths=400, samples=2000, max_iter=2, window=5.0)
        runs = []
        for seed in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            res = stationary(model, st.replace(seed=seed))
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            keys = ["train_loss", "test_loss", "Q", "M", "relaxation_time"] + [
                f"{s}_{q}" for q in model.metrics for s in ("train", "test")]
            runs.append({"seed": seed, "cpu_s": cpu, "wall_s": wall, "status": res.status,
                         "passes": res.meta["replica_iterations"],
                         "values": {k: [np.ravel(res[k][0]).tolist(), np.ravel(res[k + "_err"][0]).tolist()]
                                    for k in keys},
                         "budget": {k: res.meta["error_budget"][k] for k in ("train_loss", "test_loss", "Q", "M")}})
            print(f"{name} seed {seed}: cpu {cpu:.2f} s, wall {wall:.1f} s, {res.status}, passes {runs[-1]['passes']}",
                  flush=True)
        out[name] = {"runs": runs, "cpu_median_s": float(np.median([r["cpu_s"] for r in runs])),
                     "wall_median_s": float(np.median([r["wall_s"] for r in runs]))}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=("erm", "law", "cost"), required=True)
    ap.add_argument("--repeats", type=int, default=3, help="cost: seeds per point (default 3)")
    ap.add_argument("--points", default=None, help=f"cost: comma list of {sorted(COST_CASES)} (default all)")
    args = ap.parse_args(argv)
    outdir = ROOT / "out" / "stationary"
    outdir.mkdir(parents=True, exist_ok=True)
    if args.case == "cost":
        out = case_cost(args.repeats, args.points.split(",") if args.points else None)
        (outdir / "cost.json").write_text(json.dumps(out, indent=1))
        for name, o in out.items():
            r0 = o["runs"][0]["values"]
            print(f"{name}: median CPU {o['cpu_median_s']:.2f} s (wall {o['wall_median_s']:.1f} s); seed 0: "
                  + ", ".join(f"{k} {v[0]:.5g} +- {e[0]:.2g}" for k, (v, e) in r0.items()))
        print(f"-> {outdir / 'cost.json'}")
        return
    img = ROOT / "docs" / "img" / f"stationary_{args.case}_logistic.png"
    out = case_erm() if args.case == "erm" else case_law()
    (outdir / f"{args.case}.json").write_text(json.dumps(out, indent=1))
    (plot_erm if args.case == "erm" else plot_law)(out, img)
    print(json.dumps({k: v for k, v in out.items() if k not in ("quantiles", "fdt")}, indent=1))
    if "fdt" in out:
        f = out["fdt"]
        print("FDT ratio at lags", [round(x, 3) for x in f["u"][::15]], [round(x, 4) for x in f["ratio"][::15]])
    print(f"-> {outdir / (args.case + '.json')}, {img}")


if __name__ == "__main__":
    main()
