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

Then (``--greedy``, R_theta only) what a row-causal compression of the adjoint would save. The
adjoint of row k needs R_theta[m, l] for l < m <= k, and the rows arrive one step at a time, so a
far block's column basis must exist before the rows that use it are known: here it is grown
greedily, row by row. Columns are cut into blocks J of B steps; rows m >= end(J) + D are "far"
for J and are projected on J's basis, which gains the normalised residual of a row whenever that
residual exceeds ``tol`` times the row's largest entry. Printed: the ranks reached and the
multiply-adds of the adjoint at row k = K - 1 (near part exact, far part through the basis:
building sum_m Z_m U_J[m] and applying it) as a fraction of the dense recursion.
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


def greedy(R, M, B, D, tol):
    """Greedy row-by-row column bases of the far blocks of R (flat, K M square); returns the ranks
    and the adjoint's multiply-adds at the last row relative to the dense recursion."""
    K = R.shape[0] // M
    nJ = K // B
    ranks = {}
    for J in range(nJ):
        cols = slice(J * B * M, (J + 1) * B * M)
        m0 = (J + 1) * B + D
        if m0 >= K:
            continue
        V = np.zeros((B * M, 0))
        for row in range(m0 * M, K * M):
            x = R[row, cols]
            scale = np.abs(R[row]).max()
            res = x - V @ (V.T @ x)
            res = res - V @ (V.T @ res)     # re-orthogonalised (classical Gram-Schmidt twice)
            if np.abs(res).max() > tol * scale:
                V = np.column_stack([V, res / np.linalg.norm(res)])
        ranks[J] = V.shape[1]
    k = K - 1
    near = far = 0
    for J in range(nJ):
        l1, l2 = J * B, (J + 1) * B
        m0 = l2 + D if J in ranks else K
        for l in range(l1, min(l2, k)):
            near += (min(m0, k + 1) - l - 1) * M ** 3
        if J in ranks and m0 <= k:
            far += (k + 1 - m0) * M * M * ranks[J] + B * M * M * ranks[J]
    return [ranks[J] for J in sorted(ranks)], (near + far) / (k * (k + 1) // 2 * M ** 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="committee")
    ap.add_argument("--delta", type=float, default=3.0)
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--T", type=float, default=5.0)
    ap.add_argument("--dt", type=float, default=0.01)
    ap.add_argument("--paths", type=int, default=4000)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--greedy", action="store_true", help="also the row-causal greedy bases of R_theta")
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
    if a.greedy:
        R = flat(res["R_theta"])
        M = np.asarray(res["R_theta"]).shape[2]
        for tol in (2.0 ** -24, 1e-6, 1e-5):
            for B in (64, 128):
                for D in (0, B // 2, B):
                    ranks, frac = greedy(R, M, B, D, tol)
                    print(f"greedy tol {tol:.1e} B {B:3d} D {D:3d}: ranks {ranks}, adjoint multiply-adds at "
                          f"the last row {frac:.2f} of dense")


if __name__ == "__main__":
    main()
