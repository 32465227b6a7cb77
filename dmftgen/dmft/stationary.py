"""Stationary regime of the SGF (tau > 0, stable model): plateau detection and stationary values.

Three tools, usable on any :class:`dmftgen.results.Result` (simulation, DMFT, long-horizon DMFT):

* :func:`detect_plateau` / :func:`plateau` / :func:`stationary_values`: has a one-time observable
  (train/test loss, Q, M, a metric) reached a stationary value, within its Monte Carlo error
  bars? Returns the value, its error and the time it was reached.
* :func:`linreg_stationary`: the stationary state of ridge regression solved directly (no time
  stepping), in continuous time or exactly at a step dt.
* :func:`q_balance`: the stationarity condition dQ/dt = 0 written with the r-process
  expectations the DMFT solver returns, to check a nonlinear model's long-time state.

Plateau test
------------
Given y(t_j) with standard errors e_j, a candidate window [t_i, t_end] is accepted when

1. every point is within ``z`` error bars of the window mean y_bar:
   |y_j - y_bar| <= z sqrt(e_j^2 + e_bar^2) + tol,
2. the drift across the window (least-squares slope times the window length) is within
   ``z`` error bars: |b (t_end - t_i)| <= z e_bar + tol,

with e_bar = mean_j e_j over the window and tol = atol + rtol |y_bar| (a systematic allowance,
e.g. the discretisation error; 0 by default). e_bar is the error of the window mean when the errors
of different times are fully correlated -- the case of the DMFT (all times share the paths) and
of seed-averaged simulations (each seed is one trajectory) -- and an upper bound otherwise. The
drift test is the sharp one for correlated errors: an exponential approach y_inf + A e^{-t/T_r}
passes once the drift left in the window is below z e_bar.

Where the errors decorrelate in time (e.g. randomised QMC static draws, which remove the part
constant in time), noise alone can drift by more than e_bar. A DMFT solve of R replicas keeps
each replica's curve (``*_reps``, R independent solves): the drift of each over the window gives
the drift's own standard error e_drift = sd_r(drift_r) / sqrt(R), whatever the errors'
correlation in time, and the window also passes when |drift| <= z_t e_drift + tol (z_t the
Student-t quantile with R - 1 degrees of freedom at the two-sided rate of z). So a window passes
when its drift is either smaller than the value's own error (it does not matter at that
precision) or not distinguishable from noise; a real trend, the same in every replica, has a small
e_drift and fails both. The plateau starts at the earliest t_i
from which *every* later window (at least ``min_frac`` of the horizon and ``min_points`` points
long) passes; if even the shortest admissible window fails, the curve is reported as not
stationary (``reached=False``, value = that window's mean).

Ridge regression: stationary state in closed form
-------------------------------------------------
For linear ell the DMFT closes into the Volterra equations of docs/theory.md §5 (responses equal
their gradient-flow values for every tau; tau enters through L only). Their t -> infinity limit
is the stationary state, solved directly: L_inf = L_GF(inf) / (1 - int K) and
E_inf = E_GF(inf) + L_inf int K_te (dmftgen.reference.volterra.noise_floor). At a step dt the
discrete Volterra sum gives, exactly for the discrete DMFT (docs/theory.md §2) at the same dt,

    L_inf(dt) = L_GF(inf) / (1 - IK(dt)),   E_inf(dt) = E_GF(inf) + L_inf(dt) IK_te(dt),
    IK(dt) = tau int m^2 / ((lam+m)(2 - dt(lam+m))) dmu_MP,   IK_te(dt) likewise with m,

because gradient descent and gradient flow share their fixed point (lam > 0 or delta > 1, and
from theta^0 = 0 the min-norm point otherwise). [Derived here from the discrete Volterra sum of
dmftgen.reference.volterra; checked against the long-time DMFT in tests/test_longtime.py.]

Nonlinear models (logistic with ridge)
--------------------------------------
For h = lam theta the DMFT implies, at every time, dQ/dt = -2 lam Q - (E[r ell^T] + E[ell r^T])
+ tau E[ell ell^T] (docs/theory.md §6, expectations over the r-process). In the discrete scheme the
increment Q_{k+1} - Q_k equals dt times that right-hand side plus O(dt^2), so in a stationary
state the *balance* B = 2 lam Q + E[r ell^T] + E[ell r^T] - tau E[ell ell^T] is O(dt) (and
O(dt^2) after Richardson extrapolation). :func:`q_balance` returns B(t); it is a necessary
condition of stationarity, not a stationary solve. The direct stationary solve for nonlinear ell
(time-lag kernels K(u), R_theta(u), S_U(u), a Monte Carlo r-process driven by a stationary
Gaussian w with the lag covariance, truncated memory) is :func:`dmftgen.dmft.stationary_dmft.
solve_stationary`; see docs/longtime.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SettingsError
from .errorbars import REPS


@dataclass(frozen=True)
class Plateau:
    """Result of a plateau test on one observable.

    Attributes
    ----------
    key : str
    reached : bool
        True if the curve is stationary within its error bars on an admissible tail window.
    value, err : float
        Window mean and its standard error (e_bar; see the module docstring), plus the spread of
        the window if that is larger (a curve that fluctuates beyond its error bars).
    t_reached : float
        Start of the plateau (NaN if not reached).
    t_end : float
        Last time of the curve.
    drift : float
        Least-squares drift across the accepted (or, if not reached, the shortest) window.
    """

    key: str
    reached: bool
    value: float
    err: float
    t_reached: float
    t_end: float
    drift: float

    def as_dict(self) -> dict:
        return {"key": self.key, "reached": self.reached, "value": self.value, "err": self.err,
                "t_reached": self.t_reached, "t_end": self.t_end, "drift": self.drift}


def _drift(tw, yw):
    """Least-squares slope times the window length, of each curve in yw (n, ...) along axis 0."""
    if tw.size < 2 or not tw[-1] > tw[0]:
        return np.zeros(yw.shape[1:])
    tc = (tw - tw.mean()).reshape((-1,) + (1,) * (yw.ndim - 1))
    return (tc * (yw - yw.mean(0))).sum(0) / (tc * tc).sum() * float(tw[-1] - tw[0])


def _window_stats(t, y, e, i, reps=None):
    """(window mean, e_bar, drift, the drift's own standard error from the replicas' curves
    ``reps`` (R, n): sd of their drifts / sqrt(R); 0 without them)."""
    tw, yw, ew = t[i:], y[i:], e[i:]
    ybar = float(yw.mean())
    ebar = float(ew.mean())
    drift = float(_drift(tw, yw))
    e_drift = 0.0
    if reps is not None and reps.shape[0] >= 2:
        dr = _drift(tw, reps[:, i:].T)
        e_drift = float(dr.std(ddof=1) / np.sqrt(reps.shape[0]))
    return ybar, ebar, drift, e_drift


def detect_plateau(t, y, err=None, *, z: float = 3.0, rtol: float = 0.0, atol: float = 0.0,
                   min_frac: float = 0.2, min_points: int = 5, key: str = "y", reps=None) -> Plateau:
    """Plateau test on one curve y(t) with standard errors ``err`` (see the module docstring).

    Parameters
    ----------
    t, y : array (n,)
    err : array (n,) or None
        Standard errors; ``None`` means exact values (then give ``rtol`` or ``atol``).
    reps : array (R, n) or None
        The curves of R independent replicas whose mean is y (a DMFT solve's ``*_reps``): the
        drift's own error is then measured, sd of the replicas' drifts / sqrt(R), and a window
        also passes when its drift is within z_t of those errors (z_t: the Student-t quantile,
        R - 1 degrees of freedom, at the two-sided rate of ``z``); see the module docstring.
    z : float
        Number of standard errors allowed (3: a two-sided 0.3 % false-alarm rate per check).
    rtol, atol : float
        Systematic allowance tol = atol + rtol |y_bar| (e.g. the discretisation error estimate).
    min_frac, min_points :
        The plateau window must cover at least this fraction of the horizon and these many points.

    Returns
    -------
    Plateau
    """
    t = np.asarray(t, float).ravel()
    y = np.asarray(y, float).ravel()
    e = np.zeros_like(y) if err is None else np.nan_to_num(np.asarray(err, float).ravel(), nan=0.0)
    if not (t.shape == y.shape == e.shape):
        raise SettingsError(f"plateau {key}: t, y and err must have the same length "
                            f"({t.size}, {y.size}, {e.size}).")
    if not (np.isfinite(z) and z > 0):
        raise SettingsError(f"plateau: z={z} (error bars allowed) must be a finite number > 0.")
    if not 0.0 < min_frac <= 1.0:
        raise SettingsError(f"plateau: min_frac={min_frac} must be in (0, 1].")
    if err is None and rtol == 0.0 and atol == 0.0:
        raise SettingsError(f"plateau {key}: no error bars given; pass rtol or atol for exact curves.")
    if reps is not None:
        reps = np.asarray(reps, float).reshape(-1, y.size)
    good = np.isfinite(y)
    if not good.all():
        # a diverged run: only the finished part (status 'diverged' results stop there anyway)
        n_ok = int(np.argmin(good))  # first non-finite point
        t, y, e = t[:n_ok], y[:n_ok], e[:n_ok]
        reps = None if reps is None else reps[:, :n_ok]
    z_t = 0.0
    if reps is not None and reps.shape[0] >= 2:
        from scipy.stats import norm, t as student_t

        z_t = float(student_t.isf(norm.sf(z), reps.shape[0] - 1))
    n = y.size
    if n < max(2, min_points):
        raise SettingsError(f"plateau {key}: {n} points, need at least {max(2, min_points)}.")
    span = t[-1] - t[0]
    # last admissible start: window >= min_frac of the horizon and >= min_points points
    i_max = min(n - min_points, int(np.searchsorted(t, t[-1] - min_frac * span, side="right")) - 1)
    i_max = max(i_max, 0)
    ok = np.zeros(i_max + 1, bool)
    stats = {}
    for i in range(i_max + 1):
        ybar, ebar, drift, e_drift = _window_stats(t, y, e, i, reps)
        tol = atol + rtol * abs(ybar)
        dev = np.abs(y[i:] - ybar) <= z * np.sqrt(e[i:] ** 2 + ebar ** 2) + tol
        ok[i] = bool(dev.all()) and abs(drift) <= max(z * ebar, z_t * e_drift) + tol
        stats[i] = (ybar, ebar, drift)
    if not ok[i_max]:
        ybar, ebar, drift = stats[i_max]
        spread = float(y[i_max:].std(ddof=1)) if n - i_max > 1 else 0.0
        return Plateau(key, False, ybar, max(ebar, spread), float("nan"), float(t[-1]), drift)
    # earliest start from which every later admissible window passes
    bad = np.nonzero(~ok)[0]
    i0 = int(bad[-1]) + 1 if bad.size else 0
    ybar, ebar, drift = stats[i0]
    spread = float(y[i0:].std(ddof=1) / np.sqrt(n - i0)) if n - i0 > 1 else 0.0
    return Plateau(key, True, ybar, max(ebar, spread), float(t[i0]), float(t[-1]), drift)


def _component(arr, component, lead=1):
    """One entry of a matrix curve (``lead`` leading axes: time, or replica and time); default (0, ...)."""
    arr = np.asarray(arr, float)
    if arr.ndim == lead:
        return arr
    if component is None:
        component = (0,) * (arr.ndim - lead)
    return arr[(slice(None),) * lead + tuple(component)]


def plateau(result, key: str = "train_loss", *, component=None, **kw) -> Plateau:
    """:func:`detect_plateau` on ``result[key]`` with its ``result[key + '_err']``.

    Works on any Result (simulation, DMFT, :func:`dmftgen.dmft.solve_long`). Matrix-valued
    observables (Q, M: (n, m, m) / (n, m, k)) use ``component`` (default the (0, 0) entry).
    ``rtol`` defaults to 1e-4 (a floor under the error bars). If the Result carries
    ``key + '_disc'`` (a Richardson discretisation estimate) and no ``atol`` is given, ``atol``
    defaults to its largest value over the second half of the horizon.
    """
    if key not in result:
        raise SettingsError(f"plateau: the result has no `{key}`; available: {sorted(result.keys())}.")
    y = _component(result[key], component)
    e = result.get(key + "_err")
    e = None if e is None else _component(e, component)
    reps = result.get(key + REPS)
    # a relative resolution of 1e-4 on top of the error bars, so that exact or deterministic
    # curves (e.g. M of ridge regression: no Monte Carlo, jackknife errors ~1e-6) are judged at a
    # meaningful precision rather than at round-off
    kw.setdefault("rtol", 1e-4)
    if "atol" not in kw and (key + "_disc") in result:
        d = _component(result[key + "_disc"], component)
        kw["atol"] = float(np.nanmax(d[d.size // 2:])) if d.size else 0.0
    kw.setdefault("reps", None if reps is None else _component(reps, component, lead=2))
    return detect_plateau(result.t, y, e, key=key, **kw)


def stationary_values(result, keys=None, **kw) -> dict:
    """Plateau tests for the one-time observables of ``result`` (train/test loss, metrics, Q, M).

    Returns ``{key: Plateau}``.
    """
    if keys is None:
        keys = [k for k in result.keys()
                if (k.startswith("train_") or k.startswith("test_") or k in ("Q", "M"))
                and not k.endswith(("_err", "_disc", "_coarse", "_fine", REPS)) and k != "test_loss_mc"
                and np.asarray(result[k]).shape[:1] == np.asarray(result.t).shape]
    return {k: plateau(result, k, **kw) for k in keys}


# -------------------------------------------------------------------------------------------------
# ridge regression: the stationary state solved directly
# -------------------------------------------------------------------------------------------------
def linreg_stationary(delta: float, sigma: float, tau: float, lam: float = 0.0, rho: float = 1.0,
                      *, dt: float | None = None) -> tuple[float, float]:
    """Stationary train and test loss of ridge regression under SGF (module docstring).

    Parameters
    ----------
    delta, sigma, tau, lam, rho : float
        Sample ratio, label noise, temperature, ridge, teacher second moment (theta^0 = 0).
    dt : float, optional
        Step of the Euler--Maruyama SGF (then exact for the discrete DMFT at that dt); ``None``:
        continuous time, equal to :func:`dmftgen.reference.volterra.noise_floor`.

    Returns
    -------
    (L_inf, E_inf) : floats, ``inf`` if the dynamics has no stationary state (tau above critical).
    """
    from ..reference.volterra import kernel_integrals, noise_floor

    if tau < 0 or delta <= 0 or lam < 0:
        raise SettingsError("linreg_stationary: need delta > 0, tau >= 0, lam >= 0.")
    L_gf, E_gf = noise_floor(delta, sigma, 0.0, lam, rho)
    ik, ikte = kernel_integrals(delta, tau, lam, dt=dt)
    if not (np.isfinite(ik) and ik < 1.0):
        return float("inf"), float("inf")
    L_inf = L_gf / (1.0 - ik)
    return float(L_inf), float(E_gf + L_inf * ikte)


def balance(Q, rl, ll, lam: float, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """B = 2 lam Q + E[r ell^T] + E[ell r^T] - tau E[ell ell^T] (= -dQ/dt of the SGF) and its scale
    2 lam |tr Q| + 2 |tr E r ell| + tau |tr E ell ell| from the curves Q, E_r_ell, E_ell_ell
    ((n, m, m) each). In a stationary state B vanishes up to O(dt) (the Euler step's
    (lam dt)^2 Q and dt^2 drift terms; removed by Richardson in ``solve_long``)."""
    B = 2 * lam * Q + rl + np.swapaxes(rl, 1, 2) - tau * ll
    scale = (2 * lam * np.abs(np.trace(Q, axis1=1, axis2=2)) + 2 * np.abs(np.trace(rl, axis1=1, axis2=2))
             + tau * np.abs(np.trace(ll, axis1=1, axis2=2)))
    return B, scale


def q_balance(result, lam: float | None = None, tau: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stationarity balance B(t) = 2 lam Q + E[r ell^T] + E[ell r^T] - tau E[ell ell^T] (= -dQ/dt).

    Needs a DMFT Result with ``E_r_ell`` and ``E_ell_ell`` (solve, solve_long). lam and tau
    default to the run's settings. Returns (B, scale), B of shape (n, m, m) and a scale
    2 lam |Q| + 2 |E r ell| + tau E ell^2 (n,) against which B is small in a stationary state
    (:func:`balance`). A solve of R replicas also carries B itself as ``Q_balance`` with the
    between-replica error ``Q_balance_err`` (the error of B, whose parts are correlated). With a
    declared regulariser H (lam = 0 there) dQ/dt has the term 2 sym E[theta h(theta)^T] more, which
    this B leaves out (such solves carry no ``Q_balance``).
    """
    for k in ("E_r_ell", "E_ell_ell", "Q"):
        if k not in result:
            raise SettingsError(f"q_balance: the result has no `{k}` (a DMFT result from solve or "
                                "solve_long is needed).")
    st = result.meta.get("settings", {})
    lam = float(st.get("lam", 0.0)) if lam is None else float(lam)
    tau = float(st.get("tau", 0.0)) if tau is None else float(tau)
    Q, rl, ll = (np.asarray(result[k], float) for k in ("Q", "E_r_ell", "E_ell_ell"))
    n = min(Q.shape[0], rl.shape[0], ll.shape[0])
    return balance(Q[:n], rl[:n], ll[:n], lam, tau)
