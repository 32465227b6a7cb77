"""The Result of one finished solve: observables, order parameters, error bars, self-checks, meta."""
from __future__ import annotations

import time

import numpy as np

from ..observables import test_gradients
from ..results import Result, versions
from .checks import public, run_checks, verdict
from .errorbars import batch_means, propagate, theta_errors, theta_replicates
from .estimators import nu_err
from .stationary import balance


def result(sv, reached, status, message) -> Result:
    """The Result of solve ``sv`` (a :class:`dmftgen.dmft.solver.Solve`) on its first ``reached``
    grid points, with status ``status`` unless a self-check fails (then ``inaccurate``).

    Keys: t, train_loss, train_<metric>, test_loss, test_<metric> (each with ``*_err``), Q, M (with
    ``*_err``), C_theta, R_theta, K_ell, Gamma, R_ell, nu (with ``nu_err``), S_U, Phi0 and
    Phi_star (deterministic theta-side), rho, E_r_ell, E_ell_ell, Q_balance (B = -dQ/dt,
    :func:`dmftgen.dmft.stationary.balance`; with ``*_err`` when combined from replicas; not with a
    declared regulariser H), the self-check residuals
    ``check_*`` and, if asked for, theta samples."""
    from ..observables import test_observables

    model, kern, r, th = sv.model, sv.kern, sv.rside, sv.th
    N, m, G, P = sv.N, sv.m, sv.G, sv.P
    n = reached  # number of finished grid points
    data = {"t": sv.settings.times[:n]}
    sizes = r.sizes
    loss, loss_err = batch_means(r.loss_sum[:, :n], sizes, P)
    data["train_loss"], data["train_loss_err"] = loss, loss_err
    for q, name in enumerate(model.metrics):
        v, e = batch_means(r.met_sum[:, :n, q], sizes, P)
        data[f"train_{name}"], data[f"train_{name}_err"] = v, e
    S_U = sv.S_U
    C, Q, Mo = th.moments(S_U, n)
    rho = th.rho
    data["Q"], data["M"] = Q, Mo
    # a replica (n_replicas > 1) leaves them to the replica combination: evaluated once, at the
    # replica mean of (Q, M) (issue 12; errorbars.combine_replicas)
    tst = test_observables(kern, model, Q, Mo, rho, sv.p) if n and sv.n_replicas == 1 else {}
    for key, v in tst.items():
        if key != "test_loss_mc":
            data[key] = v
    # error bars of theta-side quantities: replicates through the theta-side map
    Q_err = np.zeros_like(Q)
    M_err = np.zeros_like(Mo)
    if (sv.opts.jackknife or sv.reg) and n == N + 1:
        reps_Q, reps_M, fac = theta_replicates(sv, n)
        Q_err, M_err, cov = theta_errors(reps_Q, reps_M, fac, n)
        for key, gr in test_gradients(kern, model, Q, Mo, rho, sv.p, tst).items():
            data[key + "_err"] = propagate(gr, cov)
    else:
        for key in tst:
            if key != "test_loss_mc":
                data[key + "_err"] = np.full(n, np.nan)
    data["Q_err"], data["M_err"] = Q_err, M_err
    # order parameters
    NNn = n * m
    Kl = th.Kl[:NNn, :NNn].reshape(n, m, n, m).transpose(0, 2, 1, 3)
    data["C_theta"] = C[:NNn, :NNn].reshape(n, m, n, m).transpose(0, 2, 1, 3)
    data["R_theta"] = th.R[:NNn, :NNn].reshape(n, m, n, m).transpose(0, 2, 1, 3)
    data["K_ell"] = Kl
    data["Gamma"] = np.stack([Kl[k, k] for k in range(n)]) if n else np.zeros((0, m, m))
    Rl = Kl / sv.dt
    for k in range(n):
        Rl[k, k] = 0.0
    data["R_ell"] = Rl
    data["nu"] = th.nu[:n]
    data["nu_err"] = nu_err(r, th, n, sv.modes.nu_mode)
    ni = min(n, N) * m
    data["S_U"] = S_U[:ni, :ni].reshape(ni // m, m, ni // m, m).transpose(0, 2, 1, 3)
    if not sv.reg:
        data["Phi0"] = th.Phi0[:NNn].reshape(n, m, m)
        data["Phi_star"] = th.Phis[:NNn].reshape(n, m, sv.kk)
    data["rho"] = np.asarray(rho)
    data["E_r_ell"] = r.rl_sum[:, :n].sum(0) / P
    data["E_ell_ell"] = r.ll_sum[:, :n].sum(0) / P
    # the stationarity balance B = -dQ/dt per replica: the replicas' spread is its error (its parts
    # Q, E_r_ell, E_ell_ell have correlated errors: B's is much smaller than theirs combined). Not
    # with a declared regulariser H: its dQ/dt has the term 2 sym E[theta h(theta)^T] more
    if not sv.reg:
        data["Q_balance"] = balance(Q, data["E_r_ell"], data["E_ell_ell"], sv.lam, sv.tau)[0]
    if sv.theta_samples and n == N + 1:
        data.update(th.samples(sv.theta_samples, sv.streams.rng_theta, sv.L_S, S_U, sv.init_std,
                               sv.teacher_std))
    checks, check_data = run_checks(sv, n, C, Q, Mo, rho)
    data.update(check_data)
    if status == "ok":
        status, message = verdict(checks)
    meta = {
        "model": model.name, "source_hash": kern.SOURCE_HASH, "settings": sv.settings.as_dict(),
        "paths": P, "groups": G, "method": sv.method, "nu_estimator": sv.modes.nu_mode,
        "tangents": "deterministic" if sv.modes.A is not None else f"adjoint on {r.n_tan_g * G} paths",
        "tangent_cv": r.cv,
        "theta_side": "Monte Carlo theta-paths" if sv.reg else "deterministic (h = lam theta)",
        "n_steps": N, "reached_steps": n, "t_reached": float(sv.settings.times[n - 1]) if n else 0.0,
        "timings": dict(sv.timing, total_s=time.perf_counter() - sv.t_start,
                        cpu_s=time.process_time() - sv.cpu_start),
        "residuals": list(sv.residuals), "clipped_pivots": int(sv.n_clipped),
        "gram": sv.gram, "checks": public(checks),
        "options": sv.opts.as_dict(),
        "versions": versions(),
        "err_dof": G - 1,
        "errors": "one solve (replicas=1): r-side averages: batch means over path groups; Q, M, "
                  "test observables: group jackknife through the theta-side map (first order, "
                  "ignores the feedback of kernel errors into later paths: too small at long "
                  "horizons; the default replicas='auto' includes it)",
    }
    if sv.n_replicas > 1:
        # a replica: its checks' per-entry residuals, for the checks pooled over the replicas
        # (checks.pooled; solver._solve_replicas takes them out of the meta again)
        meta["_checks_full"] = checks
    return Result(data, meta, status=status, message=message)
