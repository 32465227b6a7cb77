"""Direct stationary solve of the discrete-time DMFT on lag kernels (tau > 0; tau >= 0 with a declared H).

For a model (student width m <= 3, any teacher width k; h = lam theta, or lam theta + grad H with
a declared regulariser H, see "Declared regulariser" below) whose SGF has a stationary state, the discrete scheme of docs/theory.md §2 at step dt becomes time-translation
invariant at long times: K_ell[k, l] = K(k - l) (K(0) = Gamma), R_theta[k, l] = R(k - l),
S_U[k, l] = S(|k - l|), M and nu constant. This module solves for those lag kernels directly, with
the memory truncated at ``window`` lags W and continued geometrically beyond it.

theta-side (deterministic, given K, S and E[ell r*^T]; m x m matrices per lag):

    R(0) = 0, R(1) = I,  R(n+1) = (1 - lam dt) R(n) - dt sum_{j=1}^{n} K(n - j) R(j),
    M = -(lam + Khat)^{-1} (E[ell r*^T] - Khat M),   Khat = sum_u K(u)     ("hat" form of lam M + E[ell r*^T] = 0)
    c(u) = sum_{a, b >= 1} R(a) S~(u - a + b) R(b)^T + c_inf,   c_inf = R_tot S_inf R_tot^T,
    C_theta(u) = M rho^{-1} M^T + c(u),   Q = C_theta(0),

with S = S~ + S_inf (S_inf the static part: r*, z and the static part of w are frozen per path).

r-side (Monte Carlo, P paths of L = burn + samples steps, common random numbers across
iterations): w_k = M rho^{-1} r* + w~_k with w~ the stationary Gaussian of covariance c (circulant
embedding, FFT), and

    r_k = w_k - (1/delta) [sum_{n=1}^{W} R(n) dL_{k-n} + R_tail <dL>_{W<n<=2W}],
    dL_k = ell(r_k) (dt + sqrt(tau delta) dB_k).

After ``burn`` steps (>= 2 W) the averages over the remaining steps give Gamma, E[ell r*^T],
S(u) = (1/delta) <dL_k dL_{k-u}^T> (by FFT over the stored increments), S_inf (mean over the lags
W < u <= 2W) and K(u) = <Z_u> from the adjoint recursion of the template
(dmftgen/codegen/templates/stationary.py) at ``targets`` times per path,

    Z_0 = grad ell(r_k),  Z_v = -(1/delta) (sum_{v'<v} Z_{v'} R(v - v')) a_{k-v},  a_l = grad ell(r_l)(dt + sq dB_l),

with a control variate (grad ell -> Gamma in Z, its mean by the deterministic recursion).

Fixed point. The map x = (K, S, S_inf, M) -> G(x) is deterministic (common random numbers) and
contracts by ~0.3 per pass undamped; Anderson mixing (type II, ``anderson`` previous steps)
accelerates it, refusing extrapolations to a negative noise variance and falling back to plain
iteration when it stalls (so that an unstable tau shows as the growth of S(0)). It stops when
|G(x) - x| < tol relative to G(x) in every block.

Declared regulariser H (model HAS_REG). The theta-side above is linear in theta; with
h = lam theta + grad H it is replaced by Monte Carlo theta-paths on the same lag kernels
(:class:`dmftgen.dmft.stationary_theta_mc.LagThetaMC`):

    theta_{k+1} = theta_k - dt (grad H(theta_k) + lam theta_k) - dt sum_{n=0}^{W} K(n) theta_{k-n}
                  - dt nu theta* + dU_k,       dU stationary Gaussian of lag covariance S,

whose averages give C_theta(u), M = <theta theta*^T> and R(n) = <d theta_{k+n} / d dU_k> (forward
tangents with grad^2 H along the path). M is then an output of the theta-side and nu its input,
so the fourth block of the iterate x is nu, updated by Stein's identity with the theta-paths' M,

    nu <- (E[ell r*^T] - Khat M) rho^{-1},

and the r-side input w = M rho^{-1} r* + w~ takes the lag covariance C_theta(u) - M rho^{-1} M^T of
the paths (static part from the lags W < u <= 2W, as S_inf). Everything else (the r-side, Anderson
mixing, the residual, the window and iteration errors) is shared. The theta-paths have their own
common random numbers (per replica, so the between-replica errors include their Monte Carlo
error), and the fresh final pass runs fresh theta-paths too: Q, M and the theta-row samples are
reported from those (out of sample, like the train-side averages). For a quadratic H this
reproduces the ridge route within errors (tests/test_stationary.py). This route also runs at
tau = 0 (sq = 0: the paths settle to the regularised ERM, every kernel static), which a declared H
needs because the static fixed point (dmftgen.dmft.stationary_static) assumes a Gaussian theta row.

Reported averages. The kernels are fitted to the iteration's own paths, so averages over those
paths are optimistic (e.g. the train loss of logistic ~2 % low at P = 2000); the train loss,
metrics, Gamma, E[r ell^T] and E[ell ell^T] are therefore taken in one more pass at the final
kernels on fresh random numbers. Q and M come from the theta-side at the iteration's kernels
(with H: fresh theta-paths at those kernels); with ``cross_fit`` from the theta-side at the
kernels G(x) that the fresh pass estimates, which removes any transfer of the kernels' fitting to
Q and M at the price of about twice the between-replica error on Q (three times with H): one
pass of fresh Monte Carlo error, not averaged by the fixed point. Measured at tau = 0.01
(logistic against the exact tau = 0 state, seeds 0 / 2 / 3): z(Q) = -1.76 / -1.20 / +2.32 from
the iteration's kernels (RMS 1.8, what Student's t_3 gives: no resolved bias), -0.52 / -1.23 /
-0.17 cross-fitted; hence off by default. ``Q_iter`` is the Q of the iteration's output kernels
(the iteration error uses it).

Tails beyond the window. sum_{n>W} R(n) and sum_{u>W} K(u) are continued geometrically from
the last blocks of the window (:func:`dmftgen.dmft.stationary_lag._geom_tail`): R_tail in the r-memory and in c_inf, the K
tail in Khat. The error this leaves is estimated, not assumed away: one extra pass at the final
state without the continuations (same random numbers) gives the change D of every observable,
and the continuation's relative error mu is measured inside the window
(:func:`dmftgen.dmft.stationary_lag._tail_misprediction`); dmftgen.dmft.stationary_state reports 2 mu |D| as the window error.

Validity: the fixed point is the t -> infinity limit of the time-dependent discrete solve at the
same dt if that limit exists and is unique (a stable model) and ``window`` spans the decay of R
and S; compare with :func:`dmftgen.dmft.solve` at large T (tests/test_stationary.py, slow).
[Derived here from docs/theory.md §2 by time-translation invariance; not from the paper.]
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..errors import SettingsError, UnsupportedModelError
from ..observables import _sqrt_psd
from ..threads import solver_threads
from .stationary_lag import (StationaryGaussian, _R_tail, _det_cv_mean, _fft_len, _geom_tail, _lag_covariance,
                             _tail_misprediction, _theta_side)
from .stationary_theta_mc import LagThetaMC


def _kernel(kern):
    """The generated stationary path kernel (template dmftgen/codegen/templates/stationary.py)."""
    if not hasattr(kern, "dmft_stationary_paths"):
        raise UnsupportedModelError(f"{kern.__name__} has no stationary kernel; run: python -m dmftgen generate")
    return kern.dmft_stationary_paths


def init_from_result(res, W):
    """Initial lag kernels from the last row of a time-dependent solve at the same dt.

    K(u) = K_ell[n, n-u], S(u) = S_U[n-1, n-1-u], S_inf = mean of S_U over lags W < u <= 2W
    (or S(W) if the run is shorter), M = M[n].
    """
    Kl = np.asarray(res["K_ell"])
    SU = np.asarray(res["S_U"])
    n = Kl.shape[0] - 1
    ns = SU.shape[0] - 1
    m = Kl.shape[2]
    K = np.zeros((W + 1, m, m))
    S = np.zeros((W + 1, m, m))
    uk = min(W, n)
    K[: uk + 1] = Kl[n, n - np.arange(uk + 1)]
    us = min(W, ns)
    S[: us + 1] = SU[ns, ns - np.arange(us + 1)]
    if ns > 2 * W:
        S_inf = SU[ns, ns - np.arange(W + 1, 2 * W + 1)].mean(0)
    else:
        S_inf = S[us].copy()
    S[us + 1:] = S_inf
    S_inf = 0.5 * (S_inf + S_inf.T)
    return {"K": K, "S": S, "S_inf": S_inf, "M": np.asarray(res["M"])[n]}


def init_from_static(st, lag, tau, delta, dt, W):
    """Initial lag kernels from the tau = 0 stationary state (stationary_static): K, R from the
    frequency-domain solve, S(u) = E[ell ell^T] dt^2 / delta (static) plus the white part
    tau E[ell ell^T] dt at u = 0."""
    K = np.zeros((W + 1,) + st["Q"].shape)
    n = min(W + 1, lag.shape[0])
    K[:n] = lag[:n]
    Ell = st["E_ell_ell"]
    S_inf = Ell * dt * dt / delta
    S = np.broadcast_to(S_inf, K.shape).copy()
    S[0] += tau * Ell * dt
    return {"K": K, "S": S, "S_inf": S_inf, "M": st["M"]}


@solver_threads  # dynamic schedule, BLAS on one thread (dmftgen/threads.py)
def solve_stationary(model, settings, *, paths: int = 4000, window: float = 30.0, burn: float | None = None,
                     samples: float | None = None, targets: int = 4, damping: float = 0.0, max_iter: int = 100,
                     tol: float = 1e-4, groups: int = 10, init="auto", init_time: float | None = None,
                     replica: int = 0, anderson: int = 4, window_check: bool = True,
                     theta_paths: int | None = None, cross_fit: bool = False):
    """Stationary state of the discrete DMFT at step ``settings.dt`` and tau > 0 (module docstring).

    Parameters
    ----------
    model, settings :
        Any student width m <= 3 and teacher width k; h = lam theta, or with a declared
        regulariser H the Monte Carlo theta-side (module docstring); ``settings.tau`` > 0 (>= 0
        with a declared H), and a model with a stationary state (e.g. ridge lam > 0; ridge-less
        regression with delta > 1). ``settings.T`` is not used.
    paths : int
        Monte Carlo r-paths (common random numbers across iterations).
    window : float
        Memory truncation in time units (W = window / dt lags).
    burn, samples : float, optional
        Burn-in and averaging lengths in time units (default 2 window and 2 window).
    targets : int
        Target times per path for the adjoint responses K(u).
    damping, max_iter, tol :
        x <- x + (1 - damping) (G(x) - x), accelerated by Anderson mixing (``anderson`` previous
        steps); stop when G(x) - x < tol relative to G(x) in every block (K, S, S_inf, M; for M
        this is chi (lam M + E[ell r*^T]), the stationarity of M).
    init : "auto" | dict | Result
        Initial lag kernels: "auto" runs a causal :func:`dmftgen.dmft.solve` at the same dt up to
        ``init_time`` (default ``window``) and takes its last row (:func:`init_from_result`); a
        Result of ``solve`` does the same; a dict {K, S, S_inf, M} (e.g. the converged kernels of
        another replica, or :func:`init_from_static`).
    replica : int
        Index of an independent replica: its own random numbers (SeedSequence([seed, 7, replica])).
    theta_paths : int, optional
        With a declared H: the number of theta-paths (default ``paths``), each with ``targets``
        tangent sources.
    cross_fit : bool
        Q and M from the theta-side at the kernels G(x) of the fresh pass instead of the
        iteration's own (module docstring, "Reported averages").

    Returns
    -------
    dict
        train_loss, train_<metric> (floats), Q, M, Gamma, E_r_ell, E_ell_ell (m x m / m x k), the
        lag kernels K, R, S (W+1, m, m), S_inf, C_theta (3W+1, m, m), residuals, iterations,
        converged, status ("ok", "not-converged", "no-stationary-state"), time_s, and the
        converged kernels as ``state`` (an ``init`` for another replica). With a declared H also
        nu, chi = dt sum_n R(n) and theta_rows / theta_star_rows (the last step of the fresh
        theta-paths: samples of the law of a theta row).
    """
    from ..codegen import load_kernels

    kern = load_kernels(model)
    m, kk = int(kern.M), int(kern.K)
    tau, lam, delta, dt = settings.tau, settings.lam, settings.delta, settings.dt
    reg = bool(getattr(kern, "HAS_REG", False))
    if tau < 0 or (tau == 0 and not reg):
        # tau = 0 with h = lam theta is the static fixed point, exact and cheaper; with a declared H
        # the lag route runs at tau = 0 too (paths without noise settle to the regularised ERM)
        raise SettingsError(f"solve_stationary needs tau > 0 (got tau = {tau}); tau = 0 is the static "
                            "fixed point (dmftgen.dmft.stationary_static).")
    W = max(2, int(round(window / dt)))
    B = int(round((burn if burn is not None else 2 * window) / dt))
    Sn = int(round((samples if samples is not None else 2 * window) / dt))
    if B < 2 * W:
        raise SettingsError(f"solve_stationary: burn = {B * dt:g} must be >= 2 window = {2 * W * dt:g}.")
    L = B + Sn
    P, G = int(paths), int(groups)
    if P < 2 * G:
        raise SettingsError(f"solve_stationary: paths = {P} too few for {G} groups.")
    t_start = time.perf_counter()
    p = model.param_vector(settings.params)
    rho_std = model.teacher_std_value(p)
    rho = rho_std ** 2 * np.eye(kk)
    rho_inv = np.linalg.inv(rho) if kk else np.zeros((0, 0))
    # a declared regulariser H: the theta-side by Monte Carlo theta-paths (stationary_theta_mc);
    # the fourth block of the iterate x is then the teacher drift nu instead of M (M is an output
    # of the theta-paths, nu their input), else the linear theta-side (stationary_lag._theta_side)
    mc = None
    if reg:
        mc = LagThetaMC(kern, p, m, kk, lam, dt, W, B, L, theta_paths if theta_paths else P, int(groups),
                        rho_std, max(1, int(targets)))

    def draws(key):
        """The random numbers of one set of P paths: teacher, label noise, Brownian increments,
        the stationary Gaussian's normals and the static offsets; with H, those of the theta-paths."""
        seeds = np.random.SeedSequence(key).spawn(4 if mc else 3)
        r_s, r_g, r_b = (np.random.default_rng(c) for c in seeds[:3])
        s = np.ascontiguousarray(rho_std * r_s.standard_normal((P, kk)))
        zz = np.empty((P, int(kern.NZ)))
        for j, law in enumerate(model.noise.values()):
            zz[:, j] = law.sample(r_s, P)
        dB = np.ascontiguousarray(math.sqrt(dt) * r_b.standard_normal((P, L)))
        gauss = StationaryGaussian(r_g, P, L, m)
        th_rnd = mc.draws(np.random.default_rng(seeds[3])) if mc else None
        return s, np.ascontiguousarray(zz), dB, gauss, r_g.standard_normal((P, m)), th_rnd

    # the iteration's paths (common random numbers across passes) and, for the reported averages,
    # a fresh set: the converged kernels are fitted to the iteration's own paths, whose averages
    # are then optimistic (train loss ~2 % low for logistic at P = 2000: docs/longtime.md)
    own = draws([settings.seed, 7, int(replica)])
    tg = np.linspace(B, L - 1, max(1, int(targets))).round().astype(np.int64)
    bounds = np.linspace(0, P, G + 1).round().astype(np.int64)
    sq = math.sqrt(tau * delta)
    inv_delta = 1.0 / delta
    run = _kernel(kern)
    NMET = int(kern.NMET)

    if isinstance(init, str) and init == "auto":
        from .solver import solve

        pre = solve(model, settings.replace(T=max(init_time if init_time else window, 2 * dt)),
                    paths=min(P, 8000), groups=G)
        if not pre.ok:
            return _no_state(f"the causal solve used as a start {pre.status}: {pre.message}", t_start)
        init = init_from_result(pre, W)
    elif hasattr(init, "keys") and "K_ell" in init:
        init = init_from_result(init, W)
    K = np.array(init["K"], float)
    S = np.array(init["S"], float)
    S_inf = np.array(init["S_inf"], float)
    M = np.array(init["M"], float).reshape(m, kk)
    if K.shape[0] != W + 1:  # another window: pad / cut
        K2, S2 = np.zeros((W + 1, m, m)), np.broadcast_to(S_inf, (W + 1, m, m)).copy()
        n_ = min(W + 1, K.shape[0])
        K2[:n_], S2[:n_] = K[:n_], S[:n_]
        K, S = K2, S2
    eye = np.eye(m)
    residuals = []
    converged = False
    out = None
    sizes = np.diff(bounds).astype(float)
    nS, nT = sizes * Sn, sizes * tg.size
    dL = np.zeros((P, L, m))
    nfft = _fft_len(L)
    blocks = [(W + 1, m, m), (W + 1, m, m), (m, m), (m, kk)]
    if mc is not None:
        nu0 = init.get("nu") if hasattr(init, "get") else None
        x = _pack(K, S, S_inf, np.array(nu0, float).reshape(m, kk) if nu0 is not None else mc.nu_from_M(M, K, lam))
    else:
        x = _pack(K, S, S_inf, M)
    pairs, last_pt = [], None
    sec = init.get("secants") if hasattr(init, "get") else None
    if sec is not None and anderson > 0 and sec[0].shape[0] == x.size:
        pairs = [(sec[0][:, j], sec[1][:, j]) for j in range(sec[0].shape[1])][-anderson:]
    x_prev = None
    steps = []
    scale = None
    obs_hist = []
    nTot = nS.sum()

    theta_out = {}  # with H: the last theta-side pass per (own random numbers, tails)

    def evaluate(x, tails=True, rnd=None):
        """One pass of the map x -> G(x) on the common random numbers (or on ``rnd``, another
        set of draws): (G parts, observables) or a message (str) when the paths or kernels are not
        finite. ``tails=False`` drops the geometric continuations beyond the window (the
        window-error estimate)."""
        s, zz, dB, gauss, xi_static, th_rnd = own if rnd is None else rnd
        K, S, S_inf, x4 = _unpack(x, blocks)
        if mc is None:
            M = x4
            R, c, c_inf = _theta_side(K, S, S_inf, lam, dt, W, tails=tails)
            Q = (M @ rho_inv @ M.T if kk else 0.0) + c_inf + c[0]
        else:  # x4 is the teacher drift nu; M and Q are outputs of the theta-paths
            th = mc.run(K, S, S_inf, x4, th_rnd, tails=tails)
            if isinstance(th, str):
                return th
            R, c, c_inf, M, Q = th["R"], th["c"], th["c_inf"], th["M"], th["Q"]
        w = gauss.sample(c) + xi_static[:, None, :] @ _sqrt_psd(c_inf).T
        if kk:
            w = w + (s @ (M @ rho_inv).T)[:, None, :]
        w = np.ascontiguousarray(w)
        acc = {"gam": np.zeros((G, m, m)), "els": np.zeros((G, m, kk)), "loss": np.zeros(G),
               "rl": np.zeros((G, m, m)), "ll": np.zeros((G, m, m))}
        met = np.zeros((G, max(NMET, 1)))
        kl = np.zeros((G, W + 1, m, m))
        klcv = np.zeros((G, W + 1, m, m))
        bad = np.zeros(G, np.int64)
        gam_cv = np.ascontiguousarray(K[0])
        Rt = _R_tail(R) if tails else np.zeros((m, m))
        run(np.ascontiguousarray(R), np.ascontiguousarray(Rt), w, s, zz, dB, p, inv_delta, dt, sq, B,
            tg, gam_cv, bounds, acc["gam"], acc["els"], acc["loss"], acc["rl"], acc["ll"], met, dL, kl,
            klcv, bad)
        if bad.any():
            return "the r-paths blew up: no stationary state at these settings (unstable tau or step)"
        Zb = _det_cv_mean(R, gam_cv, inv_delta, dt)
        newK = (kl.sum(0) - klcv.sum(0)) / nT.sum() + Zb
        newK[0] = acc["gam"].sum(0) / nTot
        new_els = acc["els"].sum(0) / nTot
        lagcov = _lag_covariance(dL, B, 2 * W, nfft)
        newS = lagcov[: W + 1] / (nTot * delta)
        new_Sinf = lagcov[W + 1:].sum(0) / (nTot * W * delta)
        new_Sinf = 0.5 * (new_Sinf + new_Sinf.T)
        # M: lam M + E[ell r*^T] = 0 with E[ell r*^T] = nu rho + Khat M (Stein) gives
        # M = -(lam + Khat)^{-1} nu rho (gain chi instead of the 1/lam of M = -E[ell r*^T]/lam);
        # Khat = sum over all lags, the part beyond the window by geometric continuation
        Khat = newK.sum(0) + (_geom_tail(newK) if tails else 0.0)
        if mc is None:
            try:
                chi = np.linalg.inv(lam * eye + Khat)
            except np.linalg.LinAlgError:
                return "lam + sum_u K(u) is singular: no restoring force (interpolation)"
            M_new = -chi @ (new_els - Khat @ M)
        else:
            # with H: the teacher drift seen by the theta-paths, nu = (E[ell r*^T] - Khat M) rho^{-1}
            # (Stein, docs/theory.md §3) with the M of the theta-paths; the restoring force includes
            # grad^2 H, so lam + Khat may be singular (a loss of lower rank than m)
            M_new = (new_els - Khat @ M) @ rho_inv
        if not (np.isfinite(newK).all() and np.isfinite(newS).all() and np.isfinite(M_new).all()):
            return "non-finite kernels"
        obs = {"train_loss": float(acc["loss"].sum() / nTot), "M": M.copy(), "Q": Q,
               "Gamma": acc["gam"].sum(0) / nTot, "E_r_ell": acc["rl"].sum(0) / nTot,
               "E_ell_ell": acc["ll"].sum(0) / nTot}
        for j, name in enumerate(model.metrics):
            obs[f"train_{name}"] = float(met[:, j].sum() / nTot)
        if mc is not None:
            theta_out[(rnd is None, tails)] = th
        return (K, S, S_inf, x4), (newK, newS, new_Sinf, M_new, new_els, Khat), obs

    for it in range(max_iter):
        ev = evaluate(x)
        if isinstance(ev, str):
            return _no_state(f"{ev} (iteration {it})", t_start, residuals)
        (K, S, S_inf, M), (newK, newS, new_Sinf, M_new, new_els, Khat), obs = ev
        last_ev, last_x = ev, x.copy()
        s0 = float(np.trace(newS[0]))
        if it == 0:
            s0_first = max(s0, 1e-300)
        elif s0 > 1e6 * s0_first:
            return _no_state(f"the gradient noise grows without bound over the iterations (S(0) x "
                             f"{s0 / s0_first:.3g} after {it} passes): no stationary state (tau beyond "
                             "stability)", t_start, residuals)
        res = max(np.abs(newK - K).max() / max(np.abs(newK).max(), 1e-300),
                  # M_new - M = -chi (lam M + E[ell r*^T]): the stationarity of M in the units of M
                  # (with H: the change of the teacher drift nu, in its units)
                  np.abs(M_new - M).max() / max(np.abs(M_new).max(), 1e-300) if kk else 0.0,
                  np.abs(newS - S).max() / max(np.abs(newS).max(), 1e-300),
                  np.abs(new_Sinf - S_inf).max() / max(np.abs(newS).max(), 1e-300))
        residuals.append(float(res))
        obs_hist.append(obs)
        out = dict(obs=obs, M=obs["M"], x4=M_new, K=newK, els=new_els, S=newS, S_inf=new_Sinf, Khat=Khat)
        if res < tol:
            converged = True
            break
        # next input: Anderson mixing (type II, memory ``anderson``) of x -> G(x), plain
        # (damped) iteration when anderson = 0. The history is kept as secant pairs
        # (x_j - x_{j-1}, f_j - f_{j-1}); pairs of another replica's map (``init["secants"]``, the
        # same map up to Monte Carlo error) start it. A step that raised the residual restarts it.
        gx = _pack(newK, newS, new_Sinf, M_new)
        f = gx - x
        if scale is None:
            scale = np.concatenate([np.full(int(np.prod(sh)), 1.0 / max(np.abs(v).max(), 1e-300))
                                    for sh, v in zip(blocks, (newK, newS, new_Sinf, M_new if kk else np.ones(1)))])
        if len(residuals) > 1 and res > 1.5 * residuals[-2]:
            pairs, last_pt = [], None
        if anderson > 0 and len(residuals) > 10 and min(residuals[-8:]) > 0.5 * min(residuals[:-8]):
            # no progress over 8 passes: plain iteration from here (an unstable tau then shows as the
            # growth of S(0), a stable but slow one still converges)
            anderson, pairs, last_pt = 0, [], None
        if last_pt is not None:
            pairs.append((x - last_pt[0], f - last_pt[1]))
        last_pt = (x.copy(), f.copy())
        pairs = pairs[-anderson:] if anderson > 0 else []
        x_prev = x.copy()
        beta = 1.0 - damping
        x_plain = x + beta * f
        x = x_plain
        if pairs:
            dX = np.array([u for u, _ in pairs]).T
            dF = np.array([v for _, v in pairs]).T
            gamma = np.linalg.lstsq(dF * scale[:, None], f * scale, rcond=1e-10)[0]
            x = x_plain - (dX + beta * dF) @ gamma
            # an extrapolation to a non-physical state (negative noise variance: the affine noise
            # loop of an unstable tau has its only fixed point there) is refused: plain step instead,
            # so that the growth of S(0) shows the missing stationary state
            _, Sx, Sinfx, _ = _unpack(x, blocks)
            if np.trace(Sx[0]) <= 0 or np.linalg.eigvalsh(0.5 * (Sinfx + Sinfx.T)).min() < \
                    -1e-9 * max(np.abs(Sx[0]).max(), 1e-300):
                x = x_plain
                pairs, last_pt = [], None
        Kx, Sx, Sinfx, Mx = _unpack(x, blocks)
        x = _pack(Kx, Sx, 0.5 * (Sinfx + Sinfx.T), Mx)
        steps.append(_rel_change(x, x_prev, blocks))
    # the reported path averages: one pass at the final input on fresh paths (out of sample)
    fresh_rnd = draws([settings.seed, 7, int(replica), 1])
    fresh = evaluate(x if not converged else last_x, rnd=fresh_rnd)
    if isinstance(fresh, str):
        return _no_state(f"{fresh} (fresh paths)", t_start, residuals)
    out["obs_own"] = out["obs"]
    if mc is None:
        # Q of the linear theta-side at the output kernels G(x) and Q_in that of the input x: their
        # difference is the iteration's (stationary_state)
        R, c, c_inf = _theta_side(out["K"], out["S"], out["S_inf"], lam, dt, W)
        Mo = out["M"]
        Q_iter = (Mo @ rho_inv @ Mo.T if kk else 0.0) + c_inf + c[0]
        C_theta = (Mo @ rho_inv @ Mo.T if kk else 0.0) + c_inf + c
        Q_in = out["obs"]["Q"]
        Q, M_rep = Q_iter, Mo
        if cross_fit:
            # Q and M out of sample: the theta-side at the kernels G(x) of the fresh paths
            fK, fS, fSinf, fM = fresh[1][:4]
            _, fc, fc_inf = _theta_side(fK, fS, fSinf, lam, dt, W)
            M_rep = fM if kk else Mo
            Q = (M_rep @ rho_inv @ M_rep.T if kk else 0.0) + fc_inf + fc[0]
        out["obs"] = dict(fresh[2], Q=Q, M=M_rep)
        extra = {"Q_iter": Q_iter}
    else:
        # with H: Q, M and the theta-row samples from the fresh theta-paths (out of sample, like
        # the train-side averages), at the final kernels x or, with ``cross_fit``, at the kernels
        # G(x) of the fresh pass (its K, S, S_inf and nu update); R and C_theta from the
        # iteration's last pass
        th_own, th_new = theta_out[(True, True)], theta_out[(False, True)]
        if cross_fit:
            th_new = mc.run(*fresh[1][:4], fresh_rnd[5])
            if isinstance(th_new, str):
                return _no_state(f"{th_new} (fresh paths)", t_start, residuals)
        R, c_inf, C_theta = th_own["R"], th_own["c_inf"], th_own["C_theta"]
        Mo, Q = th_new["M"], th_new["Q"]
        out["obs"] = dict(fresh[2], Q=Q, M=Mo)
        Q_in = Q
        extra = {"nu": out["x4"], "chi": dt * (R.sum(0) + _geom_tail(R)),
                 "theta_rows": th_new["theta_rows"], "theta_star_rows": th_new["theta_star_rows"]}
    obs = out["obs"]
    result = {"Q": Q, "M": obs["M"], "rho": rho, "E_ell_s": out["els"]}
    result.update(extra)
    result.update({k: v for k, v in obs.items() if k not in ("Q", "M")})
    # iteration error (see stationary_state): the input x_k of the last pass is off the fixed point
    # by about |G(x_k) - x_k| / (1 - g); the caller turns this into observable errors with the
    # sensitivities seen along the iteration (obs_hist, steps: |x_j - x_{j-1}| in the same metric)
    # window truncation (module docstring): the tail masses beyond the window of R (sum R = chi/dt)
    # and K (lam + Khat = chi^{-1}), and, with ``window_check``, the effect of the geometric tail
    # continuations on every observable: one more pass at the final input without them, on the
    # same random numbers. The continuation leaves an error below its own size, and the fixed
    # point amplifies a one-pass change by 1 / (1 - g) <= 2: window error = 2 |without - with|.
    Rt = _geom_tail(R)
    eps_R = float(np.linalg.norm(Rt) / max(np.linalg.norm(R.sum(0) + Rt), 1e-300))
    Kt = _geom_tail(out["K"])
    eps_K = float(np.linalg.norm(Kt) / max(np.linalg.norm(lam * eye + out["Khat"]), 1e-300))
    window_delta = None
    if window_check:
        ev0 = last_ev if converged else evaluate(x, tails=True)
        ev1 = evaluate(x, tails=False)
        if not isinstance(ev0, str) and not isinstance(ev1, str):
            window_delta = {key: np.asarray(ev1[2][key], float) - np.asarray(ev0[2][key], float)
                            for key in ev0[2]}
            if mc is None:  # the M of the output kernels (with H, obs["M"] is already the output)
                window_delta["M"] = ev1[1][3] - ev0[1][3]
    result.update({"K": out["K"], "K_tail": Kt, "R": R, "S": out["S"], "S_inf": out["S_inf"],
                   "C_theta": C_theta, "c_inf": c_inf,
                   "lags": dt * np.arange(W + 1), "residuals": residuals, "iterations": len(residuals),
                   "converged": converged, "status": "ok" if converged else "not-converged",
                   "time_s": time.perf_counter() - t_start, "obs_hist": obs_hist, "steps": steps,
                   "Q_in": Q_in,
                   "window_tail": {"R": eps_R, "K": eps_K, "mispredict_R": _tail_misprediction(R),
                                   "mispredict_K": _tail_misprediction(out["K"])},
                   "window_delta": window_delta,
                   "window": W * dt, "burn": B * dt, "samples": Sn * dt, "paths": P, "dt": dt,
                   "state": dict({"K": out["K"], "S": out["S"], "S_inf": out["S_inf"], "M": Mo},
                                 **({"nu": out["x4"]} if mc is not None else {})),
                   "secants": (np.array([u for u, _ in pairs]).T, np.array([v for _, v in pairs]).T)
                   if pairs else None})
    return result


def _rel_change(a, b, blocks):
    """max over the blocks (K, S, S_inf, M) of |a - b|_max / |a|_max: the residual's metric."""
    out = 0.0
    for u, v in zip(_unpack(a, blocks), _unpack(b, blocks)):
        if u.size:
            out = max(out, float(np.abs(u - v).max() / max(np.abs(u).max(), 1e-300)))
    return out


def _pack(K, S, S_inf, M):
    return np.concatenate([np.ravel(K), np.ravel(S), np.ravel(S_inf), np.ravel(M)])


def _unpack(x, blocks):
    out, i = [], 0
    for sh in blocks:
        n = int(np.prod(sh))
        out.append(x[i:i + n].reshape(sh).copy())
        i += n
    return out


def _no_state(message, t_start, residuals=()):
    return {"status": "no-stationary-state", "message": message, "residuals": list(residuals),
            "iterations": len(residuals), "converged": False, "time_s": time.perf_counter() - t_start}
