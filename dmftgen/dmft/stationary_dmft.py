"""Direct stationary solve of the discrete-time DMFT on lag kernels (tau > 0, ridge lam > 0).

For a GLM (student width m = 1, teacher width k = 1, h = lam theta) whose SGF has a stationary
state, the discrete scheme of docs/theory.md §2 at step dt becomes time-translation invariant at long
times: K_ell[k, l] = K(k - l) (K(0) = Gamma), R_theta[k, l] = R(k - l),
S_U[k, l] = S(|k - l|), M and nu constant. This module solves for those lag kernels directly by a
damped fixed point, with the memory truncated at ``window`` lags (K(u) = S(u) = R(u) = 0 beyond).

theta-side (deterministic, given K, S and E[ell r*]):

    R(0) = 0, R(1) = 1,  R(n+1) = (1 - lam dt) R(n) - dt sum_{j=1}^{n} K(n - j) R(j),
    M = -E[ell r*] / lam                       (stationary M_{k+1} = M_k - dt (lam M_k + E[ell_k r*]))
    c(u) = sum_{a, b >= 1} R(a) R(b) S(|u - a + b|)     (fluctuation of theta about (M/rho) theta*)
    C_theta(u) = M^2 / rho + c(u),   Q = C_theta(0).

r-side (Monte Carlo, P paths of L = burn + samples steps, common random numbers across
iterations): w_k = (M / rho) r* + w~_k with w~ the stationary Gaussian of covariance c (circulant
embedding, FFT), and

    r_k = w_k - (1/delta) sum_{n=1}^{min(k, W)} R(n) dL_{k-n},   dL_k = ell(r_k) (dt + sqrt(tau delta) dB_k).

After ``burn`` steps (>= 2 W) the averages over the remaining steps give Gamma, E[ell r*],
S(u) = (1/delta) <dL_k dL_{k-u}>, and K(u) = <Z_u> from the adjoint recursion of the template
(dmftgen/codegen/templates/dmft.py) started at a few target times per path,

    Z_0 = ell'(r_k),  Z_v = -(1/delta) (sum_{v'<v} Z_{v'} R(v - v')) a_{k-v},  a_l = ell'(r_l)(dt + sq dB_l),

with the same control variate (ell' -> Gamma in Z, own dB kept, its mean by the deterministic
recursion). Observables: train loss <Loss(r_k)>, metrics, test loss from (Q, M) by
dmftgen.observables, E[r ell], E[ell^2].

Validity: the fixed point is the t -> infinity limit of the time-dependent discrete solve at the
same dt if that limit exists and is unique (a stable model) and ``window`` spans the decay of R
and S; compare with :func:`dmftgen.dmft.solve_long` (tests/test_longtime.py). Richardson in dt
works as for the time-dependent solve (``solve_stationary(..., dt)`` and ``dt/2``).
[Derived here from docs/theory.md §2 by time-translation invariance; not from the paper.]
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..errors import SettingsError, UnsupportedModelError

def _kernel(kern):
    """The generated stationary path kernel (template dmftgen/codegen/templates/stationary.py)."""
    if not hasattr(kern, "dmft_stationary_paths"):
        raise UnsupportedModelError(f"{kern.__name__} has no stationary kernel; run: python -m dmftgen generate")
    return kern.dmft_stationary_paths


def _R_tail(R):
    """sum_{n > W} R(n) by geometric extrapolation of the last two lags (0 if not decaying)."""
    q = R[-1] / R[-2] if R[-2] != 0 else 0.0
    return float(R[-1] * q / (1.0 - q)) if 0.0 < q < 1.0 else 0.0


def _theta_side(K, M, S, lam, dt, rho, W, S_inf=0.0):
    """R(0..W), M, fluctuation covariance c(u) (u = 0..3W; plus the static part c_inf).

    S(u) = S~(u) + S_inf with S~ = 0 beyond the window: the static part S_inf (per-sample
    persistent gradients: r*, z and the static part of w are frozen per path) gives every theta
    coordinate a static offset of variance c_inf = S_inf (sum_n R(n))^2.
    """
    R = np.zeros(W + 1)
    if W >= 1:
        R[1] = 1.0
    for n in range(1, W):
        R[n + 1] = (1 - lam * dt) * R[n] - dt * np.dot(K[n - 1::-1][:n], R[1:n + 1])
    S = S - S_inf
    R_tot = R.sum() + _R_tail(R)
    c_inf = S_inf * R_tot ** 2
    # c(u) = sum_{a,b} R(a) R(b) S(|u - a + b|): autocorrelation of R convolved with S (FFT)
    nfft = 1 << int(np.ceil(np.log2(8 * (W + 1))))
    Rf = np.fft.rfft(R, nfft)
    Sfull = np.zeros(nfft)
    Sfull[: W + 1] = S
    Sfull[nfft - W:] = S[1:][::-1]
    spec = np.abs(Rf) ** 2 * np.fft.rfft(Sfull).real
    c = np.fft.irfft(spec, nfft)[: 3 * W + 1]
    return R, M, c, c_inf


def _det_cv_mean(R, gam, inv_delta, dt):
    W = R.shape[0] - 1
    Zb = np.zeros(W + 1)
    Zb[0] = gam
    for v in range(1, W + 1):
        Zb[v] = -inv_delta * np.dot(Zb[:v], R[v:0:-1]) * gam * dt
    return Zb


def init_from_result(res, W):
    """Initial lag kernels from the last row of a time-dependent solve at the same dt.

    K(u) = K_ell[n, n-u], S(u) = S_U[n-1, n-1-u], S_inf = mean of S_U over lags W < u <= 2W
    (or S(W) if the run is shorter), E[ell r*] = nu rho + sum_l K_ell[n, l] M_l (Stein identity).
    """
    Kl = np.asarray(res["K_ell"])[..., 0, 0]
    SU = np.asarray(res["S_U"])[..., 0, 0]
    n = Kl.shape[0] - 1
    ns = SU.shape[0] - 1
    K = np.zeros(W + 1)
    S = np.zeros(W + 1)
    uk = min(W, n)
    K[: uk + 1] = Kl[n, n - np.arange(uk + 1)]
    us = min(W, ns)
    S[: us + 1] = SU[ns, ns - np.arange(us + 1)]
    if ns > 2 * W:
        S_inf = float(SU[ns, ns - np.arange(W + 1, 2 * W + 1)].mean())
    else:
        S_inf = float(S[us])
    S[us + 1:] = S_inf
    rho = float(np.asarray(res["rho"]).ravel()[0])
    Mv = np.asarray(res["M"])[:, 0, 0]
    els = float(np.asarray(res["nu"])[n, 0, 0] * rho + Kl[n, : n + 1] @ Mv[: n + 1])
    return {"K": K, "S": S, "S_inf": S_inf, "els": els, "M": float(Mv[n])}


def solve_stationary(model, settings, *, paths: int = 4000, window: float = 30.0, burn: float | None = None,
                     samples: float | None = None, targets: int = 4, damping: float = 0.5, max_iter: int = 200,
                     tol: float = 1e-4, groups: int = 10, init="auto", init_time: float | None = None,
                     relax: float = 0.8):
    """Stationary state of the discrete DMFT at step ``settings.dt`` (module docstring).

    Parameters
    ----------
    model, settings :
        GLM with m = 1, k = 1, no declared regulariser; ``settings.tau`` > 0, and a model with a
        stationary state (e.g. ridge lam > 0; ridge-less regression with delta > 1).
        ``settings.T`` is not used.
    paths : int
        Monte Carlo r-paths (common random numbers across iterations).
    window : float
        Memory truncation in time units (W = window / dt lags).
    burn, samples : float, optional
        Burn-in and averaging lengths in time units (default 2 window and 2 window).
    targets : int
        Target times per path for the adjoint responses K(u).
    damping, max_iter, tol :
        new <- (1 - damping) new + damping old; stop when the kernels change by < tol (relative)
        and |lam M + E[ell r*]| < tol |E[ell r*]|.
    init : "auto" | None | dict | Result
        Initial lag kernels: "auto" (default) runs a causal :func:`dmftgen.dmft.solve` at the same
        dt up to ``init_time`` (default ``window``) and takes its last row
        (:func:`init_from_result`); a Result of ``solve`` does the same; None starts from
        Gamma = 0.25, no memory (can diverge: the fixed point is not a contraction far from the
        solution); a dict {K, S, S_inf, els, M}.
    relax : float
        Pseudo-time step of the M update M <- M - relax (lam M + E[ell r*]).

    Returns
    -------
    dict
        train_loss, test_loss, train_/test_<metric>, Q, M, Gamma, E_r_ell, E_ell_ell, nu (floats),
        *_err (batch means over path groups at the fixed point with the kernels held fixed, so
        the feedback of kernel errors is ignored -- like the time-dependent solver's errors these
        are ~1.5x too small; ``M_err`` = err(E[ell r*]) / lam and ``Q_err`` (group jackknife
        through M = -E[ell r*]/lam) are upper bounds, as the restoring slope dE[ell r*]/dM is
        left out), the lag kernels K, R, S, S_inf, C_theta (arrays over lags u dt), residuals,
        iterations, converged, time_s.
    """
    from ..codegen import load_kernels
    from ..observables import test_observables

    kern = load_kernels(model)
    if int(kern.M) != 1 or int(kern.K) != 1 or getattr(kern, "HAS_REG", False):
        raise UnsupportedModelError(
            f"solve_stationary supports m = 1 student, k = 1 teacher, h = lam theta; model "
            f"`{model.name}` has m = {kern.M}, k = {kern.K}{', a regulariser' if getattr(kern, 'HAS_REG', False) else ''}.")
    tau, lam, delta, dt = settings.tau, settings.lam, settings.delta, settings.dt
    if tau <= 0:
        raise SettingsError(f"solve_stationary needs tau > 0 (got tau = {tau}); for gradient flow use "
                            "dmftgen.dmft.solve or the closed forms.")
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
    rho = model.teacher_std_value(p) ** 2
    ss = np.random.SeedSequence([settings.seed, 7])
    r_s, r_g, r_b = (np.random.default_rng(c) for c in ss.spawn(3))
    s = np.ascontiguousarray(math.sqrt(rho) * r_s.standard_normal((P, 1)))
    zz = np.empty((P, int(kern.NZ)))
    for j, law in enumerate(model.noise.values()):
        zz[:, j] = law.sample(r_s, P)
    zz = np.ascontiguousarray(zz)
    dB = np.ascontiguousarray(math.sqrt(dt) * r_b.standard_normal((P, L)))
    nfft = 1 << int(np.ceil(np.log2(2 * L)))
    half = (P + 1) // 2
    Zn = (r_g.standard_normal((half, nfft)) + 1j * r_g.standard_normal((half, nfft)))
    tg = np.linspace(B, L - 1, max(1, int(targets))).round().astype(np.int64)
    bounds = np.linspace(0, P, G + 1).round().astype(np.int64)
    sq = math.sqrt(tau * delta)
    inv_delta = 1.0 / delta
    run = _kernel(kern)
    NMET = int(kern.NMET)

    # initial guess: linear response with Gamma = 0.25 (logistic slope at 0), no memory
    if isinstance(init, str) and init == "auto":
        # a short causal solve at the same dt gives kernels close to the stationary ones: the
        # fixed point then needs ~10-30 passes instead of diverging from a poor guess
        from .solver import solve

        pre = solve(model, settings.replace(T=max(init_time if init_time else window, 2 * dt)),
                    paths=min(P, 8000), groups=G)
        init = init_from_result(pre, W) if pre.ok else None
    if init is None:
        K = np.zeros(W + 1)
        K[0] = 0.25
        els = -0.1 * rho
        S = np.zeros(W + 1)
        S[0] = tau * 0.1 * dt
        S_inf = 0.0
    else:
        if hasattr(init, "keys") and "K_ell" in init:
            init = init_from_result(init, W)
        K, els, S = (np.array(init["K"], float), float(init["els"]), np.array(init["S"], float))
        S_inf = float(init.get("S_inf", 0.0))
    M = float(init["M"]) if init is not None and "M" in init else -els / lam
    xi_static = r_g.standard_normal((P, 1))
    residuals = []
    converged = False
    out = None
    for it in range(max_iter):
        R, M, c, c_inf = _theta_side(K, M, S, lam, dt, rho, W, S_inf)
        # stationary Gaussian fluctuation w~ with covariance c + c_inf (circulant embedding for
        # the decaying part, one static normal per path for c_inf)
        crc = np.zeros(nfft)
        m_ = min(c.size, nfft // 2)
        crc[:m_] = c[:m_]
        crc[nfft - m_ + 1:] = c[1:m_][::-1]
        lam_c = np.maximum(np.fft.fft(crc).real, 0.0)
        X = np.fft.fft(np.sqrt(lam_c / nfft) * Zn, axis=1)
        wt = np.concatenate([X.real, X.imag], axis=0)[:P, :L]
        w = np.ascontiguousarray(wt + (M / rho) * s + math.sqrt(max(c_inf, 0.0)) * xi_static)
        acc = {k: np.zeros(G) for k in ("gam", "els", "loss", "rl", "ll")}
        met = np.zeros((G, max(NMET, 1)))
        su = np.zeros((G, W + 1))
        sfar = np.zeros(G)
        kl = np.zeros((G, W + 1))
        klcv = np.zeros((G, W + 1))
        bad = np.zeros(G, np.int64)
        gam_cv = float(K[0])
        run(R, _R_tail(R), w, s, zz, dB, p, inv_delta, dt, sq, B, tg, gam_cv, bounds,
            acc["gam"], acc["els"], acc["loss"], acc["rl"], acc["ll"], met, su, sfar, kl, klcv, bad)
        if bad.any():
            raise SettingsError(f"solve_stationary: the r-paths blew up at iteration {it} (no stationary "
                                "state for these settings, or too little damping).")
        sizes = np.diff(bounds).astype(float)
        nS = sizes * Sn
        nT = sizes * tg.size
        Zb = _det_cv_mean(R, gam_cv, inv_delta, dt)
        newK = (kl.sum(0) - klcv.sum(0)) / nT.sum() + Zb
        newK[0] = acc["gam"].sum() / nS.sum()
        new_els = acc["els"].sum() / nS.sum()
        newS = su.sum(0) / (nS.sum() * delta)
        new_Sinf = sfar.sum() / (nS.sum() * W * delta)
        res = max(np.abs(newK - K).max() / max(np.abs(newK).max(), 1e-300),
                  abs(lam * M + new_els) / max(abs(new_els), 1e-300),
                  np.abs(newS - S).max() / max(np.abs(newS).max(), 1e-300))
        residuals.append(float(res))
        out = dict(acc=acc, met=met, su=su, sfar=sfar, S_inf=new_Sinf, sizes=nS, R=R, M=M, c=c, K=newK,
                   els=new_els, S=newS, kl=kl, klcv=klcv, nT=nT, Zb=Zb)
        a = damping if it > 0 else 0.0
        K = (1 - a) * newK + a * K
        # M: the stationary condition lam M + E[ell r*] = 0 has a large gain (1/lam) as a fixed
        # point M = -E[ell r*]/lam; relax it in pseudo-time like the dynamics itself does,
        # M <- M - eta (lam M + E[ell r*]) (stable for eta (lam + dE/dM) < 2)
        M = M - relax * (lam * M + new_els)
        els = new_els
        S = (1 - a) * newS + a * S
        S_inf = (1 - a) * new_Sinf + a * S_inf
        if res < tol:
            converged = True
            break
    # observables at the last pass (kernels = that pass's inputs, equal to the fixed point up to tol)
    acc, nS = out["acc"], out["sizes"]
    G_ = nS.size

    def bm(x):
        per = x / nS
        return float(x.sum() / nS.sum()), float(per.std(ddof=1) / math.sqrt(G_))

    M = out["M"]
    R, _, c, c_inf = _theta_side(out["K"], M, out["S"], lam, dt, rho, W, out["S_inf"])
    Q = M * M / rho + c_inf + c[0]
    result = {"Q": Q, "M": M, "nu": (out["els"] - out["K"].sum() * M) / rho}
    result["train_loss"], result["train_loss_err"] = bm(acc["loss"])
    result["Gamma"], result["Gamma_err"] = bm(acc["gam"])
    result["E_r_ell"], result["E_r_ell_err"] = bm(acc["rl"])
    result["E_ell_ell"], result["E_ell_ell_err"] = bm(acc["ll"])
    els_v, els_e = bm(acc["els"])
    result["M_err"] = els_e / lam if lam > 0 else float("nan")
    # Q error: group jackknife of c(0) through the theta-side map
    reps = []
    for g in range(G_):
        keep = np.ones(G_, bool)
        keep[g] = False
        Kg = (out["kl"][keep].sum(0) - out["klcv"][keep].sum(0)) / out["nT"][keep].sum() + out["Zb"]
        Kg[0] = acc["gam"][keep].sum() / nS[keep].sum()
        Sg = out["su"][keep].sum(0) / (nS[keep].sum() * delta)
        eg = acc["els"][keep].sum() / nS[keep].sum()
        Sig = out["sfar"][keep].sum() / (nS[keep].sum() * W * delta)
        Mg = -eg / lam if lam > 0 else M
        Rg, Mg, cg, cig = _theta_side(Kg, Mg, Sg, lam, dt, rho, W, Sig)
        reps.append((Mg * Mg / rho + cig + cg[0], Mg))
    reps = np.array(reps)
    jk = math.sqrt((G_ - 1) / G_)
    result["Q_err"] = float(jk * np.sqrt(((reps[:, 0] - reps[:, 0].mean()) ** 2).sum()))
    for j, name in enumerate(model.metrics):
        result[f"train_{name}"], result[f"train_{name}_err"] = bm(out["met"][:, j])
    tst = test_observables(kern, model, np.array([[[Q]]]), np.array([[[M]]]), np.array([[rho]]), p)
    for key, v in tst.items():
        if key != "test_loss_mc":
            result[key] = float(v[0])
    result.update({"K": out["K"], "R": R, "S": out["S"], "S_inf": out["S_inf"], "C_theta": M * M / rho + c_inf + c,
                   "lags": dt * np.arange(W + 1), "residuals": residuals, "iterations": len(residuals),
                   "converged": converged, "time_s": time.perf_counter() - t_start,
                   "window": W * dt, "burn": B * dt, "samples": Sn * dt, "paths": P, "dt": dt})
    return result
