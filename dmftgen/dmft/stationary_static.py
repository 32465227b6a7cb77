"""Stationary state of the DMFT at tau = 0 (gradient flow/descent): a static fixed point = the ERM.

At tau = 0 with a stationary state (ridge lam > 0, or a model that does not interpolate), every
one-time quantity of the discrete DMFT (math.md 5.3) becomes constant: r_k = r, w_k = w,
dL_k = ell(r) dt, S_U[k, l] = (1/delta) E[ell ell^T] dt^2. Summing the lag kernels over all lags
(chi = dt sum_{n >= 1} R(n), Khat = sum_{u >= 0} K(u)) the theta-side recursion
R(n+1) = (1 - lam dt) R(n) - dt sum_j K(n - j) R(j), R(1) = I telescopes to
chi = (lam I + Khat)^{-1} at every dt (gradient descent and gradient flow share their fixed
point), and the equations close in m x m matrices [derived here from math.md 2.7 and 5.3]:

    r-side:   r + (1/delta) chi ell(r; r*, z) = w,      (w, r*) ~ N(0, [[Q, M], [M^T, rho]])
              i.e. r = prox of L in the metric delta chi^{-1},
    response: Khat = E[ J (I + chi J / delta)^{-1} ],   J = grad_r ell(r),
    teacher:  nu rho = E[ell r*^T] - Khat M             (Stein, exact also for label jumps),
    theta:    chi = (lam I + Khat)^{-1},  M = -chi nu rho   (<=> lam M + E[ell r*^T] = 0),
              Q = M rho^{-1} M^T + (1/delta) chi E[ell ell^T] chi^T,
              theta row = M rho^{-1} theta* + chi u,  u ~ N(0, E[ell ell^T] / delta).

These are the replica-symmetric / CGMT equations of ridge-regularised empirical-risk
minimisation (for a convex loss the stationary state *is* the ERM; tests/test_stationary.py
checks it against direct minimisation with scipy at d = 2000-4000).

The lag kernels are found in the frequency domain: with the J-samples of the fixed point frozen
(the r-process is static), the linear response closes per frequency zeta = e^{-i omega}:

    Khat(zeta) = E[ J (I + (dt/delta) Rhat(zeta) J)^{-1} ],
    Rhat(zeta) = zeta [ (1 - zeta (1 - lam dt)) I + zeta dt Khat(zeta) ]^{-1},

solved by a damped fixed point at every frequency and inverted by FFT into K(u), R(n);
Rhat(1) = chi / dt is the static solution. The relaxation time is the decay time of R.

Expectations are Monte Carlo averages over ``samples`` draws of (xi, r*, z) held fixed across
iterations (common random numbers), so the map is deterministic and the iteration converges to
tolerance; independent replicas (different draws) give the error bars.
"""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedModelError
from ..observables import _sqrt_psd as _sqrtm_psd


class _Samples:
    """Fixed draws (xi, r*, z) of one replica and the kernel calls on them."""

    def __init__(self, kern, model, p, n, seed, rho_std, replica=0):
        m, k = int(kern.M), int(kern.K)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 13, int(replica)]))
        self.kern, self.p, self.m, self.k = kern, p, m, k
        self.xi = rng.standard_normal((n, m))
        self.s = np.ascontiguousarray(rho_std * rng.standard_normal((n, k)))
        z = np.empty((n, int(kern.NZ)))
        for j, law in enumerate(model.noise.values()):
            z[:, j] = law.sample(rng, n)
        self.z = np.ascontiguousarray(z)
        self.n = n
        self.g = np.empty((n, m))
        self.J = np.empty((n, m, m))

    def ell_jac(self, r):
        r = np.ascontiguousarray(r)
        self.kern.ell_batch(r, self.s, self.z, self.p, self.g)
        self.kern.jac_ell_batch(r, self.s, self.z, self.p, self.J)
        return self.g, self.J


def _prox(S, w, chi, delta, r0, iters=60, tol=1e-12):
    """Solve r + chi ell(r) / delta = w for every sample (damped Newton, warm start r0)."""
    m = S.m
    eye = np.eye(m)
    r = r0.copy()
    g, J = S.ell_jac(r)
    F = r - w + g @ chi.T / delta
    nf = np.einsum("ij,ij->i", F, F)
    for _ in range(iters):
        A = eye + np.einsum("ab,nbc->nac", chi, J) / delta
        try:
            step = np.linalg.solve(A, F[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = F
        bad = ~np.isfinite(step).all(1)
        step[bad] = F[bad]
        t = np.ones(S.n)
        for _ in range(12):  # backtracking per sample on |F|^2
            rn = r - t[:, None] * step
            g, J = S.ell_jac(rn)
            Fn = rn - w + g @ chi.T / delta
            nfn = np.einsum("ij,ij->i", Fn, Fn)
            worse = ~(nfn <= nf) & (t > 1e-3)
            if not worse.any():
                break
            t[worse] *= 0.5
        r, F, nf = rn, Fn, nfn
        if nf.max() < tol:
            break
    return r, g, J, float(np.sqrt(nf.max()))


def static_fixed_point(kern, model, settings, p, *, samples=40000, seed=0, damping=0.3, max_iter=500,
                       tol=1e-9, chi_max=1e6, init=None, replica=0):
    """One replica of the tau = 0 fixed point (module docstring). Returns a dict of m x m arrays."""
    m, k = int(kern.M), int(kern.K)
    lam, delta = settings.lam, settings.delta
    rho_std = model.teacher_std_value(p)
    rho = rho_std ** 2 * np.eye(k)
    rho_inv = np.linalg.inv(rho) if k else np.zeros((0, 0))
    S = _Samples(kern, model, p, int(samples), seed, rho_std, replica)
    eye = np.eye(m)
    if init is None:
        chi = eye / (lam + 0.5)
        M = np.zeros((m, k))
        c = 0.1 * eye
    else:
        chi, M, c = (np.array(init[x], float) for x in ("chi", "M", "c"))
    r = np.zeros((S.n, m))
    residuals = []
    status = "not-converged"
    for it in range(max_iter):
        w = S.xi @ _sqrtm_psd(c).T + (S.s @ (M @ rho_inv).T if k else 0.0)
        r, g, J, fres = _prox(S, w, chi, delta, r)
        if not (np.isfinite(r).all() and np.isfinite(g).all()):
            status = "no-stationary-state"
            break
        A = eye + np.einsum("ab,nbc->nac", chi, J) / delta
        # J A^{-1} = (A^{-T} J^T)^T
        JA = np.linalg.solve(np.swapaxes(A, 1, 2), np.swapaxes(J, 1, 2)).swapaxes(1, 2)
        Khat = JA.mean(0)
        Ell = g.T @ g / S.n
        Els = g.T @ S.s / S.n
        nurho = Els - Khat @ M
        Aθ = lam * eye + Khat
        try:
            chi_new = np.linalg.inv(Aθ)
        except np.linalg.LinAlgError:
            chi_new = np.full((m, m), np.inf)
        if not np.isfinite(chi_new).all() or np.abs(chi_new).max() > chi_max or \
                np.linalg.eigvalsh(0.5 * (Aθ + Aθ.T)).min() <= 0:
            status = "no-stationary-state"
            break
        M_new = -chi_new @ nurho
        c_new = chi_new @ Ell @ chi_new.T / delta
        res = max(np.abs(chi_new - chi).max() / max(np.abs(chi_new).max(), 1e-300),
                  np.abs(M_new - M).max() / max(np.abs(M_new).max(), 1e-3) if k else 0.0,
                  np.abs(c_new - c).max() / max(np.abs(c_new).max(), 1e-300))
        residuals.append(float(res))
        a = damping
        chi = (1 - a) * chi_new + a * chi
        chi = 0.5 * (chi + chi.T)
        M = (1 - a) * M_new + a * M
        c = (1 - a) * c_new + a * c
        if np.abs(c).max() > 1e8:
            status = "no-stationary-state"
            break
        if res < tol:
            status = "ok"
            chi, M, c = chi_new, M_new, c_new
            break
    if status == "no-stationary-state":
        return {"status": status, "residuals": residuals, "iterations": len(residuals),
                "message": "the static fixed point runs away (chi = (lam + Khat)^{-1} or Q without bound): "
                           "no restoring force, e.g. the data are interpolated without a ridge"}
    # observables at the final state
    w = S.xi @ _sqrtm_psd(c).T + (S.s @ (M @ rho_inv).T if k else 0.0)
    r, g, J, fres = _prox(S, w, chi, delta, r)
    loss = np.empty(S.n)
    kern.loss_batch(np.ascontiguousarray(r), S.s, S.z, p, loss)
    nmet = len(model.metrics)
    met = np.empty((S.n, nmet))
    if nmet:
        kern.metrics_batch(np.ascontiguousarray(r), S.s, S.z, p, met)
    A = eye + np.einsum("ab,nbc->nac", chi, J) / delta
    JA = np.linalg.solve(np.swapaxes(A, 1, 2), np.swapaxes(J, 1, 2)).swapaxes(1, 2)
    Q = (M @ rho_inv @ M.T if k else 0.0) + c
    out = {"Q": Q, "M": M, "chi": chi, "c": c, "Khat": JA.mean(0), "Gamma": J.mean(0),
           "E_r_ell": r.T @ g / S.n, "E_ell_ell": g.T @ g / S.n, "E_ell_s": g.T @ S.s / S.n,
           "train_loss": float(loss.mean()), "rho": rho, "prox_residual": fres,
           "residuals": residuals, "iterations": len(residuals), "status": status,
           "J_samples": J[: min(S.n, 4000)].copy()}

    for j, name in enumerate(model.metrics):
        out[f"train_{name}"] = float(met[:, j].mean())
    return out


def lag_kernels_static(J, chi, lam, delta, dt, window, iters=200, tol=1e-8, damping=0.0):
    """K(u), R(n) (u, n = 0..W) at tau = 0 from frozen Jacobian samples J (n, m, m): frequency domain.

    See the module docstring. The FFT length is >= 4 W (the aliasing error is the tail of R
    beyond 4 W lags).
    """
    m = J.shape[1]
    W = max(2, int(round(window / dt)))
    nf = 1 << int(np.ceil(np.log2(4 * (W + 1))))
    zeta = np.exp(-2j * np.pi * np.arange(nf) / nf)
    eye = np.eye(m)
    Kh = np.broadcast_to(J.mean(0), (nf, m, m)).astype(complex)
    Jc = J.astype(complex)
    for _ in range(iters):
        D = (1 - zeta * (1 - lam * dt))[:, None, None] * eye + (zeta * dt)[:, None, None] * Kh
        Rh = zeta[:, None, None] * np.linalg.inv(D)
        # Khat(zeta) = E[J (I + (dt/delta) Rh J)^{-1}]  (samples x frequencies: chunk over samples)
        acc = np.zeros((nf, m, m), complex)
        for lo in range(0, J.shape[0], 256):
            Jb = Jc[lo:lo + 256]
            A = eye + (dt / delta) * np.einsum("fab,nbc->nfac", Rh, Jb)
            X = np.linalg.solve(np.swapaxes(A, 2, 3), np.broadcast_to(np.swapaxes(Jb, 1, 2)[:, None], A.shape))
            acc += np.swapaxes(X, 2, 3).sum(0)
        Kn = acc / J.shape[0]
        res = np.abs(Kn - Kh).max() / max(np.abs(Kn).max(), 1e-300)
        Kh = (1 - damping) * Kn + damping * Kh
        if res < tol:
            break
    lag_kernels_static.iterations = _ + 1
    D = (1 - zeta * (1 - lam * dt))[:, None, None] * eye + (zeta * dt)[:, None, None] * Kh
    Rh = zeta[:, None, None] * np.linalg.inv(D)
    # Khat(zeta) = sum_u K(u) zeta^u with zeta = e^{-i w}: numpy's forward FFT convention
    K = np.fft.ifft(Kh, axis=0).real[: W + 1]
    R = np.fft.ifft(Rh, axis=0).real[: W + 1]
    return K, R


def _starts(m, k, rho_std, lam, n):
    """``n`` initial states {chi, M, c} for the multi-start search: the default start (M = 0),
    aligned and anti-aligned units (M = +-rho_std), and for m >= 2 units of opposite signs and a
    single specialised unit."""
    eye = np.eye(m)
    out = [None]
    cands = [np.ones((m, k)), -np.ones((m, k))]
    if m >= 2:
        cands.append(np.array([[(-1.0) ** i] * k for i in range(m)]))
        cands.append(np.array([[1.0 if i == 0 else 0.0] * k for i in range(m)]))
    for Mv in cands:
        out.append({"chi": eye / (lam + 0.1), "M": rho_std * Mv, "c": 0.5 * eye})
    return out[:max(1, n)]


def _objective(st, delta, lam):
    """Regularised empirical risk per coordinate at a fixed point: delta E[L] + lam tr(Q) / 2."""
    return float(delta * st["train_loss"] + 0.5 * lam * np.trace(st["Q"]))


def _same_point(a, b, rtol=1e-4):
    """Equal (Q, M) up to a permutation of the student units (committee symmetry)."""
    import itertools

    m = a["Q"].shape[0]
    scale = 1.0 + max(np.abs(a["Q"]).max(), np.abs(b["Q"]).max())
    for perm in itertools.permutations(range(m)):
        P = np.eye(m)[list(perm)]
        dq = np.abs(P @ b["Q"] @ P.T - a["Q"]).max()
        dm = np.abs(P @ b["M"] - a["M"]).max() if a["M"].size else 0.0
        if max(dq, dm) <= rtol * scale:
            return True
    return False


def multistart(kern, model, settings, p, *, samples=10000, seed=0, starts=4, max_iter=500, tol=1e-9):
    """The tau = 0 fixed point from several starts on the same draws (common random numbers).

    A convex loss has one stationary point (the ERM) and every start finds it; a non-convex one
    (e.g. a committee) can have several (minima, and saddles of the regularised empirical risk).
    Returns (points, failed): the distinct converged points (up to a permutation of the units) as
    dicts with Q, M, train_loss, objective = delta E[L] + lam tr(Q) / 2, the indices of the starts
    that reached them and the state to start a solve from, sorted by objective; and the starts that
    found no fixed point, as (index, status) pairs (e.g. lam + Khat not positive along the way: a
    start near a saddle of a non-convex risk).
    """
    m, k = int(kern.M), int(kern.K)
    rho_std = model.teacher_std_value(p)
    found, failed = [], []
    for j, init in enumerate(_starts(m, k, rho_std, settings.lam, starts)):
        st = static_fixed_point(kern, model, settings, p, samples=samples, seed=seed, init=init,
                                max_iter=max_iter, tol=tol)
        if st["status"] != "ok":
            failed.append((j, st["status"]))
            continue
        pt = {"Q": st["Q"], "M": st["M"], "train_loss": st["train_loss"],
              "objective": _objective(st, settings.delta, settings.lam), "starts": [j],
              "state": {"chi": st["chi"], "M": st["M"], "c": st["c"]}}
        for q in found:
            if _same_point(q, pt):
                q["starts"].append(j)
                break
        else:
            found.append(pt)
    return sorted(found, key=lambda q: q["objective"]), failed


def check_supported(kern, model):
    """Refuse what the stationary solve cannot do: m > 3."""
    if int(kern.M) > 3:
        raise UnsupportedModelError(f"stationary: m = {kern.M} > 3 is not supported.")


__all__ = ["static_fixed_point", "lag_kernels_static", "check_supported", "multistart"]
