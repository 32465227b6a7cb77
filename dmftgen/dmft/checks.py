"""Self-checks of a DMFT solve: identities the exact discrete solution satisfies (docs/theory.md).

Every solve evaluates these at run time, with batch-means error bars over its independent path
groups, and its status becomes ``inaccurate`` when one of them is violated beyond a threshold
chosen for a family-wise false-alarm rate alpha (option ``check_alpha``, default :data:`ALPHA`) of
the whole solve: alpha is split equally among the statistical checks (Bonferroni over the checks,
then over each check's entries; Student-t quantile with G - 1 degrees of freedom for G groups,
:func:`calibrate`). A solve of R replicas gives each replica alpha / (2R) and the checks pooled
over its replicas alpha / 2 (:func:`pooled`: the replica mean of every residual, with sqrt(R)
times the z of a systematic error), a Richardson pair each solve alpha / 2, so that the status of
what the user called has the stated rate. (Before, every check
of every replica had alpha to itself: 8 replicas x 5 checks x 2 Richardson solves made ~8 % of
false alarms per ``solve_long``; one was seen at T = 50, logistic, seed 32: 'Q balance (time
average)' at z 3.96 against 3.88 in one of 16 sub-solves, while the z of that check over 192
replicas of 12 seeds had rms 1.00 and mean 0.03: calibrated, only too many tests.)

1. **Stein balance of E[r ell^T]** (the discrete Q identity). (w_0..w_k, r*) is Gaussian with
   covariance (C_theta, M, rho) and r_k = w_k - (1/delta) sum_{m<k} R_theta[k, m] dL_m, so Stein's
   lemma on w and the independence of dB_k from the past give, for every k,

       E[r_k ell_k^T] = sum_{l<=k} C_theta[k, l] K_ell[k, l]^T + M[k] nu[k]^T
                        - (1/dt) sum_{m<k} R_theta[k, m] S_U[m, k].

   The theta-side turns this into the Euler--Maruyama-exact overlap recursion
   Q_{k+1} = (1 - lam dt)^2 Q_k - 2 (1 - lam dt) dt sym E[r_k ell_k^T] + V_k with
   V_k = E[(dU_k - dt F_k)(dU_k - dt F_k)^T] >= tau dt E[ell_k ell_k^T] (F_k the theta-side drift),
   i.e. the discrete form of dQ/dt = -2 lam Q - 2 E[r ell] + tau E[ell ell^T]; the residual is
   reported in units of Q, 2 (1 - lam dt) dt sym(res). It fails when the r-side Gaussian does not
   have the covariance the theta-side says (a wrong sampler), when the responses are wrong, or
   when the memory term is.
2. **M balance**: M_{k+1} = (1 - lam dt) M_k - dt E[ell_k r*^T] (discrete dM/dt = -lam M - E[ell r*]).
   With the Stein estimator of nu it holds by construction; with the pathwise or deterministic nu
   it compares two estimators of the teacher drift.
3. **Gradient flow descends**: at tau = 0 the training objective train_loss + lam tr(Q)/2 does not
   increase from one step to the next (Euler steps with dt below 2 / smoothness).
4. **Sampler**: L L^T = S_U for the causal factor (relative error below 1e-8 on random probes), and
   the empirical second moment of the r-side input w_k on the paths equals C_theta[k, k] = Q_k.
5. **Finite kernels** (checked during the sweep: a non-finite row ends it as ``diverged``).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .rside import chunks_times


ALPHA = 1e-3          # family-wise false-alarm rate of the self-checks
SAMPLER_TOL = 1e-8    # relative error allowed in L L^T = S_U (round-off is ~1e-14)
MIN_GROUP_PATHS = 32  # paths per group below which the statistical checks are not run


def threshold(n_entries: int, dof: int, alpha: float = ALPHA) -> float:
    """|z| threshold: Student-t (``dof`` degrees of freedom) quantile at alpha / (2 n_entries)."""
    from scipy.stats import t as student_t

    return float(student_t.isf(alpha / (2.0 * max(n_entries, 1)), max(dof, 1)))


def calibrate(checks, alpha):
    """Set ``threshold`` and ``ok`` of the statistical checks (those with a ``dof``) for a
    family-wise false-alarm rate ``alpha`` over all of them: alpha / C to each of the C checks,
    Bonferroni over its ``n`` entries within (:func:`threshold`). The deterministic checks
    (kernel consistency, sampler factor) keep their round-off thresholds."""
    stat = [c for c in checks if "dof" in c]
    for c in stat:
        c["threshold"] = threshold(c["n"], c["dof"], alpha / len(stat))
        c["ok"] = bool(c["worst_z"] <= c["threshold"])
    return checks


def _z(mean, err, tiny=1e-300):
    """z = mean / err; an error at or below ``tiny`` gives z 0 for a residual that vanishes too
    (below 1e3 tiny) and inf otherwise."""
    return np.where(err > tiny, mean / np.maximum(err, tiny), np.where(np.abs(mean) > 1e3 * tiny, np.inf, 0.0))


def _zstat(per_group):
    """Mean over groups, batch-means error and z = mean / err (:func:`_z`, round-off scale of the
    groups' values)."""
    G = per_group.shape[0]
    mean = per_group.mean(0)
    err = per_group.std(0, ddof=1) / math.sqrt(G)
    return mean, err, _z(mean, err, 1e-13 * np.abs(per_group).max(initial=0.0) + 1e-300)


class RowRecord:
    """What the checks need from the per-group two-time sums, recorded row by row (issue 12).

    In row mode the forward sweep keeps only row k of the per-group sums ``su_sum``/``kl_sum``
    ((G, m, .) instead of (G, (N+1) m, .): memory O(P K m + K^2 m^2), not O(G K^2 m^2)). Right after
    step k (the theta-side has taken row k) :meth:`add` contracts the group rows with what
    :func:`run_checks` multiplies them by, all known at step k: C_theta[k, <=k] (from the causal
    factor, W W^T = R_theta S_U R_theta^T, plus the Phi0 / Phi_star parts), M[<=k], R_theta[k, <k].
    Per group g and row k (K_g the group's K_ell row, S_g its S_U row):

    * ``ck[g, k]`` = sum_{l<=k} C_theta[k, l] K_g[k, l]^T          (m, m)
    * ``km[g, k]`` = sum_{l<=k} K_g[k, l] M[l]                     (m, k)
    * ``rs[g, k]`` = sum_{l<k} R_theta[k, l] S_g[k, l]^T / dt      (m, m)
    * ``cons[k]``  = the kernel-consistency residual of row k (relative).

    Without row mode (the fixed point, or a sweep that keeps every row) :meth:`after` fills the same
    record from the stored sums once the solve is done: one implementation of the contractions,
    :func:`_record_row`, whichever way the sums were kept.
    """

    def __init__(self, G, N, m, kk):
        self.ck = np.zeros((G, N + 1, m, m))
        self.km = np.zeros((G, N + 1, m, kk))
        self.rs = np.zeros((G, N + 1, m, m))
        self.cons = np.zeros(N + 1)

    def add(self, sv, k, th):
        """Record row k of solve ``sv`` (a :class:`dmftgen.dmft.solver.Solve` in the forward sweep)
        right after ``th.set_kernels(k, ...)``: C_theta[k, <=k] is the theta-side's row of the
        input's covariance (``th.C``, formed by ``input_row``), M[<=k] from Phis; the contractions
        with the group rows in one compiled pass, :func:`_record_row` (issue 12: the numpy version
        formed the (G, m, (k+1) m) group rows and four temporaries of that size per row, ~0.45 ms a
        row at K = 500, m = 2)."""
        m = sv.m
        self.record(sv, k, th.C[k * m:(k + 1) * m, : (k + 1) * m], th.M_flat(k + 1) if sv.kk else None)

    def record(self, sv, k, C_row, MF):
        """Row k from C_theta[k, <=k] (``C_row``, (m, (k+1) m)) and M[<=k] flat (``MF``; None without
        a teacher), contracted with the group sums' row k by :func:`_record_row`."""
        m, r, th = sv.m, sv.rside, sv.th
        rk = slice(k * m, (k + 1) * m)
        cols = slice(0, (k + 1) * m)
        scale_rs = sv.delta * sv.dt if 0 < k < sv.N else 0.0  # the S_U row k exists for k < N
        self.cons[k] = _record_row(k, m, r.group_row(r.kl_sum, k), r.n_tan_g,
                                   r.kl_det if r.cv else _NO_ROW, r.gam_sum[:, k], r.sizes,
                                   th.Kl[rk, cols] if sv.modes.A is not None else _NO_ROW,
                                   C_row, np.zeros(((k + 1) * m, 0)) if MF is None else MF,
                                   r.group_row(r.su_sum, k), th.R[rk], scale_rs, th.Kl[rk, cols],
                                   self.ck[:, k], self.km[:, k], self.rs[:, k])

    @classmethod
    def after(cls, sv, n, C):
        """The record of rows < n from the stored sums of a solve without row mode (C: C_theta flat)."""
        m = sv.m
        rec = cls(sv.G, sv.N, m, sv.kk)
        Mf = sv.th.M_flat(n) if sv.kk else None
        for k in range(n):
            cols = slice(0, (k + 1) * m)
            rec.record(sv, k, C[k * m:(k + 1) * m, cols], None if Mf is None else Mf[cols])
        return rec


_NO_ROW = np.zeros((0, 0))  # "not given" for the compiled record's optional rows


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _record_row(k, m, kl, n_tan_g, kl_det, gam, sizes, det_row, C, MF, su, R, scale_rs, Ku,
                ck, km, rs):
    """The record of row k (:meth:`RowRecord.add`) from the group sums, in one pass per group.

    Group g's K_ell row, K_g[b, l] (b < m, l <= k), is the estimator the solve used (as
    :func:`dmftgen.dmft.estimators.kl_row`, per group): ``kl[g, b, :k m] / n_tan_g`` (+ what the
    control variate adds, ``kl_det[k m + b]``, if given (not ``_NO_ROW``): its known mean, or
    minus its linear part at the replica's mean noise, common to the groups) for l < k and ``gam[g] / sizes[g]`` at l = k, or
    the theta-side's row ``det_row`` for deterministic tangents (``det_row`` of m rows). Writes

        ck[g, a, b] = sum_l C[a, l] K_g[b, l],    km[g, b, :] = sum_l K_g[b, l] MF[l, :],
        rs[g, a, b] = sum_{l<k} R[a, l] su[g, b, l] / (sizes[g] scale_rs)   (scale_rs = delta dt > 0)

    Compiled with reassociation (SIMD partial sums, fixed at compile time: the same bytes at any
    thread count), as :func:`dmftgen.dmft._linalg.dot`. Returns the kernel-consistency residual
    max |Ku - Kbar| / max |Kbar| of the theta-side's row ``Ku`` against the group mean Kbar
    (tangent part: plain mean, every group has n_tan_g tangent paths; Gamma_k: weighted by the
    groups' sizes)."""
    G = gam.shape[0]
    n = (k + 1) * m
    k0 = k * m
    kk = MF.shape[1]
    krow = np.empty(n)
    kbar = np.zeros((m, n))
    wsum = 0.0
    for g in range(G):
        wsum += sizes[g]
    inv_G = 1.0 / G
    deterministic = det_row.shape[0] == m
    for g in range(G):
        for b in range(m):
            if deterministic:
                for j in range(n):
                    krow[j] = det_row[b, j]
            else:
                for j in range(k0):
                    krow[j] = 0.0
                if n_tan_g > 0 and k > 0:
                    inv_nt = 1.0 / n_tan_g  # a product, not a division, per entry (~4x cheaper)
                    for j in range(k0):
                        krow[j] = kl[g, b, j] * inv_nt
                    if kl_det.shape[0] > 0:
                        for j in range(k0):
                            krow[j] += kl_det[k0 + b, j]
                for c in range(m):
                    krow[k0 + c] = gam[g, b, c] / sizes[g]
            for a in range(m):
                t = 0.0
                for j in range(n):
                    t += C[a, j] * krow[j]
                ck[g, a, b] = t
            for c in range(kk):
                t = 0.0
                for j in range(n):
                    t += krow[j] * MF[j, c]
                km[g, b, c] = t
            for j in range(k0):
                kbar[b, j] += krow[j] * inv_G
            for j in range(k0, n):
                kbar[b, j] += krow[j] * (sizes[g] / wsum)
        if scale_rs > 0.0:
            for a in range(m):
                for b in range(m):
                    t = 0.0
                    for j in range(k0):
                        t += R[a, j] * su[g, b, j]
                    rs[g, a, b] = t / (sizes[g] * scale_rs)
    big = 0.0
    diff = 0.0
    for b in range(m):
        for j in range(n):
            big = max(big, abs(kbar[b, j]))
            diff = max(diff, abs(Ku[b, j] - kbar[b, j]))
    return diff / (big + 1e-300)


def run_checks(sv, n, C, Q, Mo, rho):
    """Evaluate the self-checks on the first ``n`` grid points of solver ``sv``.

    Returns ``(checks, data)``: ``checks`` a list of dicts (name, what, n, worst_z, threshold,
    t_worst, value, err, ok), ``data`` the per-time residual curves (``check_<name>``,
    ``check_<name>_err``) for the result file.
    """
    m, G, kk, dt, lam, r = sv.m, sv.G, sv.kk, sv.dt, sv.lam, sv.rside
    t = sv.settings.times[:n]
    sizes = r.sizes
    out, data = [], {}
    # the per-group contractions: recorded during a row-mode sweep, else from the stored sums
    rec = sv.rows if getattr(sv, "rows", None) is not None else RowRecord.after(sv, n, C)
    # The batch-means z of a group average is ~Student t only if each group averages enough paths
    # (products such as w w^T and r ell^T are skewed); below MIN_GROUP_PATHS the residual checks
    # would raise false alarms, and only the deterministic ones (sampler factor, kernel
    # consistency) are run.
    if n < 2 or sizes.min() < MIN_GROUP_PATHS:
        if n >= 1:
            out.append(_consistency(sv, n, rec))
        out.extend(_sampler_checks(sv, n, Q, t, variance=False))
        return calibrate(out, sv.opts.check_alpha), data
    th = sv.th
    R = th.R
    a = 1.0 - lam * dt
    ells = r.ells_sum[:, :n] / sizes[:, None, None, None]
    Mf = th.M_flat(n) if kk else None
    # per-group teacher drift nu_g[k] with the estimator the solve used
    nug = np.zeros((G, n, m, kk))
    KM = np.zeros((G, n, m, kk))
    nk = min(n, sv.N)  # S_U[m, k] needs the increment dL_k: k < N
    res = np.zeros((G, nk, m, m))
    res_used = np.zeros((nk, m, m))      # with the kernels the theta-side actually used
    mres_used = np.zeros((n, m, kk))
    rl = r.rl_sum[:, :n] / sizes[:, None, None, None]
    rl_mean = r.rl_sum[:, :n].sum(0) / float(sizes.sum())
    ells_mean = r.ells_sum[:, :n].sum(0) / float(sizes.sum())
    S_used = sv.S_U
    for k in range(n):
        rk = slice(k * m, (k + 1) * m)
        cols = slice(0, (k + 1) * m)
        Ku = th.Kl[rk, cols]
        if kk:
            KM[:, k] = rec.km[:, k]
            mres_used[k] = dt * (ells_mean[k] - Ku @ Mf[cols] - th.nu[k] @ rho)
            if sv.modes.nu_mode == "stein":
                nug[:, k] = (ells[:, k] - KM[:, k]) @ th.rho_inv
            elif sv.modes.nu_mode == "pathwise":
                nug[:, k] = r.dsl_sum[:, k] / sizes[:, None, None]
            else:
                nug[:, k] = th.nu[k]
        if k >= nk:
            continue
        # 1. Stein balance of E[r ell^T]
        rhs = rec.ck[:, k].copy()
        if kk:
            rhs += np.einsum("ij,gkj->gik", Mo[k], nug[:, k])
        if k > 0:
            pm = slice(0, k * m)
            rhs -= rec.rs[:, k]
        res[:, k] = rl[:, k] - rhs
        rhs_u = C[rk, cols] @ Ku.T
        if kk:
            rhs_u += Mo[k] @ th.nu[k].T
        if k > 0:
            rhs_u -= R[rk, pm] @ S_used[pm, rk] / dt
        res_used[k] = rl_mean[k] - rhs_u
    sym = lambda x: 2.0 * a * dt * 0.5 * (x + np.swapaxes(x, -1, -2))  # noqa: E731
    out.append(_summarise("Q balance (time average)", "the Q balance residual averaged over all times",
                          sym(res).mean(1, keepdims=True), np.array([np.nan]), G, {}, "", center=sym(res_used).mean(0, keepdims=True),
                          ref=2 * dt * float(np.abs(rl_mean).max(initial=0.0))))
    out.append(_summarise("Q balance", "Q_{k+1} recursion from E[r ell^T] (Stein identity on the r-side input)",
                          sym(res), t[:nk], G, data, "check_Q_balance", center=sym(res_used),
                          ref=2 * dt * float(np.abs(rl_mean).max(initial=0.0))))
    # 2. M balance
    if kk:
        mres = dt * (ells - KM - nug @ rho)
        out.append(_summarise("M balance", "M_{k+1} = (1 - lam dt) M_k - dt E[ell_k r*^T]",
                              mres[:, : n - 1], t[: n - 1], G, data, "check_M_balance",
                              center=mres_used[: n - 1], ref=dt * float(np.abs(ells_mean).max(initial=0.0))))
    # 3. the theta-side used the r-side estimates (kernel rows and teacher drift)
    out.append(_consistency(sv, n, rec))
    # 4. gradient flow descends
    if sv.tau == 0.0 and not sv.reg:
        F = r.loss_sum[:, :n] / sizes[:, None] + 0.5 * lam * np.trace(Q[:n], axis1=1, axis2=2)[None, :]
        inc = np.diff(F, axis=1)
        mean, err, z = _zstat(inc)
        data["check_descent"], data["check_descent_err"] = mean, err
        out.append(_check("descent", "tau = 0: train loss + lam tr(Q)/2 non-increasing", z, mean, err,
                          t[1:n], G - 1, one_sided=True))
    # 5. sampler
    out.extend(_sampler_checks(sv, n, Q, t))
    return calibrate(out, sv.opts.check_alpha), data


def _consistency(sv, n, rec):
    """max |kernels used by the theta-side - mean of the per-group r-side estimates| (relative),
    from the record ``rec`` (:class:`RowRecord`)."""
    worst, at = 0.0, 0
    for k in range(n):
        d = rec.cons[k]
        if d > worst:
            worst, at = d, k
    # both drivers hand the theta-side exactly the r-side estimates (fixed point: those of its last
    # pass): equal to round-off; a plumbing error (a wrong row, a missing control-variate mean) is O(1)
    tol = 1e-9
    return {"name": "kernel consistency", "what": "theta-side K_ell rows = the r-side estimates (relative)",
            "n": int(n), "worst_z": worst, "threshold": tol, "t_worst": float(sv.settings.times[at]),
            "value": worst, "err": 0.0, "ok": bool(worst <= tol)}


def _summarise(name, what, per_group, t, G, data, key, center=None, ref=0.0):
    """Worst |z| of a residual: batch-means error from the per-group residuals; the value itself is
    ``center`` (the residual with the kernels the theta-side used; equal to the group mean when the
    solve is consistent, so an injected or plumbing error in the kernels shows up here)."""
    mean, err, z = _zstat(per_group)
    if key:
        data[key], data[key + "_err"] = (mean if center is None else center), err
    if center is not None:
        # round-off floor: a residual that vanishes by construction (Stein nu in the M balance)
        floor = 1e-10 * max(float(ref), float(np.abs(per_group).max(initial=0.0)), 1e-300)
        mean, err = center, np.sqrt(err ** 2 + floor ** 2)
        z = mean / err
    return _check(name, what, z, mean, err, t, G - 1)


def _check(name, what, z, value, err, t, dof, one_sided=False):
    """A statistical check from its per-entry z, residuals ``value`` and errors ``err`` (first axis:
    the times ``t``): the worst |z| (positive z only if ``one_sided``), where and what it was. The
    per-entry arrays go along under private keys (``_``) for :func:`pooled`, which combines them
    across replicas; :func:`public` strips them before the check goes into a result's meta."""
    z = np.asarray(z, dtype=float)
    if one_sided:
        z = np.maximum(z, 0.0)
    az = np.abs(z).reshape(z.shape[0], -1)
    j, flat = np.unravel_index(int(np.argmax(az)), az.shape)
    value, err = np.asarray(value, dtype=float), np.asarray(err, dtype=float)
    return {"name": name, "what": what, "n": int(z.size), "worst_z": float(az[j, flat]), "dof": dof,
            "t_worst": float(t[j]), "value": float(value.reshape(az.shape)[j, flat]),
            "err": float(err.reshape(az.shape)[j, flat]),
            "_value": value, "_err": err, "_t": np.asarray(t, dtype=float), "_one_sided": one_sided}


def public(checks):
    """The checks without their private per-entry arrays (what a result's meta keeps)."""
    return [{k: v for k, v in c.items() if not k.startswith("_")} for c in checks]


def pooled(per_replica, alpha):
    """The statistical checks of R independent replicas, pooled: one check per name, on the
    replica mean of each residual entry.

    Replica r's residual entry has value v_r and batch-means error e_r (G - 1 degrees of freedom,
    calibrated: ``tests/test_selfchecks.py``). The replicas are independent solves, so the mean
    v = (1/R) sum_r v_r has the error e = sqrt(sum_r e_r^2) / R, with the Welch--Satterthwaite
    degrees of freedom (sum_r e_r^2)^2 / sum_r (e_r^4 / (G - 1)) (the smallest over the entries),
    and z = v / e. A systematic error of the solver -- the same sign in every replica -- has sqrt(R)
    times the z it has in one replica: the pooled checks see faults that each replica's own checks,
    at alpha / (2R) each, would not. Thresholds for a family-wise rate ``alpha`` over the pooled
    checks (:func:`calibrate`). Entries are taken on the times all replicas reached.

    Parameters
    ----------
    per_replica : list of lists of check dicts (each replica's checks, private arrays included)
    alpha : float
    """
    R = len(per_replica)
    names = [c["name"] for c in per_replica[0] if "_value" in c]
    out = []
    for name in names:
        cs = [next((c for c in checks if c["name"] == name and "_value" in c), None) for checks in per_replica]
        if any(c is None for c in cs):
            continue
        n_t = min(c["_value"].shape[0] for c in cs)
        if n_t == 0:
            continue
        v = np.array([c["_value"][:n_t] for c in cs])
        e2 = np.array([c["_err"][:n_t] for c in cs]) ** 2
        dof_r = np.array([c["dof"] for c in cs], dtype=float).reshape((R,) + (1,) * (v.ndim - 1))
        mean = v.mean(0)
        err = np.sqrt(e2.sum(0)) / R
        with np.errstate(invalid="ignore", divide="ignore"):
            dof = e2.sum(0) ** 2 / (e2 ** 2 / dof_r).sum(0)   # >= the smallest dof_r; NaN where all e_r = 0
        dof = float(np.nanmin(dof)) if np.isfinite(dof).any() else float(dof_r.min())
        out.append(_check(f"{name} (pooled over {R} replicas)", f"{cs[0]['what']}; the replica mean of each residual",
                          _z(mean, err), mean, err, cs[0]["_t"][:n_t], dof, cs[0]["_one_sided"]))
    return public(calibrate(out, alpha))


def _sampler_checks(sv, n, Q, t, variance=True):
    out = []
    L, S = sv.L_S, sv.S_U
    if L is not None and S is not None and S.shape[0] and n == sv.N + 1:
        rng = np.random.default_rng(12345)
        X = rng.standard_normal((S.shape[0], 4))
        SX = S @ X
        rel = float(np.abs(L @ (L.T @ X) - SX).max() / max(np.abs(SX).max(), 1e-300))
        out.append({"name": "sampler factor", "what": "L L^T = S_U (relative error on random probes)",
                    "n": 1, "worst_z": rel, "threshold": SAMPLER_TOL, "t_worst": float("nan"),
                    "value": rel, "err": 0.0, "ok": bool(rel <= SAMPLER_TOL)})
    W = sv.W_in
    if variance and W is not None and sv.th is not None and not sv.reg:
        m = sv.m
        G = 16
        P = min(sv.P, 4096) // G * G
        if P < 4 * MIN_GROUP_PATHS * G // 2:  # the w w^T products are chi-square-skewed
            return out
        ks = np.unique(np.linspace(0, n - 1, 9).round().astype(int))
        # eta W[k]^T of the 9 rows at once, from the kernel's chunked layout (W's row block k is
        # zero beyond column k m: causal)
        sel = (ks[:, None] * m + np.arange(m)).ravel()
        EW = chunks_times(sv.rside.eta, W[sel, : int(ks[-1]) * m], P).reshape(P, len(ks), m)
        ww = np.empty((G, len(ks), m, m))   # per group and probed row: mean of w w^T - Q_k
        for i, k in enumerate(ks):
            w = sv.th.input_pre(k, P) + EW[:, i]
            ww[:, i] = np.einsum("pa,pb->pab", w, w).reshape(G, P // G, m, m).mean(1) - Q[k]
        mean, err, z = _zstat(ww)
        out.append(_check("input variance", "empirical E[w_k w_k^T] on the paths = Q_k", z, mean, err,
                          t[ks], G - 1))
    return out


def verdict(checks):
    """(status, message) from the list of checks: ``inaccurate`` names the worst violation."""
    bad = [c for c in checks if not c["ok"]]
    if not bad:
        return "ok", ""
    worst = max(bad, key=lambda c: c["worst_z"] / c["threshold"] if c["threshold"] else np.inf)
    where = f" at t = {worst['t_worst']:g}" if math.isfinite(worst["t_worst"]) else ""
    return "inaccurate", (
        f"self-check '{worst['name']}' failed{where}: {worst['what']} violated by "
        f"{worst['worst_z']:.3g} (threshold {worst['threshold']:.3g}; residual {worst['value']:.3g} "
        f"+- {worst['err']:.2g}); {len(bad)} of {len(checks)} checks failed")
