"""The adjoint's far field: rows of R_theta interpolated block by block (issue 12).

The adjoint tangent recursion of row k (``templates/dmft.py``) forms, for l = k - 1, ..., 0,

    s_l = sum_{l < m <= k} Z_m R_theta[m, l],

O(k^2) per row and tangent path, K^3 / 6 over a solve: the largest cost of a fine grid. As a
function of its first time m, R_theta[m, l] is smooth away from the diagonal: column l is the
response to a kick at step l, the solution of the theta-side's linear recursion from there. (In
its second time l it is not: two kicks one step apart see different Monte Carlo estimates of
K_ell, and their difference is noise; committee dt 0.01, P 4000: interpolating in l errs by
2e-4 of max |R_theta| whatever the degree, in m by 3e-6.) So the rows of a block J = [jB, jB + B)
of steps are interpolated from r node rows x_p of the block, at the steps l <= jB - D,

    R_theta[jB + x, l] ~= sum_p S[x, p] R_theta[jB + x_p, l]      (S: Lagrange weights),

and the block's part of s_l is then sum_p Zhat_{J,p} R_theta[jB + x_p, l], with the projection
Zhat_{J,p} = sum_x S[x, p] Z_{jB + x} formed once per block and row: each step l pays r instead
of B per far block. Rows of the current block (m > the last whole block) and the D steps above l
stay exact.

The interpolation is only used where it reproduces the block's rows: when block J is complete
(its B rows of R_theta known), every entry the far field will read, columns l <= jB - D, is
interpolated and compared with R_theta; a block whose largest error exceeds ``tol`` times the
largest |R_theta| of the rows so far is kept exact (its "nodes" are all B rows, S the identity).
So ``max_error`` is a bound on the change of every R_theta entry the adjoint used, not an
estimate. ``tol = 0`` switches the far field off (the dense adjoint, exact to float32 round-off).
"""
from __future__ import annotations

import numpy as np

#: Block length B (steps), interpolation nodes r and separation D (steps) of the far field:
#: committee dt 0.01 (bench/bench_issue12.py (c)) interpolates to ~3e-6 of max |R_theta| with any
#: B in 16..64 and r >= 6 (the noise of the estimates sets the floor, not the degree); the cost
#: per step l is ~D + B (exact rows) + (k - l) r / B (far blocks).
BLOCK, NODES, SEPARATION = 32, 8, 16


def lobatto_steps(B: int, r: int) -> np.ndarray:
    """r distinct steps 0 = x_0 < ... < x_{r-1} = B - 1: Chebyshev--Lobatto points rounded to steps
    (clustered at the block's ends, which keeps the Lagrange weights small)."""
    x = np.round((B - 1) * (1.0 - np.cos(np.pi * np.arange(r) / (r - 1))) / 2.0).astype(np.int64)
    if len(np.unique(x)) != r:
        raise ValueError(f"far field: {r} nodes do not fit a block of {B} steps")
    return x


def lagrange_weights(B: int, x: np.ndarray) -> np.ndarray:
    """S (B, r): S[i, p] = prod_{q != p} (i - x_q) / (x_p - x_q), so f(i) ~= sum_p S[i, p] f(x_p)."""
    i = np.arange(B, dtype=float)[:, None]
    S = np.ones((B, len(x)))
    for p in range(len(x)):
        for q in range(len(x)):
            if q != p:
                S[:, p] *= (i[:, 0] - x[q]) / (x[p] - x[q])
    return S


class FarField:
    """Block decisions, node rows and weights of one theta-side's R_theta (one replica).

    Arrays handed to the kernel (``dmft_paths``): ``RTc`` (N_M, n_nodes M) float32, the node rows'
    columns of R_theta^T (column (off[j] + p) M + c = R_theta^T column (jB + x_p) M + c);
    ``S`` (n_blocks, B m, B m) float32, block j's weights as a matrix the adjoint's sums take,
    S[j, p m + c, x m + c'] = S_j[x, p] if c = c' (p < off[j + 1] - off[j]; else 0);
    ``off`` (n_blocks + 1,) the node offsets; ``ready`` the number of blocks decided so far.
    """

    def __init__(self, n_rows: int, m: int, tol: float, block: int = BLOCK, nodes: int = NODES,
                 separation: int = SEPARATION):
        self.m, self.tol = m, float(tol)
        self.B, self.D = int(block), int(separation)
        self.n_blocks = n_rows // self.B if self.tol > 0 and n_rows >= 3 * self.B else 0
        self.x = lobatto_steps(self.B, nodes)
        self.S_lagrange = lagrange_weights(self.B, self.x)
        if self.n_blocks == 0:  # off: one-element arrays the kernel never reads
            self.RTc = np.zeros((1, 1), dtype=np.float32)
            self.S = np.zeros((1, m, m), dtype=np.float32)
        else:
            self.RTc = np.zeros((n_rows * m, self.n_blocks * self.B * m), dtype=np.float32)
            self.S = np.zeros((self.n_blocks, self.B * m, self.B * m), dtype=np.float32)
        self.off = np.zeros(self.n_blocks + 1, dtype=np.int64)
        self.ready = 0
        self.max_error = 0.0      # largest interpolation error used, relative to max |R_theta|
        self.interpolated = 0     # blocks interpolated (the others kept exact)
        self._scale = 0.0

    def reset(self):
        """Forget every decision (a fixed-point iteration hands a new R_theta whole)."""
        self.ready, self.max_error, self.interpolated, self._scale = 0, 0.0, 0, 0.0

    def update(self, R: np.ndarray, RT: np.ndarray, k1: int):
        """Decide the blocks whose rows are all known before the kernel advances rows < k1.

        ``R`` is R_theta flat (row k m + a), ``RT`` its float32 transpose (the adjoint's)."""
        B, D, m = self.B, self.D, self.m
        upto = min(k1 // B, self.n_blocks)
        for j in range(self.ready, upto):
            rows = R[j * B * m:(j + 1) * B * m]
            self._scale = max(self._scale, float(np.abs(rows).max()))
            ncol = max(j * B - D + 1, 0) * m     # columns l <= jB - D: all the far field reads
            blk = rows[:, :ncol].reshape(B, m, ncol)
            approx = np.einsum("xp,pal->xal", self.S_lagrange, blk[self.x])
            err = float(np.abs(approx - blk).max()) / self._scale if ncol and self._scale > 0 else 0.0
            if err <= self.tol:
                x, S = self.x, self.S_lagrange
                self.max_error = max(self.max_error, err)
                self.interpolated += 1
            else:
                x, S = np.arange(B), np.eye(B)
            r = len(x)
            o = self.off[j]
            self.off[j + 1] = o + r
            self.S[j] = 0.0
            self.S[j, : r * m] = np.kron(S.T, np.eye(m))
            cols = ((j * B + x)[:, None] * m + np.arange(m)[None]).ravel()
            self.RTc[:, o * m:(o + r) * m] = RT[:, cols]
            self.ready = j + 1

    def kernel_args(self) -> tuple:
        """The kernel's last five arguments: RTc, S, off, the blocks decided, D."""
        return self.RTc, self.S, self.off, self.ready, self.D

    def summary(self) -> dict:
        """What the far field did in this theta-side's last sweep (the result's meta)."""
        return {"block": self.B, "nodes": len(self.x), "separation": self.D, "tol": self.tol,
                "blocks": self.ready, "interpolated": self.interpolated, "max_error": self.max_error}


def dense_args(m: int) -> tuple:
    """:meth:`FarField.kernel_args` of the dense adjoint (no far field), width m."""
    return FarField(1, m, 0.0).kernel_args()


def combine(parts: list) -> dict | None:
    """The replicas' :meth:`FarField.summary` as one: blocks added, the largest error."""
    parts = [p for p in parts if p]
    if not parts:
        return None
    out = dict(parts[0])
    out["blocks"] = sum(p["blocks"] for p in parts)
    out["interpolated"] = sum(p["interpolated"] for p in parts)
    out["max_error"] = max(p["max_error"] for p in parts)
    return out
