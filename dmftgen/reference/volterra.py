r"""Homogenized-SGF Volterra risk curves for ridge regression (docs/theory.md §5).

Setting: :math:`y=X\theta^*+\sigma\varepsilon`, loss :math:`\tfrac12(r-y)^2`,
:math:`h=\lambda\theta`, :math:`\theta^0=0`, SGF temperature :math:`\tau`. Replacing the SGF noise
covariance :math:`\frac\tau\delta\sum_i x_ix_i^\top\ell_i^2` by its homogenization
:math:`\frac\tau\delta\frac{\|\ell\|^2}{n}X^\top X = 2\tau L(\theta)\,A`, :math:`A=X^\top X/\delta`,
the expected train loss :math:`L` and test loss :math:`E` close into linear Volterra equations
(deterministic :math:`d\to\infty` limit, :math:`\mu_M` = Marchenko–Pastur law of :math:`A`):

.. math::

    L(t) &= L_{\rm GF}(t) + \int_0^t K(t-s)\,L(s)\,ds,
    \qquad K(u) = \tau\int m^2 e^{-2(\lambda+m)u}\,d\mu_M(m),\\
    E(t) &= E_{\rm GF}(t) + \int_0^t K_{\rm te}(t-s)\,L(s)\,ds,
    \qquad K_{\rm te}(u) = \tau\int m\,e^{-2(\lambda+m)u}\,d\mu_M(m),

with :math:`L_{\rm GF}, E_{\rm GF}` from :mod:`dmftgen.reference.marchenko_pastur`. The overlap
:math:`M(t)=\rho\int f_t\,d\mu_M` is unchanged by the (zero-mean) noise and
:math:`Q = 2E + 2M - \rho - \sigma^2`.

Discrete time (derived here). For the Euler–Maruyama SGF with step :math:`\Delta t`,
:math:`\theta_{k+1}=D\theta_k+\Delta t\,b+\eta_k`, :math:`D=I-\Delta t(\lambda+A)`, with
homogenized noise :math:`\mathrm{Cov}(\eta_k\,|\,\theta_k)=2\tau\Delta t\,L(\theta_k)A`, one has
:math:`\theta_k=\bar\theta_k+\sum_{j<k}D^{k-1-j}\eta_j` (:math:`\bar\theta_k` the noiseless GD
iterate), the :math:`\eta_j` are martingale increments and both losses are quadratic, so exactly

.. math::

    L_k &= L_{\rm GD}(k) + \Delta t\sum_{j<k}K_{\Delta}(k-1-j)\,L_j,
    \qquad K_\Delta(i) = \tau\int m^2\,(1-\Delta t(\lambda+m))^{2i}\,d\mu_M,\\
    E_k &= E_{\rm GD}(k) + \Delta t\sum_{j<k}K_{{\rm te},\Delta}(k-1-j)\,L_j,
    \qquad K_{{\rm te},\Delta}(i) = \tau\int m\,(1-\Delta t(\lambda+m))^{2i}\,d\mu_M,

an explicit (left-point) sum; :math:`\Delta t\to0` recovers the continuous equations with an
:math:`O(\Delta t)` error. For the non-homogenized Euler–Maruyama SGF (per-sample
:math:`\ell_i^2` weights) the same equations hold in the :math:`d\to\infty` limit by the
homogenization argument (checked numerically against simulations, not proven here).

Stability: the resolvent is bounded iff :math:`\int_0^\infty K = \tau\int\frac{m^2}{2(\lambda+m)}
d\mu_M<1` (for :math:`\lambda=0`: :math:`\tau<2`); in discrete time iff
:math:`\Delta t\sum_i K_\Delta(i)=\tau\int\frac{m^2}{(\lambda+m)(2-\Delta t(\lambda+m))}d\mu_M<1`
and :math:`\Delta t(\lambda+m_+)<2`. Noise floor: :math:`L(\infty)=L_{\rm GF}(\infty)/(1-\int K)`,
:math:`E(\infty)=E_{\rm GF}(\infty)+L(\infty)\int K_{\rm te}`; for :math:`\lambda=0,\ \delta>1`,
:math:`L(\infty)=(1-1/\delta)\sigma^2/(2-\tau)` and
:math:`E(\infty)=\sigma^2\delta/(2(\delta-1))+\tfrac\tau2L(\infty)`.
"""

from __future__ import annotations

import numpy as np

from .marchenko_pastur import (
    RidgeCurves,
    _auto_nodes,
    _step_grid,
    gradient_flow,
    mp_atom,
    mp_quadrature,
    mp_support,
)

__all__ = [
    "volterra",
    "volterra_kernels",
    "kernel_integrals",
    "critical_tau",
    "is_stable",
    "noise_floor",
]

_BLOCK = 2_000_000


def volterra_kernels(u, delta, tau, lam=0.0, *, dt=None, n_nodes=None):
    """Volterra kernels :math:`K` (train) and :math:`K_{\\rm te}` (test).

    .. math:: K(u) = \\tau\\int m^2 e^{-2(\\lambda+m)u}\\,d\\mu_M,\\qquad
              K_{\\rm te}(u) = \\tau\\int m\\,e^{-2(\\lambda+m)u}\\,d\\mu_M,

    or, with ``dt``, the discrete kernels :math:`K_\\Delta(i)`, :math:`K_{{\\rm te},\\Delta}(i)`
    with :math:`e^{-2(\\lambda+m)u}` replaced by :math:`(1-\\Delta t(\\lambda+m))^{2i}`, ``u = i*dt``.
    The atom of :math:`\\mu_M` at 0 does not contribute.

    Parameters
    ----------
    u : array_like
        Lags (``u >= 0``; multiples of ``dt`` when ``dt`` is given).
    delta, tau, lam : float
        :math:`\\delta`, :math:`\\tau`, :math:`\\lambda`.
    dt : float, optional
        Step of the discrete-time analogue.
    n_nodes : int, optional
        Quadrature nodes.

    Returns
    -------
    K, K_te : ndarray
    """
    u = np.atleast_1d(np.asarray(u, dtype=float))
    if n_nodes is None:
        n_nodes = _auto_nodes(delta, lam, 2.0 * (float(u.max()) if u.size else 0.0))
    m, w = mp_quadrature(delta, n_nodes)
    a = lam + m
    K = np.empty(u.shape)
    Kte = np.empty(u.shape)
    step = max(1, _BLOCK // m.size)
    k = None if dt is None else _step_grid(u, dt)
    for s in range(0, u.size, step):
        if dt is None:
            e = np.exp(-2.0 * a[None, :] * u[s:s + step, None])
        else:
            e = (1.0 - dt * a[None, :]) ** (2.0 * k[s:s + step, None])
        K[s:s + step] = e @ (tau * m * m * w)
        Kte[s:s + step] = e @ (tau * m * w)
    return K, Kte


def kernel_integrals(delta, tau, lam=0.0, *, dt=None, n_nodes=2000):
    """Total masses :math:`\\int_0^\\infty K` and :math:`\\int_0^\\infty K_{\\rm te}`.

    .. math:: \\int_0^\\infty K = \\tau\\int\\frac{m^2}{2(\\lambda+m)}d\\mu_M,\\qquad
              \\int_0^\\infty K_{\\rm te} = \\tau\\int\\frac{m}{2(\\lambda+m)}d\\mu_M ;

    with ``dt``: :math:`\\Delta t\\sum_{i\\ge0}K_\\Delta(i)`, i.e. :math:`2(\\lambda+m)` replaced by
    :math:`(\\lambda+m)(2-\\Delta t(\\lambda+m))` (infinite if :math:`\\Delta t(\\lambda+m_+)\\ge2`).

    Returns
    -------
    (IK, IK_te) : tuple of float
    """
    m, w = mp_quadrature(delta, n_nodes)
    a = lam + m
    if dt is None:
        den = 2.0 * a
    else:
        if dt * (lam + mp_support(delta)[1]) >= 2.0:
            return np.inf, np.inf
        den = a * (2.0 - dt * a)
    return float(tau * np.sum(w * m * m / den)), float(tau * np.sum(w * m / den))


def critical_tau(delta, lam=0.0, *, dt=None):
    """Critical temperature :math:`\\tau_c = 1/\\int\\frac{m^2}{2(\\lambda+m)}d\\mu_M`.

    The Volterra resolvent (and the SGF risk) stays bounded iff :math:`\\tau<\\tau_c`; for
    :math:`\\lambda=0`, :math:`\\int m\\,d\\mu_M=1` gives :math:`\\tau_c=2`. With ``dt`` the
    discrete-time criterion (see :func:`kernel_integrals`) is used; 0 if the GD step itself is
    unstable.

    Parameters
    ----------
    delta, lam : float
    dt : float, optional

    Returns
    -------
    float
    """
    ik, _ = kernel_integrals(delta, 1.0, lam, dt=dt)
    return 0.0 if not np.isfinite(ik) else 1.0 / ik


def is_stable(delta, tau, lam=0.0, *, dt=None):
    """``True`` iff :math:`\\int_0^\\infty K<1`, i.e. ``tau < critical_tau(delta, lam, dt=dt)``."""
    return bool(tau < critical_tau(delta, lam, dt=dt))


def noise_floor(delta, sigma, tau, lam=0.0, rho=1.0):
    """Long-time limits :math:`L(\\infty)`, :math:`E(\\infty)` of the Volterra curves.

    .. math:: L(\\infty)=\\frac{L_{\\rm GF}(\\infty)}{1-\\int K},\\qquad
              E(\\infty)=E_{\\rm GF}(\\infty)+L(\\infty)\\int K_{\\rm te},

    which for :math:`\\lambda=0,\\ \\delta>1` equal :math:`(1-1/\\delta)\\sigma^2/(2-\\tau)` and
    :math:`\\sigma^2\\delta/(2(\\delta-1))+\\frac\\tau2 L(\\infty)`. Infinite if unstable.
    For :math:`\\lambda=0` the GF limits are the :math:`t\\to\\infty` limits of the closed form
    (minimum-norm interpolator / least squares).

    Returns
    -------
    (L_inf, E_inf) : tuple of float
    """
    ik, ikte = kernel_integrals(delta, tau, lam)
    if ik >= 1.0:
        return np.inf, np.inf
    m, w = mp_quadrature(delta, 2000)
    a0 = mp_atom(delta)
    s2 = sigma ** 2
    f = m / (lam + m)
    g = 1.0 / (lam + m)
    L_gf = (0.5 * rho * np.sum(w * m * (1 - f) ** 2) + 0.5 * s2 / delta * np.sum(w * (1 - f) ** 2)
            + 0.5 * max(0.0, 1.0 - 1.0 / delta) * s2)
    E_gf = 0.5 * (rho * (np.sum(w * (1 - f) ** 2) + a0) + s2 / delta * np.sum(w * m * g * g)) + 0.5 * s2
    L_inf = L_gf / (1.0 - ik)
    return float(L_inf), float(E_gf + L_inf * ikte)


def _solve_trapezoid(F, K, h):
    """Trapezoidal Nyström solution of L(t_n) = F_n + h[K_n L_0/2 + sum_{0<j<n} K_{n-j} L_j + K_0 L_n/2]."""
    n = F.size
    L = np.empty(n)
    L[0] = F[0]
    c = 1.0 - 0.5 * h * K[0]
    for i in range(1, n):
        acc = 0.5 * K[i] * L[0]
        if i > 1:
            acc += np.dot(K[i - 1:0:-1], L[1:i])
        L[i] = (F[i] + h * acc) / c
    return L


def _convolve_trapezoid(Kte, L, h):
    """(K_te * L)(t_n) by the trapezoidal rule."""
    n = L.size
    out = np.zeros(n)
    for i in range(1, n):
        out[i] = h * (0.5 * Kte[i] * L[0] + 0.5 * Kte[0] * L[i] + np.dot(Kte[i - 1:0:-1], L[1:i]))
    return out


def _continuous_on_grid(T, N, delta, sigma, tau, lam, rho, n_nodes):
    tg = np.linspace(0.0, T, N + 1)
    h = T / N
    gf = gradient_flow(tg, delta, sigma, lam, rho, n_nodes=n_nodes)
    K, Kte = volterra_kernels(tg, delta, tau, lam, n_nodes=n_nodes)
    L = _solve_trapezoid(gf.train, K, h)
    E = gf.test + _convolve_trapezoid(Kte, L, h)
    return tg, L, E, gf.M


def volterra(t, delta, sigma, tau, lam=0.0, rho=1.0, *, dt=None, n_steps=None,
             richardson=True, n_nodes=None):
    """Homogenized-SGF train/test loss on ridge regression from the MP–Volterra equations.

    Continuous time (``dt=None``): solves
    :math:`L = L_{\\rm GF} + K * L`, :math:`E = E_{\\rm GF}+K_{\\rm te}*L` by the trapezoidal rule
    on a uniform grid of ``n_steps`` intervals on :math:`[0,\\max t]`, with one Richardson step
    (grids ``n_steps`` and ``2 n_steps``, :math:`(4L_{h/2}-L_h)/3`, error :math:`O(h^4)`), and
    cubic-spline interpolation to the requested ``t``.

    Discrete time (``dt`` given): the exact Euler–Maruyama analogue
    :math:`L_k = L_{\\rm GD}(k)+\\Delta t\\sum_{j<k}K_\\Delta(k-1-j)L_j` (module docstring);
    every ``t`` must be a multiple of ``dt``.

    Parameters
    ----------
    t : array_like
        Output times.
    delta, sigma, tau, lam, rho : float
        :math:`\\delta=n/d`, label noise :math:`\\sigma`, temperature :math:`\\tau`, ridge
        :math:`\\lambda`, :math:`\\rho=\\|\\theta^*\\|^2/d`.
    dt : float, optional
        Discrete-time step.
    n_steps : int, optional
        Trapezoid intervals (continuous case); default ``max(400, 40 * max t)``, capped at 20000.
    richardson : bool
        Apply Richardson extrapolation (continuous case).
    n_nodes : int, optional
        Marchenko–Pastur quadrature nodes.

    Returns
    -------
    RidgeCurves
        ``train`` = :math:`L`, ``test`` = :math:`E`, ``M`` = :math:`\\rho\\int f_t d\\mu_M`,
        ``Q`` = :math:`2E+2M-\\rho-\\sigma^2`.
    """
    t = np.atleast_1d(np.asarray(t, dtype=float))
    if np.any(t < 0):
        raise ValueError("times must be >= 0")
    T = float(t.max())
    s2 = sigma ** 2
    if dt is not None:
        kout = _step_grid(t, dt).astype(int)
        nk = int(kout.max()) + 1
        tg = dt * np.arange(nk)
        gd = gradient_flow(tg, delta, sigma, lam, rho, dt=dt, n_nodes=n_nodes)
        K, Kte = volterra_kernels(tg, delta, tau, lam, dt=dt, n_nodes=n_nodes)
        L = np.empty(nk)
        E = np.empty(nk)
        for k in range(nk):
            L[k] = gd.train[k] + dt * np.dot(K[k - 1::-1], L[:k]) if k else gd.train[0]
            E[k] = gd.test[k] + dt * np.dot(Kte[k - 1::-1], L[:k]) if k else gd.test[0]
        L, E, M = L[kout], E[kout], gd.M[kout]
    else:
        if T == 0.0:
            gf = gradient_flow(t, delta, sigma, lam, rho, n_nodes=n_nodes)
            return gf
        if n_steps is None:
            n_steps = int(min(20000, max(400, 40 * T)))
        tg, L1, E1, Mg = _continuous_on_grid(T, n_steps, delta, sigma, tau, lam, rho, n_nodes)
        if richardson:
            tg2, L2, E2, _ = _continuous_on_grid(T, 2 * n_steps, delta, sigma, tau, lam, rho, n_nodes)
            L1 = (4.0 * L2[::2] - L1) / 3.0
            E1 = (4.0 * E2[::2] - E1) / 3.0
        from scipy.interpolate import CubicSpline
        L = CubicSpline(tg, L1)(t)
        E = CubicSpline(tg, E1)(t)
        M = gradient_flow(t, delta, sigma, lam, rho, n_nodes=n_nodes).M
    Q = 2.0 * E + 2.0 * M - rho - s2
    return RidgeCurves(t=t, train=L, test=E, Q=Q, M=M)
