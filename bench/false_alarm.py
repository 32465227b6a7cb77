"""False-alarm rate of the compare verdict: the whole pipeline (simulation + DMFT) at many seeds.

    PYTHONPATH=$PWD python3 bench/false_alarm.py --runs 40 --config logistic-sgf

Each run uses Settings(seed=s) for s = 0..runs-1 (simulation data, dynamics and DMFT streams all
change). Reports the fraction of runs with the family p < 0.01 (DISAGREEMENT at the 1 % level)
and < 0.05, the binomial standard error, and the RMS / mean of the normal scores of all tests.
"""
import argparse
import math
import sys
import time

import numpy as np

from dmftgen import Settings, load_model
from dmftgen.comparison import compare

CONFIGS = {
    # name: (model, methods, d, settings kwargs)
    "logistic-sgf": ("logistic", ("sgf",), 512, dict(delta=2.0, tau=0.5, T=2.0, dt=0.1)),
    "committee-sgf-2d": ("committee", ("sgf",), (256, 512), dict(delta=2.0, tau=0.3, T=2.0, dt=0.1)),
    "linreg-sgd": ("linreg", ("sgd",), 512, dict(delta=2.0, tau=0.2, T=2.0, dt=0.05)),
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="logistic-sgf", choices=sorted(CONFIGS))
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--paths", type=int, default=4000)
    a = ap.parse_args(argv)
    name, methods, d, kw = CONFIGS[a.config]
    model = load_model(name)
    ps, zs, words = [], [], []
    t0 = time.perf_counter()
    for s in range(a.runs):
        st = Settings(seed=s, **kw)
        cmp = compare(model, st, d=d, seeds=a.seeds, methods=methods, paths=a.paths)
        v = cmp.verdict
        ps.append(v["p"])
        words.append(v["word"])
        zs += [r["zn"] for r in v["tests"] if np.isfinite(r["zn"])]
    ps = np.array(ps)
    zs = np.array(zs)
    n = len(ps)
    for lev in (0.01, 0.05):
        r = float(np.mean(ps < lev))
        print(f"{a.config}: P(p_family < {lev:g}) = {r:.3f} ({int(np.sum(ps < lev))}/{n}; binomial s.e. "
              f"{math.sqrt(max(lev * (1 - lev), 1e-12) / n):.3f} at the nominal rate)")
    print(f"{a.config}: {n} runs, K = {v['K']} tests each, seeds={a.seeds}, d={d}, paths={a.paths}, "
          f"{kw}; median family p {np.median(ps):.2f}; normal scores of all {zs.size} tests: "
          f"RMS {math.sqrt(np.mean(zs ** 2)):.3f}, mean {zs.mean():+.3f}; wall {time.perf_counter() - t0:.0f}s")
    print(f"{a.config}: verdicts {dict(zip(*np.unique(words, return_counts=True)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
