"""Issue 12: the theta-side's per-row products on packed rows against the same loops on square arrays.

    NUMBA_NUM_THREADS=1 PYTHONPATH=$PWD python3 bench/bench_packed.py            # n = 1600 (m = 1, K = 1600)
    NUMBA_NUM_THREADS=1 PYTHONPATH=$PWD python3 bench/bench_packed.py --n 1000   # committee K = 500 (m = 2)

Every product of a forward-sweep row reads the nonzero half of a causal n x n matrix (R_theta,
the factor L of S_U, the input rows W): ``lower_matmul`` (R_theta row k+1 = K_ell row k R_theta;
the input row R_theta[k] L), ``det_tangent_row`` (the control variate's mean: R_theta's rows last
first) and ``lower_dots`` (the self-checks' C_theta row from W). The "square" variants below are
the loops as they were before issue 12's packed layout (the same arithmetic on A[i, :w_i] of a
square array); the packed ones are ``dmftgen.dmft._linalg``. Printed: median ms per call of the
last row (the full nonzero half, n^2 / 2 doubles) and the GB/s that makes, "cold" rotating over 6
matrices (6 x 20 MB at n = 1600: from main memory, as in a solve, where the paths' histories
evict the caches between rows) and "warm" (one matrix, from cache).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from dmftgen.dmft._linalg import PackedRows, det_tangent_row, dot, lower_dots, lower_matmul


@njit(cache=True, nogil=True, error_model="numpy")
def square_matmul(x, A, n, out):
    """Before: x[:, :n] @ A[:n, :n], row i of A read as A[i, :i] (lower-triangular)."""
    for a in range(x.shape[0]):
        for j in range(n):
            out[a, j] = 0.0
    for i in range(n):
        Ai = A[i]
        for a in range(x.shape[0]):
            xi = x[a, i]
            oa = out[a]
            for j in range(i):
                oa[j] += xi * Ai[j]


@njit(cache=True, nogil=True, error_model="numpy")
def square_dots(x, A, n, out):
    for i in range(n):
        Ai = A[i]
        for a in range(x.shape[0]):
            out[a, i] = dot(x[a], Ai, 0, i)


@njit(cache=True, nogil=True, error_model="numpy")
def square_det(k, R, G, Gk, delta, dt, out):
    """Before: det_tangent_row on the square R_theta (M = 1), its rows read last first."""
    acc = np.zeros(max(k, 1))
    z = Gk[0, 0]
    for m in range(k, 0, -1):
        Rrow = R[m]
        for col in range(m):
            acc[col] += z * Rrow[col]
        z = -acc[m - 1] * G[m - 1, 0, 0] * dt / delta
        out[0, m - 1] = z


def timed(f, reps):
    ts = []
    for r in range(reps):
        t0 = time.perf_counter()
        f(r)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1600)
    ap.add_argument("--reps", type=int, default=30)
    a = ap.parse_args()
    n = a.n
    rng = np.random.default_rng(0)
    sq = [np.tril(rng.standard_normal((n, n)), -1) for _ in range(6)]
    asc, desc = [], []
    for A in sq:
        p, q = PackedRows.causal(n, 1, 0, n), PackedRows.causal(n, 1, 0, n, reverse=True)
        p.set_rows(0, A)
        q.set_rows(0, A)
        asc.append(p)
        desc.append(q)
    x = rng.standard_normal((1, n))
    out, out2 = np.zeros((1, n)), np.zeros((1, n))
    G = 0.1 * rng.standard_normal((n, 1, 1))
    # the two layouts give the same numbers (up to the order of the sums)
    square_matmul(x, sq[0], n, out)
    lower_matmul(x, asc[0].data, asc[0].start, asc[0].width, n, False, out2)
    assert np.allclose(out, out2)
    square_det(n - 1, sq[0], G, G[0], 2.0, 0.01, out)
    det_tangent_row(n - 1, desc[0].data, desc[0].start, G, G[0], 2.0, 0.01, out2)
    assert np.allclose(out[:, : n - 1], out2[:, : n - 1])
    square_dots(x, sq[0], n, out)
    cases = {
        "lower_matmul": (lambda r: square_matmul(x, sq[r], n, out),
                         lambda r: lower_matmul(x, asc[r].data, asc[r].start, asc[r].width, n, False, out2)),
        "lower_matmul (reversed layout)": (lambda r: square_matmul(x, sq[r], n, out),
                                           lambda r: lower_matmul(x, desc[r].data, desc[r].start, desc[r].width,
                                                                  n, True, out2)),
        "det_tangent_row": (lambda r: square_det(n - 1, sq[r], G, G[0], 2.0, 0.01, out),
                            lambda r: det_tangent_row(n - 1, desc[r].data, desc[r].start, G, G[0], 2.0, 0.01, out2)),
        "lower_dots": (lambda r: square_dots(x, sq[r], n, out),
                       lambda r: lower_dots(x, asc[r].data, asc[r].start, asc[r].width, n, n, out2)),
    }
    gb = n * n / 2 * 8 / 1e9
    print(f"n = {n}: the nonzero half is {gb * 1e3:.1f} MB; median of {a.reps} calls")
    for name, (fs, fp) in cases.items():
        for regime, pick in (("cold", lambda r: r % 6), ("warm", lambda r: 0)):
            ts = timed(lambda r: fs(pick(r)), a.reps)
            tp = timed(lambda r: fp(pick(r)), a.reps)
            print(f"{name:32s} {regime}: square {ts * 1e3:7.3f} ms ({gb / ts:5.1f} GB/s)   packed "
                  f"{tp * 1e3:7.3f} ms ({gb / tp:5.1f} GB/s)   x{ts / tp:4.2f}")


if __name__ == "__main__":
    main()
