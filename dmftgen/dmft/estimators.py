"""Kernel estimators: the r-side averages that feed the theta-side, from the paths' group sums.

Gamma_k = <grad ell(r_k)>, K_ell[k, :k] (adjoint tangents, with the control variate's known mean
added back), S_U = <dL dL^T> / delta, and the teacher drift nu by one of two estimators.

Teacher drift nu (m x k) by Stein's lemma in discrete time
-----------------------------------------------------------
(w, r*) is jointly Gaussian; write w_l = M[l] rho^{-1} r* + w_perp_l with w_perp independent of
r*. For ell_k as a function of r* at fixed (w_perp, z, dB), Stein's identity (valid for a
distributional derivative, so label jumps count) gives E[ell_k r*^T] = E[D_{r*} ell_k] rho with
the total derivative D_{r*} ell_k = d ell_k/d r*|_w + sum_{l<=k} (d ell_k / d w_l) M[l] rho^{-1}.
The first term averages to nu[k] (teacher drift at fixed w, memory included), the second to
sum_l K_ell[k, l] M[l] rho^{-1}. Hence

    nu[k] = ( E[ell_k r*^T] - sum_{l<=k} K_ell[k, l] M[l] ) rho^{-1}.

Only the Gaussianity of (w, r*) is used (theta^0 independent of theta* is not needed here, and
holds for all built-in models). For continuous labels the pathwise estimator
nu[k] = E[d_s ell_k + grad ell_k psi_k] is used (lower variance). docs/theory.md section 3.
"""
from __future__ import annotations

import math

import numpy as np

from ._linalg import adjoint_mean_row, det_tangent_row


def kernels(r, drop=None) -> dict:
    """All kernel estimates of the r-side ``r`` (an :class:`~dmftgen.dmft.rside.RSide` after a
    pass), optionally leaving path group ``drop`` out (jackknife): gamma (N+1, m, m), ells and
    dsl (N+1, m, k), S_U (NI, NI), kl (NN, NN) or None without tangents."""
    G = r.G
    sizes = r.sizes
    w = np.ones(G)
    if drop is not None:
        w[drop] = 0.0
    npath = float(sizes @ w)
    ntan = float(r.n_tan_g * w.sum())

    def avg(arr, n):
        return np.tensordot(w, arr, axes=1) / n

    out = {"gamma": avg(r.gam_sum, npath), "ells": avg(r.ells_sum, npath),
           "dsl": avg(r.dsl_sum, npath),
           "S_U": None}
    S = avg(r.su_sum, npath * r.delta)
    S = np.tril(S) + np.tril(S, -1).T
    out["S_U"] = S
    out["kl"] = avg(r.kl_sum, ntan) if r.n_tan_g else None
    if r.n_tan_g and r.cv:
        # what the control variate adds to the tangent paths' mean (cv_mean_row)
        out["kl"] = out["kl"] + r.kl_det
    return out


def kl_row(r, k, Rp):
    """Monte Carlo K_ell[k, :k] from the tangent paths (with the control variate if on; ``Rp``
    R_theta packed, :class:`~dmftgen.dmft._linalg.PackedRows`).

    The control variate uses exactly the matrices the kernel used: Gcv[l] = Gamma_l (l < k) and
    Gcv_g[k] = Gamma_{k-1}, all known before step k (sweep and fixed point alike)."""
    m = r.m
    nt = r.n_tan_g * r.G
    kl = r.group_row(r.kl_sum, k)[:, :, : k * m].sum(0) / nt
    if r.cv and k > 0:
        kl = kl + cv_mean_row(r, k, Rp)[:, : k * m]
    return kl


def cv_mean_row(r, k, Rp):
    """What the control variate adds to the tangent paths' mean, row k (stored in ``r.kl_det``);
    (m, (k+1) m). ``Rp``: R_theta packed (:class:`~dmftgen.dmft._linalg.PackedRows`).

    "pathwise": kl_sum holds sum(Z - Zc), so the known mean E Zc is added. "linear": kl_sum holds
    sum Z, and L, Zc's first-order part in the own noise (mean 0, linear in it), is subtracted at
    the tangent paths' mean noise ``r.eps_bar`` (:func:`dmftgen.dmft._linalg.adjoint_mean_row`):
    K_ell = <Z> - L(<eps>) = <Z - L>, unbiased."""
    m = r.m
    row = np.zeros((m, (k + 1) * m))
    if r.cv == "linear":
        lin = np.zeros((m, (k + 1) * m))
        adjoint_mean_row(k, Rp.data, Rp.start, r.Gcv, r.Gcv_g[k], r.eps_bar, r.delta, r.dt, row, lin)
        row = -lin
    else:
        det_tangent_row(k, Rp.data, Rp.start, r.Gcv, r.Gcv_g[k], r.delta, r.dt, row)
    r.kl_det[k * m:(k + 1) * m, : k * m] = row[:, : k * m]
    return row


def row_kernels(r, k, Rp, nu_mode) -> dict:
    """The keyword arguments of ``set_kernels(k, ...)`` from the sums of row k (forward sweep;
    ``Rp`` R_theta packed); records Gamma_k as the control variate's matrix Gcv[k]."""
    P = r.P
    gam = r.gam_sum[:, k].sum(0) / P
    kw = {"gamma": gam}
    if r.n_tan_g:
        kw["kl_off"] = kl_row(r, k, Rp)
    r.Gcv[k] = gam
    if nu_mode == "stein":
        kw["ells"] = r.ells_sum[:, k].sum(0) / P
    elif nu_mode == "pathwise":
        kw["dsl"] = r.dsl_sum[:, k].sum(0) / P
    return kw


def s_u_row(r, k):
    """Row block k of S_U, S_U[k, <=k] = <dL_k dL_{<=k}^T> / delta (m, (k+1) m)."""
    m = r.m
    return r.group_row(r.su_sum, k)[:, :, : (k + 1) * m].sum(0) * (1.0 / (r.delta * r.P))


def theta_from(th, kern, nu_mode):
    """Run the deterministic theta-side ``th`` over every row with the kernel estimates ``kern``
    (a dict of :func:`kernels`): fixed point and jackknife."""
    m = th.m
    for k in range(th.N + 1):
        rk = slice(k * m, (k + 1) * m)
        kw = {"gamma": kern["gamma"][k], "ells": None, "dsl": None}
        if kern["kl"] is not None:
            kw["kl_off"] = kern["kl"][rk, : k * m]
        if nu_mode == "stein":
            kw["ells"] = kern["ells"][k]
        elif nu_mode == "pathwise":
            kw["dsl"] = kern["dsl"][k]
        th.set_kernels(k, **kw)
        if k < th.N:
            th.advance(k)
    return th


def nu_err(r, th, n, nu_mode):
    """Batch-means error of nu: the estimator evaluated on each path group (kernels fixed)."""
    m, kk, G = r.m, r.kk, r.G
    sizes = r.sizes.reshape(G, 1, 1, 1)
    if nu_mode == "stein":
        Mf = th.M_flat(n)
        KM = (th.Kl[: n * m, : n * m] @ Mf).reshape(n, m, kk)
        # K_ell[k, l] = 0 for l > k, so the full product is the causal sum over l <= k
        per = (r.ells_sum[:, :n] / sizes - KM) @ th.rho_inv
    elif nu_mode == "pathwise":
        per = r.dsl_sum[:, :n] / sizes
    else:
        return np.zeros((n, m, kk))
    return per.std(0, ddof=1) / math.sqrt(G)
