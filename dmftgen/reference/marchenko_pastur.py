r"""Gradient flow / gradient descent on ridge regression in the proportional limit.

Closed-form reference curves (docs/theory.md §5) for

.. math::

    y = X\theta^* + \sigma\varepsilon,\qquad
    \dot\theta = -\lambda\theta - \delta^{-1}X^\top(X\theta - y),\qquad \theta^0 = 0,

with :math:`X\in\mathbb R^{n\times d}` of i.i.d. entries of variance :math:`1/d`,
:math:`n/d\to\delta`, :math:`\theta^*\sim N(0,\rho I_d)` and :math:`\varepsilon\sim N(0,I_n)`.
Per-sample loss :math:`\tfrac12(r-y)^2`, regulariser gradient :math:`h=\lambda\theta` (τ = 0: no
SGF noise).

Let :math:`A = X^\top X/\delta` with spectral law :math:`\mu_M`, the Marchenko–Pastur law of aspect
ratio :math:`\gamma = 1/\delta`,

.. math::

    d\mu_M(m) = \frac{\sqrt{(m_+-m)(m-m_-)}}{2\pi\gamma m}\,\mathbf 1_{[m_-,m_+]}(m)\,dm
              + (1-\delta)_+\,\delta_0(dm),\qquad m_\pm = (1\pm\sqrt\gamma)^2 .

With :math:`b=\delta^{-1}X^\top y = A\theta^* + \sigma\delta^{-1}X^\top\varepsilon` the flow is
:math:`\theta^t = g_t(A)\,b` with

.. math::

    \phi_t(m) = 1-e^{-(\lambda+m)t},\qquad g_t(m)=\frac{\phi_t(m)}{\lambda+m},\qquad
    f_t(m) = m\,g_t(m).

Gradient descent with Euler steps of size :math:`\Delta t`,
:math:`\theta_{k+1}=\theta_k-\Delta t(\lambda\theta_k+\delta^{-1}X^\top(X\theta_k-y))`, is exactly
the same with :math:`\phi_k(m) = 1-(1-\Delta t(\lambda+m))^k` (sum of the geometric series).

Overlaps (:math:`d\to\infty`; the noise part averages out of :math:`M`):

.. math::

    M(t) = \tfrac1d\theta^{t\top}\theta^* \to \rho\int f_t\,d\mu_M,\qquad
    Q(t) = \tfrac1d\|\theta^t\|^2 \to \rho\int f_t^2\,d\mu_M
          + \frac{\sigma^2}{\delta}\int m\,g_t(m)^2\,d\mu_M .

Test loss (fresh Gaussian sample, :math:`E = \frac1{2d}\|\theta-\theta^*\|^2+\frac{\sigma^2}2`):

.. math::

    E_{\rm GF}(t) = \tfrac12(Q-2M+\rho+\sigma^2)
      = \tfrac12\int\Big[\rho(1-f_t)^2+\frac{\sigma^2}{\delta}\,m\,g_t^2\Big]d\mu_M+\frac{\sigma^2}2 .

Train loss :math:`L = \frac1{2n}\|X\theta-y\|^2` (one half of the sample mean of
:math:`(r_i-y_i)^2`):

.. math::

    L_{\rm GF}(t) = \frac1{2\delta}\int_{m>0}(1-f_t)^2(\delta\rho m+\sigma^2)\,d\mu_M
                   + \tfrac12(1-\tfrac1\delta)_+\sigma^2 .

(:math:`X g_t(A) X^\top/\delta` has eigenvalues :math:`f_t(m)` on the non-zero spectrum and 0 on
the :math:`(n-d)_+` remaining directions, which gives the last term.)

The atom at :math:`m=0` (δ < 1) is handled analytically (:math:`f_t(0)=0`, :math:`m g_t^2=0`);
the continuous part uses Gauss–Chebyshev quadrature of the second kind on
:math:`[m_-,m_+]`, which absorbs the square-root edges exactly (Gauss–Jacobi
:math:`(\alpha,\beta)=(\tfrac12,-\tfrac12)` when δ = 1 and :math:`m_-=0`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import roots_jacobi

__all__ = [
    "RidgeCurves",
    "mp_support",
    "mp_density",
    "mp_atom",
    "mp_quadrature",
    "gradient_flow",
]

_BLOCK = 2_000_000  # max entries of a (times x nodes) work array


@dataclass(frozen=True)
class RidgeCurves:
    """Reference curves for ridge regression.

    Attributes
    ----------
    t : ndarray, shape (T,)
        SGF times.
    train : ndarray, shape (T,)
        Train loss :math:`L(t)=\\frac1{2n}\\|X\\theta-y\\|^2`.
    test : ndarray, shape (T,)
        Test loss :math:`E(t)=\\tfrac12(Q-2M+\\rho+\\sigma^2)`.
    Q : ndarray, shape (T,)
        :math:`\\|\\theta\\|^2/d`.
    M : ndarray, shape (T,)
        :math:`\\theta^\\top\\theta^*/d`.
    """

    t: np.ndarray
    train: np.ndarray
    test: np.ndarray
    Q: np.ndarray
    M: np.ndarray


def mp_support(delta):
    """Edges :math:`m_\\pm=(1\\pm\\sqrt{1/\\delta})^2` of the Marchenko–Pastur law of
    :math:`X^\\top X/\\delta`.

    Parameters
    ----------
    delta : float
        Sample ratio :math:`\\delta = n/d > 0`.

    Returns
    -------
    (m_minus, m_plus) : tuple of float
    """
    delta = _check_delta(delta)
    sg = np.sqrt(1.0 / delta)
    return (1.0 - sg) ** 2, (1.0 + sg) ** 2


def mp_atom(delta):
    """Mass :math:`(1-\\delta)_+` of the atom of :math:`\\mu_M` at 0."""
    delta = _check_delta(delta)
    return max(0.0, 1.0 - delta)


def mp_density(m, delta):
    """Density of the continuous part of :math:`\\mu_M`.

    .. math:: p(m) = \\frac{\\sqrt{(m_+-m)(m-m_-)}}{2\\pi\\gamma m},\\qquad \\gamma=1/\\delta,

    zero outside :math:`[m_-,m_+]`; it integrates to :math:`\\min(1,\\delta)`.

    Parameters
    ----------
    m : array_like
        Points.
    delta : float
        Sample ratio :math:`n/d`.

    Returns
    -------
    ndarray
    """
    lo, hi = mp_support(delta)
    m = np.asarray(m, dtype=float)
    gamma = 1.0 / delta
    inside = (m > lo) & (m < hi) & (m > 0)
    out = np.zeros_like(m)
    mi = m[inside]
    out[inside] = np.sqrt((hi - mi) * (mi - lo)) / (2 * np.pi * gamma * mi)
    return out


def mp_quadrature(delta, n_nodes=400):
    """Quadrature rule for the continuous part of :math:`\\mu_M`.

    With :math:`m = c + h x`, :math:`c=1+\\gamma`, :math:`h=2\\sqrt\\gamma`,

    .. math:: \\int F\\,p\\,dm = \\frac{h^2}{2\\pi\\gamma}\\int_{-1}^1
              \\frac{F(m(x))}{m(x)}\\sqrt{1-x^2}\\,dx
              \\approx\\sum_i w_i F(m_i),

    Gauss–Chebyshev of the second kind (exact for the square-root edges; the error is geometric
    in ``n_nodes`` for analytic :math:`F`, with rate set by the pole of :math:`1/m` at distance
    :math:`m_-/h` from the lower edge, so δ close to 1 needs more nodes). At δ = 1 exactly
    (:math:`m_-=0`) Gauss–Jacobi with weight :math:`(1-x)^{1/2}(1+x)^{-1/2}` is used.

    Parameters
    ----------
    delta : float
        Sample ratio :math:`n/d`.
    n_nodes : int
        Number of nodes.

    Returns
    -------
    m : ndarray, shape (n_nodes,)
        Nodes, all in the open interval :math:`(m_-, m_+)`.
    w : ndarray, shape (n_nodes,)
        Weights, summing to :math:`\\min(1,\\delta)` up to rounding.
    """
    delta = _check_delta(delta)
    n = int(n_nodes)
    if n < 2:
        raise ValueError("n_nodes must be >= 2")
    gamma = 1.0 / delta
    c, h = 1.0 + gamma, 2.0 * np.sqrt(gamma)
    if delta == 1.0:
        # m = 2 + 2x, sqrt((4-m) m)/(2 pi m) dm = (1/pi) sqrt((1-x)/(1+x)) dx
        x, wx = roots_jacobi(n, 0.5, -0.5)
        return 2.0 + 2.0 * x, wx / np.pi
    i = np.arange(1, n + 1)
    ang = i * np.pi / (n + 1)
    x = np.cos(ang)
    wx = np.pi / (n + 1) * np.sin(ang) ** 2
    m = c + h * x
    w = h * h / (2 * np.pi * gamma) * wx / m
    return m, w


def _check_delta(delta):
    delta = float(delta)
    if not np.isfinite(delta) or delta <= 0:
        raise ValueError(f"delta must be positive, got {delta}")
    return delta


def _auto_nodes(delta, lam, scale):
    """Node count so that exp(-(lam+m) s) with s up to ``scale`` is integrated to ~1e-12."""
    lo, hi = mp_support(delta)
    h = 0.5 * (hi - lo)
    n = 256 + int(np.ceil(1.5 * h * scale))
    if delta != 1.0:
        eps = lo / h  # distance of the pole of 1/m from the lower edge, in x units
        n = max(n, int(np.ceil(16.0 / np.sqrt(2 * eps))) + 32)
    return min(n, 20000)


def _step_grid(t, dt):
    """Integer step numbers k = t/dt (t must lie on the grid)."""
    k = np.rint(t / dt)
    if np.any(np.abs(k * dt - t) > 1e-9 * np.maximum(1.0, np.abs(t))):
        raise ValueError("with dt given, every t must be an integer multiple of dt")
    return k


def _phi(m, lam, t, dt):
    """phi(m) = 1 - e^{-(lam+m)t} (dt None) or 1 - (1-dt(lam+m))^{t/dt}; shape (T, N)."""
    a = lam + m[None, :]
    if dt is None:
        return -np.expm1(-a * t[:, None])
    k = _step_grid(t, dt)
    return 1.0 - (1.0 - dt * a) ** k[:, None]


def spectral_integrals(t, delta, lam, dt=None, n_nodes=None):
    """The spectral integrals behind all closed forms (continuous part of :math:`\\mu_M` only).

    Returns a dict of arrays over ``t`` with keys ``f`` (∫f dμ), ``f2`` (∫f² dμ),
    ``one_minus_f2`` (∫(1-f)² dμ), ``m_one_minus_f2`` (∫m(1-f)² dμ), ``mg2`` (∫m g² dμ),
    and the scalar ``mass`` (∫dμ over m > 0 = min(1, δ)).
    """
    t = np.atleast_1d(np.asarray(t, dtype=float))
    if np.any(t < 0):
        raise ValueError("times must be >= 0")
    tmax = float(t.max()) if t.size else 0.0
    if n_nodes is None:
        n_nodes = _auto_nodes(delta, lam, tmax)
    m, w = mp_quadrature(delta, n_nodes)
    keys = ("f", "f2", "one_minus_f2", "m_one_minus_f2", "mg2")
    out = {k: np.empty(t.shape) for k in keys}
    step = max(1, _BLOCK // m.size)
    for a in range(0, t.size, step):
        tb = t[a:a + step]
        phi = _phi(m, lam, tb, dt)
        g = phi / (lam + m)
        f = m * g
        one_f2 = (1.0 - f) ** 2
        out["f"][a:a + step] = f @ w
        out["f2"][a:a + step] = (f * f) @ w
        out["one_minus_f2"][a:a + step] = one_f2 @ w
        out["m_one_minus_f2"][a:a + step] = one_f2 @ (m * w)
        out["mg2"][a:a + step] = (g * g) @ (m * w)
    out["mass"] = min(1.0, delta)
    return out


def gradient_flow(t, delta, sigma=0.0, lam=0.0, rho=1.0, *, dt=None, n_nodes=None):
    """Train/test loss and overlaps of gradient flow (or gradient descent) on ridge regression.

    Implements (see module docstring for the derivation)

    .. math::

        M &= \\rho\\int f_t\\,d\\mu_M,\\qquad
        Q = \\rho\\int f_t^2\\,d\\mu_M + \\frac{\\sigma^2}{\\delta}\\int m g_t^2\\,d\\mu_M,\\\\
        E_{\\rm GF} &= \\tfrac12(Q-2M+\\rho+\\sigma^2),\\qquad
        L_{\\rm GF} = \\frac1{2\\delta}\\int_{m>0}(1-f_t)^2(\\delta\\rho m+\\sigma^2)\\,d\\mu_M
                     + \\tfrac12(1-\\tfrac1\\delta)_+\\sigma^2,

    with :math:`f_t = m g_t`, :math:`g_t=\\phi_t/(\\lambda+m)` and
    :math:`\\phi_t = 1-e^{-(\\lambda+m)t}` (flow) or :math:`1-(1-\\Delta t(\\lambda+m))^{t/\\Delta t}`
    (Euler steps of size ``dt``; then every ``t`` must be a multiple of ``dt``).

    Parameters
    ----------
    t : array_like
        Times (SGF time; for GD, ``t = k * dt``).
    delta : float
        :math:`\\delta=n/d`.
    sigma : float
        Label-noise standard deviation :math:`\\sigma`.
    lam : float
        Ridge :math:`\\lambda\\ge0`.
    rho : float
        :math:`\\rho=\\|\\theta^*\\|^2/d`.
    dt : float, optional
        Step of the discrete-time (gradient-descent) analogue.
    n_nodes : int, optional
        Quadrature nodes for :math:`\\mu_M` (default: chosen for ~1e-12 accuracy).

    Returns
    -------
    RidgeCurves
        ``t, train, test, Q, M`` arrays.
    """
    t = np.atleast_1d(np.asarray(t, dtype=float))
    if lam < 0:
        raise ValueError("lam must be >= 0")
    if dt is not None and not dt > 0:
        raise ValueError("dt must be positive")
    S = spectral_integrals(t, delta, lam, dt=dt, n_nodes=n_nodes)
    a0 = mp_atom(delta)
    s2 = float(sigma) ** 2
    M = rho * S["f"]
    Q = rho * S["f2"] + s2 / delta * S["mg2"]
    # atom at m = 0: f = 0, m g^2 = 0  -> contributes rho*a0 to the integral of (1-f)^2
    test = 0.5 * (rho * (S["one_minus_f2"] + a0) + s2 / delta * S["mg2"]) + 0.5 * s2
    train = (0.5 * rho * S["m_one_minus_f2"] + 0.5 * s2 / delta * S["one_minus_f2"]
             + 0.5 * max(0.0, 1.0 - 1.0 / delta) * s2)
    return RidgeCurves(t=t, train=train, test=test, Q=Q, M=M)
