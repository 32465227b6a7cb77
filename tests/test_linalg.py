"""The theta-side's compiled linear algebra (dmftgen/dmft/_linalg.py) against plain numpy.

Each routine exploits structure (causal triangles, pushed sums, split partial sums); the references
here use none of it. Tolerances: every entry is a sum of at most n ~ 600 products of O(1) numbers,
so the round-off of either side is below n * eps * sum|terms| ~ 1e-13 of the largest entry; 1e-11
leaves room and is ~10 orders below the O(1) error of a wrong index or a missed term.
"""
from __future__ import annotations

import numpy as np
import pytest

from dmftgen.dmft._linalg import PackedRows, chol_append, det_tangent_row, dot, lower_dots, lower_matmul

RTOL = 1e-11


def _close(a, b):
    assert np.abs(a - b).max() <= RTOL * max(np.abs(b).max(), 1e-300)


def test_dot_is_the_inner_product_of_the_range():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(1003), rng.standard_normal(1003)
    for j0, j1 in ((0, 1003), (5, 5), (7, 8), (13, 700)):
        assert abs(dot(x, y, j0, j1) - x[j0:j1] @ y[j0:j1]) <= RTOL * (np.abs(x * y).sum() + 1e-300)


@pytest.mark.parametrize("M", [1, 2, 3])
def test_det_tangent_row_equals_the_pull_form(M):
    """Push form (the routine) against the adjoint recursion as written in docs/theory.md:
    Z_k = Gk, Z_l = -(dt/delta) (sum_{l<m<=k} Z_m R[m, l]) G[l]."""
    rng = np.random.default_rng(M)
    K, delta, dt = 200, 2.0, 0.05
    NN = (K + 1) * M
    R = np.zeros((NN, NN))
    for m in range(1, K + 1):  # causal block rows: R[m, l] for l < m
        R[m * M:(m + 1) * M, : m * M] = 0.05 * rng.standard_normal((M, m * M))
    G, Gk = rng.standard_normal((K + 1, M, M)), rng.standard_normal((M, M))
    Rp = PackedRows.causal(NN, M, 0, NN, reverse=True)  # as the theta-side keeps it
    Rp.set_rows(0, R)
    for k in (0, 1, 7, K):
        out = np.full((M, NN), np.nan)
        det_tangent_row(k, Rp.data, Rp.start, G, Gk, delta, dt, out)
        Z = np.zeros((M, NN))
        Z[:, k * M:(k + 1) * M] = Gk
        for l in range(k - 1, -1, -1):
            acc = Z[:, (l + 1) * M:(k + 1) * M] @ R[(l + 1) * M:(k + 1) * M, l * M:(l + 1) * M]
            Z[:, l * M:(l + 1) * M] = -(acc @ G[l]) * dt / delta
        if k:
            _close(out[:, : k * M], Z[:, : k * M])


@pytest.mark.parametrize("M", [1, 2])
def test_linear_control_variate_is_the_first_order_part_at_the_mean_noise(M):
    """adjoint_mean_row's linear part against an independent construction: the control variate
    Zc (factors dt (1 + eps_l)) run path by path in float64 for small noise h eps, where
    (Zc(h) - Zc(-h)) / 2h is its first-order part L (to O(h^2)); averaged over the paths it must
    equal L at the paths' mean eps (linearity: one recursion instead of one per path), and its
    E-part the noiseless recursion (det_tangent_row). A wrong source term or sign is O(1)."""
    from dmftgen.dmft._linalg import adjoint_mean_row

    rng = np.random.default_rng(10 + M)
    K, delta, dt, P, h = 30, 2.0, 0.05, 7, 1e-5
    NN = (K + 1) * M
    R = np.zeros((NN, NN))
    for m in range(1, K + 1):
        R[m * M:(m + 1) * M, : m * M] = 0.3 * rng.standard_normal((M, m * M))
    G, Gk = rng.standard_normal((K + 1, M, M)), rng.standard_normal((M, M))
    eps = rng.standard_normal((P, K))
    Rp = PackedRows.causal(NN, M, 0, NN, reverse=True)
    Rp.set_rows(0, R)

    def zc(k, e):  # the pathwise control variate of one path, float64
        Z = np.zeros((M, NN))
        Z[:, k * M:(k + 1) * M] = Gk
        for l in range(k - 1, -1, -1):
            acc = Z[:, (l + 1) * M:(k + 1) * M] @ R[(l + 1) * M:(k + 1) * M, l * M:(l + 1) * M]
            Z[:, l * M:(l + 1) * M] = -(acc @ G[l]) * dt * (1.0 + e[l]) / delta
        return Z[:, : k * M]

    for k in (1, 2, 9, K):
        E, L = np.full((M, NN), np.nan), np.full((M, NN), np.nan)
        adjoint_mean_row(k, Rp.data, Rp.start, G, Gk, eps.mean(0), delta, dt, E, L)
        first = np.mean([(zc(k, h * e) - zc(k, -h * e)) / (2 * h) for e in eps], axis=0)
        # Zc is multilinear in the factors: the central difference has no even-order error, its
        # third-order terms are O(h^2) = 1e-10 relative, its round-off ~1e-16 / h = 1e-11
        assert np.abs(L[:, : k * M] - first).max() <= 1e-8 * np.abs(first).max()
        _close(E[:, : k * M], zc(k, np.zeros(K)))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("blk,extra", [(1, 1), (2, 0), (2, 2), (3, 0)])
def test_lower_matmul_and_lower_dots_on_packed_rows(blk, extra, reverse):
    """x A and x A^T for an A zero beyond column w(i) = (i // blk) blk + extra of row i, from its
    packed rows (either layout, rows taken in memory order); the packed copy holds exactly the
    prefixes, back to back (set from a square array whose entries beyond w(i) are NaN: none may be
    copied or read) and unpacks to A."""
    rng = np.random.default_rng(blk * 10 + extra)
    n, p = 301, 2
    A = rng.standard_normal((n, n))
    A0 = A.copy()
    for i in range(n):
        w = min((i // blk) * blk + extra, n)
        A[i, w:] = np.nan
        A0[i, w:] = 0.0
    Ap = PackedRows.causal(n, blk, extra, n, reverse=reverse)
    for i0 in range(0, n, 7):  # row blocks, as the sweep appends them
        Ap.set_rows(i0, A[i0:i0 + 7])
    assert Ap.data.size == sum(min((i // blk) * blk + extra, n) for i in range(n))
    # back to back in the order the products read them: row i + 1 right after row i (reversed: before)
    if reverse:
        assert np.array_equal(Ap.start[:-1], Ap.start[1:] + Ap.width[1:]) and Ap.start[-1] == 0
    else:
        assert np.array_equal(Ap.start[1:], Ap.start[:-1] + Ap.width[:-1]) and Ap.start[0] == 0
    np.testing.assert_array_equal(Ap.dense(n), A0)
    x = rng.standard_normal((p, n))
    for nn in (n, 150):  # a leading block: widths clipped to nn
        out = np.full((p, n), np.nan)
        lower_matmul(x, Ap.data, Ap.start, Ap.width, nn, reverse, out)
        _close(out[:, :nn], x[:, :nn] @ A0[:nn, :nn])
        if not reverse:
            outd = np.full((p, n), np.nan)
            lower_dots(x, Ap.data, Ap.start, Ap.width, nn, nn - 3, outd)
            _close(outd[:, :nn], x[:, : nn - 3] @ A0[:nn, : nn - 3].T)


def test_chol_append_row_by_row_equals_cholesky_and_clips_a_rank_deficiency():
    rng = np.random.default_rng(3)
    n = 120
    B = rng.standard_normal((n, n))
    S = B @ B.T / n + 0.1 * np.eye(n)
    for step in (1, 2, 3):  # rows appended per call, as the sweep appends m per step (two-row pass, one-row rest)
        L, Lp = np.zeros((n, n)), PackedRows.causal(n, 1, 1, n)
        for i0 in range(0, n, step):
            assert chol_append(L, S, i0, min(i0 + step, n), 1e-12, Lp.data, Lp.start) == 0
        _close(L, np.linalg.cholesky(S))
        assert np.array_equal(Lp.dense(n), L)  # the packed copy it reads the earlier rows from
    # rank 60: half of the pivots are clipped and L L^T still reproduces S
    V = rng.standard_normal((n, 60))
    S = V @ V.T
    L, Lp = np.zeros((n, n)), PackedRows.causal(n, 1, 1, n)
    assert chol_append(L, S, 0, n, 1e-10, Lp.data, Lp.start) == n - 60
    assert np.abs(L @ L.T - S).max() <= 1e-8 * np.abs(S).max()


@pytest.mark.parametrize("N,m,k", [(30, 1, 1), (20, 2, 1), (15, 3, 0)])
def test_C_theta_flat_triangular_products_equal_the_dense_formula(N, m, k):
    """theta.ThetaSide.C_theta_flat (two BLAS trmm on the causal R_theta) against Phi0 Sigma0 Phi0^T
    + Phis rho Phis^T + R S_U R^T with dense products, on the whole grid and on a sweep stopped
    at row n - 1 (S_U then has the increments before it only)."""
    from dmftgen.dmft.theta import ThetaSide

    rng = np.random.default_rng(N + m)
    th = ThetaSide(N, m, k, 0.1, 0.05, 2.0, np.eye(k), 0.3 * np.eye(m))
    for kk in range(1, N + 1):
        th.R[kk * m:(kk + 1) * m, : kk * m] = rng.standard_normal((m, kk * m))
    th.Phi0[:] = rng.standard_normal(th.Phi0.shape)
    th.Phis[:] = rng.standard_normal(th.Phis.shape)
    B = rng.standard_normal((N * m, N * m))
    S = B @ B.T
    for n in (N + 1, N // 2):
        S_U = S[: (n - 1) * m, : (n - 1) * m]
        Rr = th.R[: n * m, : S_U.shape[0]]
        ref = th.Phi0[: n * m] @ th.sigma0 @ th.Phi0[: n * m].T + Rr @ S_U @ Rr.T
        if k:
            ref += th.Phis[: n * m] @ th.rho @ th.Phis[: n * m].T
        _close(th.C_theta_flat(S_U, n), ref)
