"""Randomised QMC for the static per-path draws (issue 12): error across seeds, with and without.

    python bench/bench_rqmc.py                 # Figure 1 setting, P = 2e4, 12 seeds each way
    python bench/bench_rqmc.py --model committee --seeds 8

For each of ``--seeds`` seeds the DMFT is solved with ``static_qmc=False`` (i.i.d. r*, initial
field, label noises) and ``static_qmc=True`` (scrambled Sobol, dmftgen.dmft.streams). Printed per
observable at t = T: the mean over seeds, the sd across seeds (the true Monte Carlo error of one
solve, +-1/sqrt(2(S-1)) relative) and the rms of the solves' own error bars (between-replica).
A variance-reduction lever is worth its name when the sd falls at the same cost and the claimed
errors follow it; the means must agree within sd / sqrt(S).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from dmftgen.config import Settings
from dmftgen.dmft import solve
from dmftgen.model import load_model

SETTINGS = {"logistic": dict(delta=2.0, tau=0.5, T=5.0, dt=0.05),
            "committee": dict(delta=3.0, tau=0.2, T=5.0, dt=0.05)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="logistic", choices=sorted(SETTINGS))
    ap.add_argument("--paths", type=int, default=20000)
    ap.add_argument("--seeds", type=int, default=12)
    args = ap.parse_args()
    model = load_model(args.model)
    for qmc in (False, True):
        vals, errs, cpu = {}, {}, []
        for seed in range(args.seeds):
            c = time.process_time()
            r = solve(model, Settings(**SETTINGS[args.model], seed=seed), paths=args.paths, static_qmc=qmc)
            cpu.append(time.process_time() - c)
            for key in ("test_loss", "train_loss", "Q", "M"):
                vals.setdefault(key, []).append(float(np.ravel(r[key][-1])[0]))
                errs.setdefault(key, []).append(float(np.ravel(r[key + "_err"][-1])[0]))
        print(f"static_qmc={qmc}: {args.model}, P = {args.paths}, {args.seeds} seeds, "
              f"median CPU {np.median(cpu):.2f} s")
        for key in vals:
            v, e = np.array(vals[key]), np.array(errs[key])
            print(f"   {key:10s} mean {v.mean():.5f}  sd across seeds {v.std(ddof=1):.5f}  "
                  f"rms claimed error {np.sqrt((e ** 2).mean()):.5f}")


if __name__ == "__main__":
    main()
