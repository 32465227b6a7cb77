"""The damped fixed point over whole trajectories: a cross-check of the forward sweep.

Each iterate runs the deterministic theta-side over all rows with the current kernels, samples
the r-side input of every path at once from the whole S_U (symmetric square root, or its causal
Cholesky factor: option ``sampler``), runs the paths over the whole horizon on the same common
random numbers, and damps the new kernel estimates:
kernels <- (1 - alpha) new + alpha old (``damping`` alpha), until the largest relative change is
below ``tol`` or after ``max_iter`` iterates. Only for h = lam theta (no declared regulariser).
"""
from __future__ import annotations

import time

import numpy as np

from ._linalg import PackedRows, chol_append, psd_sqrt
from .estimators import cv_mean_row, kernels, theta_from
from .forward import progress_bar


def fixed_point(sv) -> int:
    """Iterate solve ``sv`` to its fixed point; returns the number of finished grid points.
    Leaves on ``sv``: th, S_U, L_S, residuals, converged, timing, n_clipped."""
    r, opts = sv.rside, sv.opts
    P, N, m, kk = sv.P, sv.N, sv.m, sv.kk
    NI = N * m
    nu_mode = sv.modes.nu_mode
    alpha, tol, max_iter = float(opts.damping), float(opts.tol), int(opts.max_iter)
    cur = {"gamma": np.zeros((N + 1, m, m)), "ells": np.zeros((N + 1, m, kk)),
           "dsl": np.zeros((N + 1, m, kk)), "S_U": np.zeros((NI, NI)),
           "kl": np.zeros(((N + 1) * m,) * 2) if r.n_tan_g else None}
    sv.residuals = []
    sv.n_clipped = 0
    bar = progress_bar(sv.progress, max_iter, "DMFT fixed point")
    t_paths = t_theta = 0.0
    reached = N + 1
    converged = False
    est = cur
    for it in range(max_iter):
        t0 = time.perf_counter()
        th = theta_from(sv.new_theta(), cur, nu_mode)
        if opts.sampler == "cholesky":
            L, Lp = np.zeros((NI, NI)), PackedRows.causal(NI, 1, 1, NI)
            sv.n_clipped = chol_append(L, cur["S_U"], 0, NI, float(opts.pivot_tol), Lp.data, Lp.start)
        else:
            L = psd_sqrt(cur["S_U"])
        Wf = th.R[:, :NI] @ L
        wflat = (r.g0 @ th.Phi0.T) + r.eta_flat() @ Wf.T
        if kk:
            wflat += r.s @ th.Phis.T
        wpre = np.ascontiguousarray(wflat.reshape(P, N + 1, m))
        r.alloc(exact_increments=True)  # float64 dL, b_hist: a map without rounding jitter (RSide.alloc)
        r.Gcv = np.ascontiguousarray(cur["gamma"])
        r.Gcv_g = np.zeros_like(r.Gcv)
        r.Gcv_g[1:] = r.Gcv[:-1]
        t1 = time.perf_counter()
        r.run(0, N + 1, wpre, np.zeros((1, 1)), False, th.R, th.RT)
        if r.cv:
            for k in range(1, N + 1):
                cv_mean_row(r, k, th.Rp)
        t2 = time.perf_counter()
        t_paths += t2 - t1
        if r.bad.min() <= N:
            reached = int(r.bad.min())
            sv.th, sv.S_U, sv.L_S = th, cur["S_U"], L
            break
        new = kernels(r)
        est = dict(new)  # the last pass's own estimates, before damping (for the final theta-side)
        res = 0.0
        for key in ("gamma", "kl", "ells", "dsl", "S_U"):
            if new[key] is None:
                continue
            scale = max(float(np.abs(new[key]).max(initial=0.0)), 1e-300)
            res = max(res, float(np.abs(new[key] - cur[key]).max(initial=0.0)) / scale)
            if it > 0:
                new[key] = (1.0 - alpha) * new[key] + alpha * cur[key]
        cur = new
        sv.residuals.append(res)
        t_theta += time.perf_counter() - t2 + (t1 - t0)
        bar.update(1)
        if res < tol:
            converged = True
            break
    bar.close()
    sv.timing = {"paths_s": t_paths, "theta_s": t_theta, "iterations": len(sv.residuals)}
    sv.converged = converged
    if reached <= N:
        return reached
    # the theta-side of the last path pass's own estimates (not the damped iterate, which differs
    # from them by up to damping * tol): the reported theta-side and r-side averages then belong to
    # one map, as in the sweep, and the kernel-consistency check holds to round-off
    sv.th = theta_from(sv.new_theta(), est, nu_mode)
    sv.S_U = est["S_U"]
    sv.L_S = None
    return reached
