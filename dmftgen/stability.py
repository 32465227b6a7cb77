r"""Unstable growth of a finished run: status ``unstable`` instead of a silent ``ok``.

A run that stays finite but grows without bound (SGF beyond its critical temperature) is not a
valid learning curve.  :func:`flag_instability` marks such a result, from two independent signs:

1. **Stability criterion** (exact for affine ell with constant Jacobian J = c I): linear
   regression in the time t' = c t with tau' = c tau, lam' = lam / c, dt' = c dt, whose SGF
   is stable iff tau' < tau_c(delta, lam') (Volterra criterion,
   :func:`dmftgen.reference.volterra.critical_tau`; with the Euler step, the discrete-time
   criterion at dt').  The same criterion ``compare`` warns about (there also as a heuristic
   for nonlinear ell; here only where it is exact).
   Not applied with a learning-rate schedule (the effective temperature is tau gamma(t)).
2. **Growth of the loss by many orders**: max_t L(t) >= GROWTH * L(0) for the train or test
   loss (GROWTH = 1e6), for any model.

Only a result with status "ok" (or "inaccurate") is changed; diverged / interrupted /
not-converged results keep their status.  The evidence goes to ``meta["stability"]``.
"""
from __future__ import annotations

import numpy as np

#: loss growth factor counted as unstable
GROWTH = 1e6


def linear_slope(kern, model, p, n: int = 256) -> float | None:
    """c if ell is affine with Jacobian J = c I on probe samples (r = 0, teacher and noise from
    their laws, fixed seed), else None (criterion not exact)."""
    if not getattr(kern, "LINEAR_ELL", False):
        return None
    m, k = int(kern.M), int(kern.K)
    rng = np.random.default_rng(0)
    s = np.ascontiguousarray(model.teacher_std_value(p) * rng.standard_normal((n, k)))
    z = np.empty((n, len(model.noise)))
    for j, law in enumerate(model.noise.values()):
        z[:, j] = law.sample(rng, n)
    J = np.empty((n, m, m))
    kern.jac_ell_batch(np.zeros((n, m)), s, np.ascontiguousarray(z), np.ascontiguousarray(p, dtype=float), J)
    c = float(J[0, 0, 0])
    if not (np.all(np.isfinite(J)) and np.allclose(J, c * np.eye(m), rtol=1e-12, atol=1e-14)) or c <= 0:
        return None
    return c


def criterion(kern, model, settings) -> dict | None:
    """The exact stability criterion, or None where it does not apply.

    Returns
    -------
    dict with ``c``, ``tau_c`` (continuous time, in units of tau), ``tau_c_dt`` (Euler grid),
    ``stable`` (bool).
    """
    from .reference.volterra import critical_tau

    p = model.param_vector(settings.params)
    c = linear_slope(kern, model, p)
    if c is None:
        return None
    tau, lam, dt, delta = settings.tau, settings.lam, settings.dt, settings.delta
    tc = critical_tau(delta, lam / c) / c
    tcd = critical_tau(delta, lam / c, dt=c * dt) / c
    stable = (tau < tc and tau < tcd) if tau > 0 else tcd > 0
    return {"c": c, "tau_c": tc, "tau_c_dt": tcd, "stable": bool(stable)}


def advice(tau, tau_c, tau_c_dt, dt) -> str:
    """What to lower for a run at temperature ``tau`` > 0 that is beyond a limit: ``tau_c`` the
    flow's, ``tau_c_dt`` the Euler grid's at ``dt`` (both in units of tau, as :func:`criterion`
    gives them). The limit to quote is the smaller; a grid unstable at every tau (tau_c_dt = 0,
    gradient descent included) needs a smaller dt, not a smaller tau. Used by
    :func:`flag_instability` and the pre-run warnings (dmftgen.analysis.diagnostics)."""
    if tau_c_dt <= 0:
        return (f"Lower --dt (the grid dt = {dt:g} is unstable at any tau)"
                + (f" and --tau below {tau_c:.4g}" if tau >= tau_c else ""))
    return (f"Lower --tau below {min(tau_c, tau_c_dt):.4g}"
            + (f" (at dt = {dt:g}; {tau_c:.4g} as dt -> 0)" if tau_c_dt < tau_c else ""))


def loss_growth(result) -> tuple[float, str] | None:
    """(largest max_t L(t) / L(0) over train and test loss, which), None if not measurable."""
    best = None
    for key in ("train_loss", "test_loss"):
        if key not in result:
            continue
        v = np.asarray(result[key], dtype=float)
        v = v[np.isfinite(v)]
        if len(v) < 2 or not v[0] > 0:
            continue
        g = float(v.max() / v[0])
        if best is None or g > best[0]:
            best = (g, key)
    return best


def flag_instability(result, kern, model, settings):
    """Set ``result.status = "unstable"`` (with a message) if a sign of unstable growth shows.

    Returns the same Result object (changed in place).
    """
    if result.status not in ("ok", "inaccurate"):
        return result
    # a learning-rate schedule changes the effective temperature over time (tau gamma(t)): the
    # constant-tau criterion does not apply, the growth test still does
    crit = None if result.meta.get("schedule") else criterion(kern, model, settings)
    growth = loss_growth(result)
    reasons = []
    # an Euler grid unstable at every tau (tau_c_dt = 0: gradient descent itself diverges) needs a
    # smaller dt; "lower --tau below 0" was the advice
    grid_bad = crit is not None and not crit["stable"] and settings.tau > 0 and crit["tau_c_dt"] <= 0
    if grid_bad:
        reasons.append(f"the Euler grid dt = {settings.dt:g} is unstable at any tau (gradient descent "
                       f"included; slope c = {crit['c']:.4g})")
    elif crit is not None and not crit["stable"]:
        lim = min(crit["tau_c"], crit["tau_c_dt"]) if settings.tau > 0 else None
        reasons.append(
            (f"tau = {settings.tau:g} is beyond the stability limit {lim:.4g} of this model (Volterra "
             f"criterion, exact for affine ell with slope c = {crit['c']:.4g}"
             + (", Euler grid included" if crit["tau_c_dt"] < crit["tau_c"] else "") + ")")
            if settings.tau > 0 else f"gradient descent with dt = {settings.dt:g} is unstable (slope c = "
                                     f"{crit['c']:.4g})")
    if growth is not None and growth[0] >= GROWTH:
        reasons.append(f"the {growth[1].replace('_', ' ')} grew by a factor {growth[0]:.3g} from t = 0")
    result.meta["stability"] = {"criterion": crit, "loss_growth": None if growth is None else growth[0],
                                "growth_threshold": GROWTH}
    if reasons:
        hint = (" " + advice(settings.tau, crit["tau_c"], crit["tau_c_dt"], settings.dt) if crit and settings.tau > 0
                else " Lower --tau or --dt")
        result.status = "unstable"
        result.message = ("unstable growth: " + "; ".join(reasons) + ". The curves are kept but are not a "
                          "valid learning curve." + hint + ".")
    return result
