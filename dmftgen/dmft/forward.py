"""The causal forward sweep: one pass over the time rows, each using earlier rows only.

For k = 0..N (docs/theory.md section 2):

1. the theta-side gives the r-side Gaussian input of time k (``input_row``), from the causal
   factor L of S_U (rows < k) and its response R_theta (rows <= k);
2. the paths advance to time k and accumulate the group sums of row k (``RSide.run``; in row
   mode, issue 12, the two-time sums su_sum / kl_sum hold only this row and are zeroed first);
3. the kernel estimates of row k (Gamma_k, K_ell[k, :k], nu[k]) go to the theta-side; in row mode
   ``checks.RowRecord`` records what the self-checks need from the group rows;
4. S_U[k, <=k] from the increments dL_k, the rows of time k of L, and theta-side row k + 1.

The same driver serves the deterministic theta-side (h = lam theta) and the Monte Carlo one
(declared H): both implement the interface of :mod:`dmftgen.dmft.theta`. A row whose kernels,
loss or <ell ell> is not finite or beyond ``blowup`` ends the sweep as ``diverged``; Ctrl-C
between rows keeps the finished ones (``k_done``).
"""
from __future__ import annotations

import math
import time

import numpy as np
from numba import njit

from .checks import RowRecord
from .estimators import row_kernels, s_u_row
from .sampler import CausalFactor, keep_exact_increments, use_qr


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def progress_bar(enabled, total, desc):
    """A tqdm bar on stderr (``leave=False``), or a silent stand-in."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="step" if "sweep" in desc else "it", leave=False)


def finite_row(r, k, th, blowup) -> bool:
    """Row k is finite and below ``blowup``: K_ell row, nu[k], <ell ell>_k and the train loss (when
    the model has one). One compiled pass, :func:`_row_size` (this runs once per row and replica)."""
    m = r.m
    return _row_size(r.loss_sum[:, k], r.ll_sum[:, k], th.Kl[k * m:(k + 1) * m], th.nu[k], r.P) < blowup


@njit(cache=True, nogil=True)
def _row_size(loss_col, ll_col, kl_rows, nu_k, P):
    """The largest of |K_ell row block|, |nu_k|, |tr <ell ell>_k| and |train loss_k| (the last only
    where finite: a model declared by ell alone has a NaN loss); inf if any of the others is NaN
    (max() would drop a NaN: a NaN row must count as beyond every bound)."""
    lossk = 0.0
    for g in range(loss_col.shape[0]):
        lossk += loss_col[g]
    lossk /= P
    llk = 0.0
    for g in range(ll_col.shape[0]):
        for a in range(ll_col.shape[1]):
            llk += ll_col[g, a, a]
    big = abs(llk / P)
    nan = big != big
    if np.isfinite(lossk):
        big = max(big, abs(lossk))
    for i in range(kl_rows.shape[0]):
        for j in range(kl_rows.shape[1]):
            v = abs(kl_rows[i, j])
            nan |= v != v
            big = max(big, v)
    for i in range(nu_k.shape[0]):
        for j in range(nu_k.shape[1]):
            v = abs(nu_k[i, j])
            nan |= v != v
            big = max(big, v)
    return np.inf if nan else big


def sweep(sv) -> int:
    """Run the forward sweep of solve ``sv``; returns the number of finished grid points
    (N + 1, or the row where it diverged). Leaves on ``sv``: th, S_U, L_S, W_in, gram,
    n_clipped, timing, residuals."""
    r, opts = sv.rside, sv.opts
    N, m = sv.N, sv.m
    NI = N * m
    qr = use_qr(opts.gram, sv.tau, sv.delta, sv.dt)
    sv.gram = "qr" if qr else "cholesky"
    th = sv.new_theta(qr)
    wpre, W, clipped = th.begin_input(r)
    # exact dependences must stay exact (rside.HIST)
    r.alloc(exact_increments=keep_exact_increments(opts.gram, sv.tau, sv.delta, sv.dt))
    sv.rows = RowRecord(sv.G, N, m, sv.kk) if r.row_sums else None
    # S_U = <dL dL^T> / delta: the QR factors the increments scaled by 1/sqrt(delta P)
    fac = CausalFactor(NI, qr, r.P, math.sqrt(1.0 / (sv.delta * r.P)), opts.pivot_tol, opts.qr_tol)
    sv.n_clipped = clipped
    reached = N + 1
    # rows finished so far, for a Ctrl-C between rows (see solver._solve_one)
    sv.th, sv.S_U, sv.L_S, sv.k_done, sv.timing, sv.residuals = th, fac.S, fac.L, 0, {}, []
    sv.W_in = W
    bar = progress_bar(sv.progress, N + 1, "DMFT sweep")
    t_paths = t_theta = 0.0
    blowup = float(opts.blowup)
    for k in range(N + 1):
        t0 = time.perf_counter()
        sv.n_clipped += th.input_row(k, fac, wpre, W)
        if k > 0:
            r.Gcv_g[k] = r.Gcv[k - 1]
        r.zero_rows()  # row mode: su_sum / kl_sum hold only the row of step k
        t1 = time.perf_counter()
        r.run(k, k + 1, wpre, W, True, th.R, th.RT)
        t2 = time.perf_counter()
        t_paths += t2 - t1
        if r.bad.min() <= k:
            reached = k
            break
        th.set_kernels(k, **row_kernels(r, k, th.Rp, sv.modes.nu_mode))
        if sv.rows is not None:
            sv.rows.add(sv, k, th)  # row mode: what the self-checks need from row k
        if k < N:
            rk = slice(k * m, (k + 1) * m)
            row = s_u_row(r, k)
            fac.S[rk, : (k + 1) * m] = row
            fac.S[: (k + 1) * m, rk] = row.T
            sv.n_clipped += fac.extend(k * m, (k + 1) * m, r.dL_col)
            th.advance(k, fac.L)
        if not (finite_row(r, k, th, blowup) and th.finite(k)):
            reached = k
            break
        t_theta += time.perf_counter() - t2 + (t1 - t0)
        bar.update(1)
        sv.k_done = k + 1
    bar.close()
    sv.timing = {"paths_s": t_paths, "theta_s": t_theta}
    if sv.reg:
        sv.timing["theta_paths"] = th.Pt
    return reached
