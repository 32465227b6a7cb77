"""CPU time of one column of the QR sampler (``dmftgen.dmft._linalg._qr_append_col``).

The causal factor of S_U near tau = 0 is built one column at a time by classical Gram--Schmidt
(twice) against ``rank`` orthonormal rows of length P. Prints the median CPU and wall milliseconds
per column for a few (P, rank), e.g. P = 10^4, rank 130 (the committee at tau = 0).

    python bench/bench_qr_sampler.py [--repeats 50]
"""
import argparse
import time

import numpy as np

from dmftgen.dmft._linalg import _qr_append_col


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    for P, r in [(2500, 100), (10000, 130), (80000, 130)]:
        Qt = np.linalg.qr(rng.standard_normal((P, r)))[0].T.copy()
        v0 = rng.standard_normal(P)
        coef = np.zeros(r)
        _qr_append_col(Qt, r, v0.copy(), coef, 1e-12)  # compile
        cpu, wall = [], []
        for _ in range(a.repeats):
            v = v0.copy()
            c0, w0 = time.process_time(), time.perf_counter()
            _qr_append_col(Qt, r, v, coef, 1e-12)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        print(f"P = {P:6d}, rank {r}: median {1e3 * np.median(cpu):.2f} ms CPU, {1e3 * np.median(wall):.2f} ms wall per column")


if __name__ == "__main__":
    main()
