"""Issue 12: how compressible are the two-time kernels? Numerical ranks of off-diagonal blocks.

    PYTHONPATH=$PWD python3 bench/rank_kernels.py                       # committee, dt 0.01 (K = 501), P 4000
    PYTHONPATH=$PWD python3 bench/rank_kernels.py --model logistic --delta 2 --tau 0.5 --dt 0.01

A hierarchical low-rank (HODLR) representation of a history sum pays only where the kernel's
far off-diagonal blocks have a small numerical rank. This solves once and prints, for R_theta,
C_theta, S_U and K_ell (flattened to (K m) x (K m)), the singular values of the blocks of a
HODLR partition's first levels (rows of the second half against columns of the first half, and
so on), as the number of singular values above 1e-3, 1e-4, 1e-6 and 1e-8 of the largest. The
deterministic theta-side kernels (R_theta, C_theta) are smooth in both times; S_U and K_ell are
Monte Carlo estimates, and their noise is full rank.
"""
from __future__ import annotations

import argparse

import numpy as np

TOLS = (1e-3, 1e-4, 1e-6, 1e-8)


def flat(A):
    """(K, K, m, m) -> (K m, K m), row k m + a, column l m + b."""
    A = np.asarray(A)
    if A.ndim == 4:
        return A.transpose(0, 2, 1, 3).reshape(A.shape[0] * A.shape[2], A.shape[1] * A.shape[3])
    return A


def blocks(n, levels=3):
    """HODLR off-diagonal blocks (rows, cols) of the lower triangle of an n x n matrix."""
    out = []
    for lev in range(levels):
        size = n >> (lev + 1)
        for s in range(0, n - 2 * size + 1, 2 * size):
            out.append((slice(s + size, s + 2 * size), slice(s, s + size)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="committee")
    ap.add_argument("--delta", type=float, default=3.0)
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--T", type=float, default=5.0)
    ap.add_argument("--dt", type=float, default=0.01)
    ap.add_argument("--paths", type=int, default=4000)
    ap.add_argument("--levels", type=int, default=3)
    a = ap.parse_args()
    from dmftgen.config import Settings
    from dmftgen.dmft import solve
    from dmftgen.model import load_model

    res = solve(load_model(a.model), Settings(T=a.T, dt=a.dt, delta=a.delta, tau=a.tau), paths=a.paths)
    print(f"{a.model}: delta {a.delta}, tau {a.tau}, T {a.T}, dt {a.dt}, P {a.paths}: {res.status}")
    print("ranks at relative tolerance " + ", ".join(f"{t:g}" for t in TOLS))
    for key in ("R_theta", "C_theta", "S_U", "K_ell"):
        A = flat(res[key])
        top = np.abs(A).max()
        print(f"{key} {A.shape}")
        for rows, cols in blocks(A.shape[0], a.levels):
            B = A[rows, cols]
            s = np.linalg.svd(B, compute_uv=False)
            ranks = [int((s > t * s[0]).sum()) if s.size and s[0] > 0 else 0 for t in TOLS]
            print(f"  rows {rows.start}:{rows.stop} cols {cols.start}:{cols.stop}  max|B|/max|A| "
                  f"{np.abs(B).max() / top:.1e}  ranks {ranks} of {min(B.shape)}")


if __name__ == "__main__":
    main()
