"""Error bars of a DMFT solve: batch means, the group jackknife through the theta-side, the
propagation to test observables, and the combination of independent replicas.

Batch means over path groups (r-side averages) and a group jackknife through the theta-side map
(Q, M, test observables) ignore the feedback of kernel errors into later paths, which all groups
share: at long horizons they are ~1.2-1.5x too small (measured on linreg at t = 5). Hence the
default ``replicas="auto"``: R = min(8, paths // (2 groups)) independent solves of paths/R paths
each (the cost is linear in the number of paths, so R replicas of P/R paths cost about one solve
of P paths), and ``*_err`` is the between-replica standard error sd/sqrt(R), feedback included
(test observables: F at the replica mean, error = sd_r of grad F . (Q_r - Qbar, M_r - Mbar) / sqrt(R))
(Student t with R - 1 degrees of freedom: ``meta["err_dof"]``). ``replicas=1`` keeps the
within-solve estimates (``err_dof`` = groups - 1).
"""
from __future__ import annotations

import math

import numpy as np

from ..results import Result
from .estimators import kernels, theta_from

#: two-time arrays (their own second time axis; no between-replica error bar)
TWO_TIME = ("C_theta", "R_theta", "K_ell", "R_ell", "S_U")
#: arrays averaged over replicas without an error bar
NO_ERR = TWO_TIME + ("Phi0", "Phi_star", "E_r_ell", "E_ell_ell")
#: suffix of the per-replica curves of a one-time observable (R, n, ...)
REPS = "_reps"
#: not averaged: the grid, rho, and the theta samples (pooled instead)
_CURVES_EXCLUDED = {"t", "rho", "theta_samples", "theta_star_samples", "theta0_samples"}


def replica_error(reps):
    """The between-replica standard error sd_r / sqrt(R) of the mean of R independent replica
    curves ``reps`` (R, ...): Student t with R - 1 degrees of freedom."""
    reps = np.asarray(reps)
    return reps.std(0, ddof=1) / math.sqrt(reps.shape[0])


def batch_means(arr, sizes, P):
    """(mean, standard error) of the per-path average whose group sums are ``arr`` (G, ...):
    mean = sum / P, error = sd of the group means / sqrt(G)."""
    G = sizes.shape[0]
    gm = arr / sizes.reshape((-1,) + (1,) * (arr.ndim - 1))
    return arr.sum(0) / P, gm.std(0, ddof=1) / math.sqrt(G)


def theta_replicates(sv, n):
    """Per-group replicates of (Q, M) (G', n, ...) and the factor f of the variance
    f sum_g (x_g - mean)^2: the theta-paths' batch means (Monte Carlo theta-side, f =
    1/(G'(G'-1))) or the group jackknife through the deterministic theta-side map (f = (G-1)/G)."""
    if sv.reg:
        reps_Q, reps_M = sv.th.group_moments()
        Gt = reps_Q.shape[0]
        return reps_Q, reps_M, 1.0 / (Gt * (Gt - 1))
    reps_Q, reps_M = [], []
    G = sv.G
    for g in range(G):
        kg = kernels(sv.rside, drop=g)
        tg = theta_from(sv.new_theta(), kg, sv.modes.nu_mode)
        reps_Q.append(tg.Q_diag(kg["S_U"]))
        reps_M.append(tg.M_overlap())
    return np.array(reps_Q), np.array(reps_M), (G - 1) / G


def theta_errors(reps_Q, reps_M, fac, n):
    """(Q_err, M_err, cov): the spread of the replicates and the per-time covariance (n, p, p) of
    the flattened (Q, M) entries, for the propagation to test observables."""
    Gt = reps_Q.shape[0]
    dev = np.concatenate([(reps_Q - reps_Q.mean(0)).reshape(Gt, n, -1),
                          (reps_M - reps_M.mean(0)).reshape(Gt, n, -1)], axis=2)
    cov = fac * np.einsum("gki,gkj->kij", dev, dev)
    Q_err = np.sqrt(fac * ((reps_Q - reps_Q.mean(0)) ** 2).sum(0))
    M_err = np.sqrt(fac * ((reps_M - reps_M.mean(0)) ** 2).sum(0))
    return Q_err, M_err, cov


def propagate(grad, cov):
    """First-order error of an observable with gradient ``grad`` (n, p) in the (Q, M) entries."""
    return np.sqrt(np.maximum(np.einsum("ki,kij,kj->k", grad, cov, grad), 0.0))


def fold_two_time(acc, one):
    """Add the two-time arrays of replica Result ``one`` into the running sums ``acc`` (truncated
    to the shorter time axis) and drop them from ``one``: the same sums, in the same order, as
    averaging the R stacked arrays, without holding R copies of (N+1)^2 m^2 values each (issue 12)."""
    for key in TWO_TIME:
        if key not in one.data:
            continue
        x = one.data.pop(key)
        if key not in acc:
            acc[key] = np.array(x, dtype=float)
        else:
            n2 = min(acc[key].shape[0], x.shape[0])
            acc[key] = acc[key][:n2, :n2] + x[:n2, :n2]


def replica_test(kern, model, settings, res, n):
    """test_<x> and test_<x>_err of R replica Results (first n times) from their Q and M, by
    :func:`dmftgen.observables.replica_test_observables` (value at the replica mean, error by
    first-order propagation of the between-replica covariance of (Q, M))."""
    from ..observables import replica_test_observables

    if n == 0:
        return {}
    Qs = np.array([x["Q"][:n] for x in res])
    Ms = np.array([x["M"][:n] for x in res])
    return replica_test_observables(kern, model, Qs, Ms, res[0]["rho"], model.param_vector(settings.params))


def combine_replicas(res, paths, *, two, kern, model, settings) -> Result:
    """The mean of R replica Results, with ``*_err`` the between-replica standard error
    sd/sqrt(R) (Student t, R - 1 degrees of freedom) on the common finished times; theta samples
    are pooled (their law is the mixture of the replicas' laws, whose second moments are the
    replica means reported as Q and M); two-time arrays are averaged on their common part, from
    the running sums ``two`` of :func:`fold_two_time` (the replicas no longer hold them); the test
    observables are evaluated here, once, at the replica mean of (Q, M) (:func:`replica_test`)."""
    R = len(res)
    n = min(len(x.t) for x in res)
    data = {"t": res[0].t[:n], "rho": res[0]["rho"]}
    for key in res[0].keys():
        if key in _CURVES_EXCLUDED or key.endswith("_err") or key.startswith("check_"):
            # self-check residuals are per replica (each replica's meta has its own checks)
            continue
        arr = np.array([x[key][: n] if x[key].ndim and x[key].shape[0] >= n else x[key] for x in res])
        data[key] = arr.mean(0)
        if key in NO_ERR:
            continue
        data[key + "_err"] = replica_error(arr)
        if arr.ndim > 1 and arr.shape[1] == n:
            # each replica's curve (R, n, ...): the errors' correlation in time, e.g. for the drift
            # of a plateau window (dmftgen.dmft.stationary)
            data[key + REPS] = arr
    for key, acc in two.items():
        # two time axes; replicas that stopped early (diverged) have shorter ones
        n2 = min(n, acc.shape[0])
        data[key] = acc[:n2, :n2] / R
    # test observables: once, at the replica mean of (Q, M), between-replica error by propagation
    data.update(replica_test(kern, model, settings, res, n))
    for key, ax in (("theta_samples", 1), ("theta_star_samples", 0), ("theta0_samples", 0)):
        parts = [x[key] for x in res if key in x and np.size(x[key])]
        if parts:
            data[key] = np.concatenate([p_[:n] for p_ in parts] if ax == 1 else parts, axis=ax)
    bad = [x for x in res if not x.ok]
    status = bad[0].status if bad else "ok"
    message = bad[0].message if bad else ""
    meta = dict(res[0].meta)
    tangents = meta["tangents"]
    if tangents.startswith("adjoint on "):
        per = int(tangents.split()[2])
        tangents = f"adjoint on {per * R} paths ({per} in each replica)"
    # the solve's timings (seconds, "_s") are the replicas' together: the first replica's alone
    # are ~1/R of them (the other replicas' own stay in replica_meta)
    t0 = res[0].meta.get("timings", {})
    meta["timings"] = {key: (float(sum(x.meta.get("timings", {}).get(key, 0.0) for x in res))
                             if key.endswith("_s") else val) for key, val in t0.items()}
    meta.update({"paths": paths, "replicas": R, "replica_meta": [x.meta for x in res[1:]], "tangents": tangents,
                 "reached_steps": n, "t_reached": float(data["t"][-1]) if n else 0.0,
                 "err_dof": R - 1,
                 "errors": f"between-replica standard error sd/sqrt(R) over R = {R} independent solves "
                           f"of {paths // R} paths (includes the feedback of kernel errors; Student t "
                           f"with {R - 1} degrees of freedom)"})
    return Result(data, meta, status=status, message=message)
