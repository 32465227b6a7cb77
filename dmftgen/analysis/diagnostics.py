r"""Assumption checks of ``dmftgen compare`` (printed and recorded, never silent; math.md 1.5):

* ell not globally Lipschitz in r, or its Jacobian not Lipschitz (A2): sup |grad_r ell| and a
  finite-difference Hessian bound on growing probe boxes |r_a| <= R, R = 1, 4, 16, 64;
* tau at or beyond the stability limit: the Volterra criterion of
  :func:`dmftgen.reference.volterra.critical_tau` applied to the linearisation with slope c
  (exact for affine ell, c = ||grad ell||: ell = c (r - y) is linear regression in the time
  t' = c t with tau' = c tau, lam' = lam / c, dt' = c dt; for nonlinear ell a heuristic with the
  typical slope c = ||E grad ell|| over the probes);
* labels discontinuous in the teacher field (formally outside A2; the solver uses the Stein route);
* runs that diverged or did not converge (``status``), non-finite values, large minibatches.
"""
from __future__ import annotations

import numpy as np

__all__ = ["lipschitz_probe", "assumption_warnings"]


def _probe_inputs(model, p, n, rng):
    m, k = model.m, model.k
    u = rng.uniform(-1.0, 1.0, size=(n, m))
    u[: min(n, 2 * m)] = 0.0
    for a in range(min(m, n // 2)):  # the box corners along the axes (where growth shows first)
        u[2 * a, a], u[2 * a + 1, a] = 1.0, -1.0
    std = model.teacher_std_value(p)
    s = std * rng.standard_normal((n, k))
    z = np.empty((n, len(model.noise)))
    for j, law in enumerate(model.noise.values()):
        z[:, j] = law.sample(rng, n)
    return u, np.ascontiguousarray(s), np.ascontiguousarray(z)


def lipschitz_probe(model, kern, p, radii=(1.0, 4.0, 16.0, 64.0), n=4000, seed=0) -> dict:
    """sup ||grad_r ell|| (spectral) and a finite-difference bound of the Hessian on boxes |r_a| <= R.

    Probes: r uniform in the box (plus its axis corners), s ~ N(0, teacher_std^2), z from the
    noise laws.

    Returns
    -------
    dict with ``radii``, ``jac_sup`` (len(radii),), ``jac_mean`` (spectral norm of the symmetric
    part of the probe-averaged Jacobian, a typical slope like Gamma), ``hess_sup``, ``finite``.
    """
    rng = np.random.default_rng(seed)
    m = model.m
    u, s, z = _probe_inputs(model, p, n, rng)
    p = np.ascontiguousarray(p, dtype=np.float64)
    J = np.empty((n, m, m))
    J2 = np.empty((n, m, m))
    ell = np.empty((n, m))
    jac_sup, jac_mean, hess_sup, finite = [], [], [], True
    h = 1e-5
    for R in radii:
        r = np.ascontiguousarray(R * u)
        with np.errstate(all="ignore"):
            kern.ell_batch(r, s, z, p, ell)
            kern.jac_ell_batch(r, s, z, p, J)
        if not (np.all(np.isfinite(ell)) and np.all(np.isfinite(J))):
            finite = False
            jac_sup.append(np.inf)
            jac_mean.append(np.inf)
            hess_sup.append(np.inf)
            continue
        jac_sup.append(float(np.max(np.linalg.norm(J, ord=2, axis=(1, 2)))))
        Jm = J.mean(axis=0)
        jac_mean.append(float(np.linalg.norm(0.5 * (Jm + Jm.T), ord=2)))
        hs = 0.0
        for b in range(m):
            r2 = r.copy()
            r2[:, b] += h
            with np.errstate(all="ignore"):
                kern.jac_ell_batch(np.ascontiguousarray(r2), s, z, p, J2)
            if np.all(np.isfinite(J2)):
                hs = max(hs, float(np.max(np.abs(J2 - J))) / h)
        hess_sup.append(hs)
    return {"radii": list(radii), "jac_sup": jac_sup, "jac_mean": jac_mean, "hess_sup": hess_sup,
            "finite": finite}


def assumption_warnings(model, kern, settings, p, *, method=None, batch=None, n=None) -> list:
    """Warnings (strings) for a model/settings pair that leaves the theory's assumptions.

    See the module docstring for the checks and their justification.
    """
    from ..reference.volterra import critical_tau
    from ..stability import advice

    out = []
    probe = lipschitz_probe(model, kern, p)
    js, hs = probe["jac_sup"], probe["hess_sup"]
    if not probe["finite"]:
        bad = next(R for R, v in zip(probe["radii"], js) if not np.isfinite(v))
        out.append(f"ell or its Jacobian is not finite at |r| <= {bad:g}: the loss is not globally "
                   "Lipschitz (assumption A2); the theory does not apply.")
    else:
        # Growth by more than 4x from R = 4 to R = 64 means super-linear growth of ell (a bounded
        # Jacobian may still vary by O(1) between boxes, e.g. tanh', but not keep growing).
        if js[-1] > 4.0 * max(js[1], 1e-12) and js[-1] > 1e-8:
            out.append(f"grad_r ell grows with |r| (sup ||grad ell|| = {js[1]:.3g} on |r| <= 4, "
                       f"{js[-1]:.3g} on |r| <= 64): ell is not globally Lipschitz in r "
                       "(assumption A2, e.g. a polynomial loss of degree > 2); Theorem 2 does not "
                       "cover this model and the simulation may blow up.")
        elif hs[-1] > 4.0 * max(hs[1], 1e-12) and hs[-1] > 1e-6:
            out.append(f"the Jacobian of ell is not Lipschitz in r (finite-difference Hessian bound "
                       f"{hs[1]:.3g} on |r| <= 4, {hs[-1]:.3g} on |r| <= 64; assumption A2).")
    if getattr(kern, "DISCONTINUOUS", False):
        out.append("labels are discontinuous in the teacher field (jump in s): formally outside "
                   "assumption A2; the DMFT uses the Stein route for the teacher drift nu "
                   "(numerically validated, not covered by Theorem 2 as stated).")
    tau, lam, dt, delta = settings.tau, settings.lam, settings.dt, settings.delta
    exact = bool(getattr(kern, "LINEAR_ELL", False))
    # Slope of the linearisation: for affine ell the Jacobian is constant and the criterion is
    # exact; for nonlinear ell the worst case sup ||grad ell|| is far too pessimistic (it is
    # reached only at rare (r, s, z)), so the probe-averaged Jacobian on |r| <= 1 and <= 4 (a
    # typical slope, like Gamma = E grad ell) is used and the warning says "may".
    slopes = js[:2] if exact else probe["jac_mean"][:2]
    c = max(v for v in slopes if np.isfinite(v)) if np.isfinite(slopes[0]) else np.inf
    if tau > 0 and c > 0 and np.isfinite(c):
        tc = critical_tau(delta, lam / c)
        what = ("the SGF is unstable (Volterra criterion, exact for affine ell)" if exact else
                "beyond the linearised stability limit (Volterra criterion with the typical slope "
                "c = |E grad ell| over probes); the dynamics may blow up")
        tcd = critical_tau(delta, lam / c, dt=c * dt)
        if tau * c >= tc:
            # the advice includes the Euler grid's own limit (below tau_c): "below 2" at dt 0.05
            # left tau = 1.95 unstable where the run's message said "below 1.924"
            out.append(f"tau = {tau:g} with slope c = {c:.3g}: tau*c = {tau * c:.3g} >= tau_c = {tc:.3g}: "
                       f"{what}. {advice(tau, tc / c, tcd / c, dt)}.")
        else:
            if tau * c >= tcd:
                out.append(f"the Euler grid dt = {dt:g} {'is' if exact else 'may be'} unstable at "
                           f"tau = {tau:g} (discrete-time criterion tau*c < {tcd:.3g}, slope c = {c:.3g}); "
                           "reduce --dt.")
    elif tau == 0 and np.isfinite(c) and c > 0:
        tcd = critical_tau(delta, lam / c, dt=c * dt)
        if tcd == 0:
            out.append(f"gradient descent with step dt = {dt:g} {'is' if exact else 'may be'} unstable "
                       f"(slope c = {c:.3g}); reduce --dt.")
    if method == "sgd" and batch is not None and n is not None and batch > 0.1 * n:
        out.append(f"minibatch B = {batch} is not small against n = {n}: SGD noise is smaller than the "
                   f"SGF's by the factor (n - B)/(n - 1) = {(n - batch) / (n - 1):.2f} (the SGF limit "
                   "assumes B = o(n)).")
    return out
