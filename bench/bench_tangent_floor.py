"""How many tangent paths does a solve need? Error across seeds at two tangent counts (issue 12).

    python bench/bench_tangent_floor.py                                  # logistic K = 400, P = 2000
    python bench/bench_tangent_floor.py --model committee --K 100 --paths 20000
    python bench/bench_tangent_floor.py --counts 1000,160 --seeds 6

For each count (``tangent_paths``, over all replicas; the solve rounds it up to whole SIMD lanes
and reports the count it ran in ``meta["tangents"]``) the DMFT is solved for ``--seeds`` seeds;
printed: median CPU, the sd across seeds of the test loss, train loss and Q at t = T (the true
Monte Carlo error of one solve), the rms of the solves' own error bars, and the worst self-check
z / threshold. The tangents are an unbiased subset of the paths (docs/theory.md §3): fewer of them
can only add noise to K_ell, which shows in these errors if it matters.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from dmftgen.config import Settings
from dmftgen.dmft import solve
from dmftgen.model import load_model

SETTINGS = {"logistic": dict(delta=2.0, tau=0.5, T=5.0), "committee": dict(delta=3.0, tau=0.2, T=5.0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="logistic", choices=sorted(SETTINGS))
    ap.add_argument("--K", type=int, default=400, help="steps: dt = T / K")
    ap.add_argument("--paths", type=int, default=2000)
    ap.add_argument("--counts", default="1000,160", help="tangent_paths values (comma-separated)")
    ap.add_argument("--seeds", type=int, default=6)
    args = ap.parse_args()
    model = load_model(args.model)
    kw = SETTINGS[args.model]
    for nt in (int(x) for x in args.counts.split(",")):
        vals, errs, cpu, worst = [], [], [], 0.0
        for seed in range(args.seeds):
            c = time.process_time()
            r = solve(model, Settings(**kw, dt=kw["T"] / args.K, seed=seed), paths=args.paths, tangent_paths=nt)
            cpu.append(time.process_time() - c)
            vals.append([float(np.ravel(r[k][-1])[0]) for k in ("test_loss", "train_loss", "Q")])
            errs.append([float(np.ravel(r[k + "_err"][-1])[0]) for k in ("test_loss", "train_loss", "Q")])
            worst = max([worst] + [c_["worst_z"] / c_["threshold"] for c_ in r.meta["checks"]
                                   if c_["threshold"] > 0 and c_["name"] != "kernel consistency"])
        v, e = np.array(vals), np.array(errs)
        print(f"{args.model} K = {args.K} P = {args.paths} tangent_paths = {nt} ({r.meta.get('tangents')}): "
              f"median CPU {np.median(cpu):.1f} s; sd across seeds (test, train, Q) "
              f"{np.array2string(v.std(0, ddof=1), precision=5)}, rms claimed "
              f"{np.array2string(np.sqrt((e ** 2).mean(0)), precision=5)}; worst check z/threshold {worst:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
