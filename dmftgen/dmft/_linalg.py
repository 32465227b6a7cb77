"""Model-independent linear algebra of the DMFT solver (numba/numpy, O(K^2)-O(K^3) per solve).

* :class:`PackedRows` -- a causal (lower-structured) matrix as its rows' nonzero prefixes, end to end.
* :func:`dot`, :func:`lower_matmul`, :func:`lower_dots` -- the theta-side's per-row products, on
  the nonzero half of its triangular factors (packed) and without one long dependent chain per sum.
* :func:`chol_append` -- one block row of the incremental, pivot-clipped Cholesky factor of S_U
  (the causal Gaussian sampler of the forward sweep).
* :func:`det_tangent_row` -- the deterministic response row K_ell[k, :k] for models whose
  Jacobian grad ell is one constant matrix A (LINEAR_ELL): E J obeys the noiseless recursion
  because the Ito increment dB_m is independent of J[m, l] (docs/theory.md §3);
  :func:`adjoint_mean_row` -- the same for the tangents' control variate, with its linear part.
* :func:`psd_sqrt` -- symmetric PSD square root by eigh with clipping (fixed-point sampler).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def dot(x, y, j0, j1):
    """sum_{j0 <= j < j1} x[j] y[j], compiled with reassociation so that LLVM splits the sum
    into SIMD partial sums (issue 12: a single scalar accumulator is one dependent chain of FMAs,
    ~1 per 4 cycles; measured 2.4x faster than four scalar partial sums, 3x faster than BLAS
    on the theta-side's (m x n) times triangular (n x n) products). The split is fixed at compile
    time: the same bytes at any thread count."""
    t = 0.0
    for j in range(j0, j1):
        t += x[j] * y[j]
    return t


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def dot2(x0, x1, y, n):
    """(sum_{j<n} x0[j] y[j], sum_{j<n} x1[j] y[j]): two sums sharing each load of y (as
    :func:`dot`, SIMD partial sums fixed at compile time)."""
    t0 = 0.0
    t1 = 0.0
    for j in range(n):
        t0 += x0[j] * y[j]
        t1 += x1[j] * y[j]
    return t0, t1


@njit(cache=True, nogil=True, error_model="numpy")
def chol_append(L, S, i0, i1, tol, Lp, start):
    """Append rows i0 <= i < i1 to the lower-triangular factor L of the PSD matrix S (in place),
    reading the earlier rows from L's packed copy (``Lp``, ``start``: :class:`PackedRows` with
    widths i + 1, written here too).

    Scalar Cholesky row by row, L[i, j] = (S[i, j] - sum_{q<j} L[i, q] L[j, q]) / L[j, j], with
    zero pivots allowed: if the Schur complement d_i = S[i, i] - |L[i, :i]|^2 is below
    ``tol * S[i, i]`` (rank deficiency, e.g. theta^0 = 0, or a smooth tau = 0 path) the pivot is
    set to 0 and the corresponding standard normal is simply not used; a column with a zero pivot
    gets zero entries below it. L L^T then equals S up to ``tol`` relative on the diagonal.
    Returns the number of clipped pivots.

    Issue 12: appending row i reads all of L[:i, :i], which the path sweep between two appends has
    evicted from the caches. Read from the packed rows it is one contiguous stream; and two new
    rows (a step of a width-2 model appends m rows) share each read of an earlier row (:func:`dot2`):
    committee dt 0.01, 0.89 s of the solve before.
    """
    nclip = 0
    i = i0
    while i < i1:
        if i + 1 < i1:  # rows i and i + 1 against the rows j < i together
            La, Lb = L[i], L[i + 1]
            for j in range(i):
                Lj = Lp[start[j]:start[j] + j + 1]
                if Lj[j] > 0.0:
                    ta, tb = dot2(La, Lb, Lj, j)
                    La[j] = (S[i, j] - ta) / Lj[j]
                    Lb[j] = (S[i + 1, j] - tb) / Lj[j]
                else:
                    La[j] = 0.0
                    Lb[j] = 0.0
            j0, i2 = i, i + 2
        else:
            j0, i2 = 0, i + 1
        for ii in range(i, i2):  # the rest of each row: columns j0 <= j < ii, then the pivot
            Li = L[ii]
            for j in range(j0, ii):
                Lj = Lp[start[j]:start[j] + j + 1]
                if Lj[j] > 0.0:
                    Li[j] = (S[ii, j] - dot(Li, Lj, 0, j)) / Lj[j]
                else:
                    Li[j] = 0.0
            d = S[ii, ii] - dot(Li, Li, 0, ii)
            if d > tol * S[ii, ii] and d > 0.0:
                Li[ii] = np.sqrt(d)
            else:
                Li[ii] = 0.0
                nclip += 1
            o = start[ii]
            for j in range(ii + 1):
                Lp[o + j] = Li[j]
        i = i2
    return nclip


class PackedRows:
    """A lower-structured matrix stored as the nonzero prefixes of its rows, end to end.

    Row i holds A[i, :width[i]] (zero beyond) at ``data[start[i]:start[i] + width[i]]``. The
    theta-side's causal matrices -- R_theta (row block k nonzero in columns < k m), the factor L
    of S_U (lower-triangular) and the input rows W = R_theta L -- gain rows that never change once
    written, and every per-row product reads their nonzero half. Read out of the square arrays that
    is one short run per row, and the hardware prefetcher's stream breaks at every row end; packed,
    the same entries are one contiguous stream, if the rows are stored in the order they are read:
    ascending (``reverse=False``: L, W), or last row first (``reverse=True``: R_theta, whose
    control-variate row is a backward recursion, :func:`det_tangent_row`; :func:`lower_matmul`
    then also runs down). Issue 12, ``bench/bench_packed.py`` (one thread, from main memory, as in a
    solve): 1.6-2.1x faster at n = 1600, 2.1-2.3x at n = 1000. The square arrays stay the solver's record; :meth:`set_rows` keeps the packed copy
    (a second copy of the nonzero half) next to them.
    """

    def __init__(self, widths, reverse: bool = False):
        self.width = np.asarray(widths, dtype=np.int64)
        ends = np.cumsum(self.width[::-1] if reverse else self.width)
        self.start = ends - (self.width[::-1] if reverse else self.width)
        if reverse:
            self.start = np.ascontiguousarray(self.start[::-1])
        self.reverse = bool(reverse)
        self.data = np.zeros(int(ends[-1]) if ends.size else 0)

    @classmethod
    def causal(cls, nrows: int, blk: int, extra: int, ncols: int, reverse: bool = False) -> "PackedRows":
        """Rows of width min((i // blk) blk + extra, ncols): blk = m, extra = 0 for R_theta and
        W (row block k: columns < k m), blk = extra = 1 for a lower-triangular L."""
        i = np.arange(nrows)
        return cls(np.minimum((i // blk) * blk + extra, ncols), reverse)

    def set_rows(self, i0: int, rows: np.ndarray):
        """Rows i0, i0 + 1, ... from the leading entries of ``rows`` (the same rows of the square
        matrix, shape (n, >= width))."""
        for a in range(rows.shape[0]):
            o, w = self.start[i0 + a], self.width[i0 + a]
            self.data[o:o + w] = rows[a, :w]

    def dense(self, ncols: int) -> np.ndarray:
        """The square (rows x ncols) matrix (for tests and debugging)."""
        A = np.zeros((self.width.size, ncols))
        for i, (o, w) in enumerate(zip(self.start, self.width)):
            A[i, :w] = self.data[o:o + w]
        return A


@njit(cache=True, nogil=True, error_model="numpy")
def lower_matmul(x, Ap, start, width, n, down, out):
    """out[:, :n] = x[:, :n] @ A[:n, :n] for A packed (:class:`PackedRows` ``data``, ``start``,
    ``width``; widths clipped to n), its rows taken in memory order (``down``: i = n-1, ..., 0, for
    a reversed layout).

    The theta-side's row products (R_theta row k+1 = K_ell row k times R_theta; the input rows
    R_theta[k] L) read the nonzero half of A once, as one contiguous stream, for all rows of x
    (a few: m). A fixed order of the sum over i (deterministic); the j loop is an axpy and
    vectorises."""
    p = x.shape[0]
    for a in range(p):
        for j in range(n):
            out[a, j] = 0.0
    for q in range(n):
        i = n - 1 - q if down else q
        o = start[i]
        Ai = Ap[o:o + min(width[i], n)]  # a view: Ap[o + j] would be a signed index, checked per load
        for a in range(p):
            xi = x[a, i]
            oa = out[a]
            for j in range(Ai.shape[0]):
                oa[j] += xi * Ai[j]


@njit(cache=True, nogil=True, error_model="numpy")
def lower_dots(x, Ap, start, width, nrows, ncols, out):
    """out[a, i] = sum_{j < min(width_i, ncols)} x[a, j] A[i, j] for i < nrows: x[:, :ncols] @
    A[:nrows, :ncols].T for A packed (:class:`PackedRows`, ascending layout)."""
    for i in range(nrows):
        o = start[i]
        Ai = Ap[o:o + min(width[i], ncols)]  # read once from memory, then from cache for every row of x
        for a in range(x.shape[0]):
            out[a, i] = dot(x[a], Ai, 0, Ai.shape[0])


def psd_sqrt(S: np.ndarray, rel_tol: float = 1e-12) -> np.ndarray:
    """Symmetric square root V sqrt(max(lambda, 0)) V^T of a (numerically) PSD matrix.

    Eigenvalues below ``rel_tol * max(lambda)`` are set to zero: for a smooth (tau = 0) path
    covariance they are round-off, and their square roots would only inject noise.
    """
    S = 0.5 * (S + S.T)
    lam, V = np.linalg.eigh(S)
    top = max(float(lam.max(initial=0.0)), 0.0)
    lam = np.where(lam > rel_tol * top, lam, 0.0)
    return (V * np.sqrt(lam)) @ V.T


@njit(cache=True, nogil=True, error_model="numpy")
def det_tangent_row(k, Rp, start, G, Gk, delta, dt, out):
    """Deterministic response row K[k, l] = E Z_l for l < k (flat block layout, M = G.shape[1];
    R_theta packed, :class:`PackedRows` ``data`` and ``start``, row block m of width m M; the
    recursion reads its rows last first, so a reversed layout is one forward stream).

    Adjoint recursion Z_k = Gk, Z_l = -(1/delta) (sum_{l<m<=k} Z_m R_theta[m, l]) G[l] dt, written to
    out[:, l*M:(l+1)*M].  With G[l] = Gk = A (constant jac_ell) it is K_ell[k, :k] of a linear
    model, using E[A (dt + sqrt(tau delta) dB_l)] = A dt; with G[l] = Gamma_l it is E Zc, the mean
    of the tangent control variate of the generated sweep (dB_l independent of Z_m for m > l).
    :func:`adjoint_mean_row` without its linear part."""
    adjoint_mean_row(k, Rp, start, G, Gk, np.zeros(0), delta, dt, out, out)


@njit(cache=True, nogil=True, error_model="numpy")
def adjoint_mean_row(k, Rp, start, G, Gk, eps, delta, dt, out, lout):
    """:func:`det_tangent_row` (E Z_l into ``out``) and, if ``eps`` is not empty, the linear
    control variate's row into ``lout`` (docs/theory.md section 3):

        L_k = 0,   L_l = E Z_l eps_l - (1/delta) (sum_{l<m<=k} L_m R_theta[m, l]) G[l] dt,

    the first-order part of the control variate Zc (Zc with the factors dt (1 + eps_l), eps_l =
    sqrt(tau delta) dB_l / dt) in the eps's. It is linear in eps with mean 0, so its average over
    the tangent paths is L evaluated at their mean eps (``eps``, (>= k,)): one recursion per row,
    whatever the number of paths.

    Push form (issue 12): once Z_m (and L_m) are known their products with row m of R_theta are
    added to the sums of every l < m (an axpy along a contiguous row, which vectorises without
    reassociation), instead of one short dot product per l read down a column (4x slower at
    K = 1200, where this row was the largest theta-side cost); L shares each read of the row."""
    Mm = G.shape[1]
    lin = eps.shape[0] > 0
    acc = np.zeros((Mm, max(k * Mm, 1)))  # acc[a, l M + c] = sum_{m > l} sum_b Z[a, m M + b] R[m M + b, l M + c]
    accl = np.zeros((Mm, max(k * Mm, 1)) if lin else (1, 1))  # the same sums of L
    z = np.empty((Mm, Mm))
    zl = np.zeros((Mm, Mm))
    for a in range(Mm):
        for b in range(Mm):
            z[a, b] = Gk[a, b]
    for m in range(k, 0, -1):
        n = m * Mm
        if lin and Mm == 2:
            # M = 2 with the linear part (committee): one pass over the row block, every read of
            # R_theta and of each sum shared (2 row loads and 4 read-modify-writes per column
            # instead of 16 loads and 8 stores): committee N = 500, rows 480..499, one thread,
            # 0.26 -> 0.14 ms per row (fused for M = 1 it was slower, 0.15 -> 0.17 ms: kept apart)
            _push_block(Rp, start[m * Mm], start[m * Mm + 1], n, z, zl, acc, accl)
            _finish_block(m - 1, Mm, acc, accl, G, z, zl, eps, lin, delta, dt, out, lout)
            continue
        for b in range(Mm):
            o = start[m * Mm + b]
            Rrow = Rp[o:o + n]   # R_theta[m M + b, :m M]
            for a in range(Mm):
                zab = z[a, b]
                acc_a = acc[a]
                for col in range(n):
                    acc_a[col] += zab * Rrow[col]
                if lin:
                    lab = zl[a, b]
                    accl_a = accl[a]
                    for col in range(n):
                        accl_a[col] += lab * Rrow[col]
        # block l = m - 1 has all its terms now
        _finish_block(m - 1, Mm, acc, accl, G, z, zl, eps, lin, delta, dt, out, lout)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _push_block(Rp, o0, o1, n, z, zl, acc, accl):
    """acc[a] += sum_b z[a, b] R_b and accl[a] += sum_b zl[a, b] R_b over columns < n, for the
    two rows R_b = Rp[o_b:o_b + n] of one block (M = 2)."""
    R0 = Rp[o0:o0 + n]
    a0 = acc[0]
    c0 = accl[0]
    R1 = Rp[o1:o1 + n]
    a1 = acc[1]
    c1 = accl[1]
    z00, z01, z10, z11 = z[0, 0], z[0, 1], z[1, 0], z[1, 1]
    l00, l01, l10, l11 = zl[0, 0], zl[0, 1], zl[1, 0], zl[1, 1]
    for col in range(n):
        r0 = R0[col]
        r1 = R1[col]
        a0[col] += z00 * r0 + z01 * r1
        a1[col] += z10 * r0 + z11 * r1
        c0[col] += l00 * r0 + l01 * r1
        c1[col] += l10 * r0 + l11 * r1


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _finish_block(l, Mm, acc, accl, G, z, zl, eps, lin, delta, dt, out, lout):
    """Z_l (and L_l) of block l, whose sums are complete: Z_l = -(dt / delta) acc_l G[l],
    L_l = Z_l eps_l - (dt / delta) accl_l G[l]; written to ``out`` / ``lout``."""
    for a in range(Mm):
        for b in range(Mm):
            t = 0.0
            tl = 0.0
            for c in range(Mm):
                t += acc[a, l * Mm + c] * G[l, c, b]
                if lin:
                    tl += accl[a, l * Mm + c] * G[l, c, b]
            z[a, b] = -t * dt / delta
            out[a, l * Mm + b] = z[a, b]
            if lin:
                zl[a, b] = z[a, b] * eps[l] - tl * dt / delta
                lout[a, l * Mm + b] = zl[a, b]


@njit(cache=True, nogil=True, error_model="numpy")
def _qr_append_col(Qt, rank, v, coef, tol):
    """Orthogonalise ``v`` (length P, overwritten) against the rows Qt[:rank] (classical
    Gram--Schmidt applied twice, which is enough for orthogonality to round-off).

    Writes the projection coefficients to coef[:rank]; returns the residual norm and the norm of
    the input. Serial on purpose: one column is O(P rank) work (about 1 ms at P = 10^4,
    rank = 130), and a parallel launch per column made the sampler 10-15x slower on a loaded
    2-core machine (measured: 32 ms against 1.9 ms CPU per column). The dot products use four
    interleaved partial sums (vectorisable without reassociating); the order is fixed, so the
    result does not depend on the number of threads."""
    P = v.shape[0]
    P4 = P - P % 4
    n0 = 0.0
    for p in range(P):
        n0 += v[p] * v[p]
    for j in range(rank):
        coef[j] = 0.0
    c = np.empty(rank)
    for _ in range(2):
        for j in range(rank):
            t0 = t1 = t2 = t3 = 0.0
            for p in range(0, P4, 4):
                t0 += Qt[j, p] * v[p]
                t1 += Qt[j, p + 1] * v[p + 1]
                t2 += Qt[j, p + 2] * v[p + 2]
                t3 += Qt[j, p + 3] * v[p + 3]
            t = (t0 + t1) + (t2 + t3)
            for p in range(P4, P):
                t += Qt[j, p] * v[p]
            c[j] = t
        for j in range(rank):
            cj = c[j]
            for p in range(P):
                v[p] -= cj * Qt[j, p]
        for j in range(rank):
            coef[j] += c[j]
    nr = 0.0
    for p in range(P):
        nr += v[p] * v[p]
    return np.sqrt(nr), np.sqrt(n0)


class GramQR:
    """Causal factor of a Gram matrix S = scale^2 A^T A, one data column at a time, by QR.

    For data columns a_0, a_1, ... (e.g. the increments dL_k of the r-paths, so that
    S = S_U = <dL dL^T> / delta), row i of the lower-triangular factor L (L L^T = S) is

        L[i, piv_q] = scale * q_q . a_i  (q < rank),   L[i, i] = scale * |a_i - sum_q (q_q . a_i) q_q|,

    with q_q the orthonormal basis built so far (a new basis vector only when the residual norm
    exceeds ``tol`` times |a_i|: rank revealing). Unlike the Cholesky factorisation of S itself,
    whose error grows like eps / (smallest kept pivot) and compounds along chains of small pivots
    (a smooth tau = 0 path: S_U is numerically of low rank), QR is backward stable: every entry of
    L is a projection of data on an orthonormal vector, L L^T = S + O(tol |a_i| |a_j| scale^2).
    Cost O(P rank) per column; memory O(P rank).
    """

    def __init__(self, P: int, ncols: int, scale: float, tol: float = 1e-12):
        self.P, self.scale, self.tol = int(P), float(scale), float(tol)
        self.Qt = np.zeros((min(int(ncols), self.P), self.P))
        self.piv = np.zeros(min(int(ncols), self.P), dtype=np.int64)
        self.rank = 0
        self._v = np.empty(self.P)
        self._c = np.empty(self.Qt.shape[0])

    def append(self, L: np.ndarray, i: int, col: np.ndarray) -> int:
        """Fill row ``i`` of ``L`` from data column ``col`` (length P). Returns 1 if the column
        added no basis vector (a clipped pivot), else 0."""
        v = self._v
        v[:] = col
        r = self.rank
        nr, n0 = _qr_append_col(self.Qt, r, v, self._c, self.tol)
        L[i, :i + 1] = 0.0
        L[i, self.piv[:r]] = self.scale * self._c[:r]
        if nr > self.tol * n0 and nr > 0.0 and r < self.Qt.shape[0]:
            self.Qt[r] = v / nr
            self.piv[r] = i
            self.rank = r + 1
            L[i, i] = self.scale * nr
            return 0
        return 1
