"""Direct empirical-risk minimisation at finite d: the independent reference of the tau = 0 stationary state.

    theta_hat = argmin_theta  sum_i L(x_i^T theta; r*_i, z_i) + (delta lam / 2) ||theta||_F^2

(the SGF risk of math.md 1.2 times n; its gradient flow is the SGF at tau = 0, whose stationary
point this is). Data (X, theta*, z) come from :func:`dmftgen.sim.data.draw_data`, the loss and its
gradient from the generated kernels; L-BFGS (scipy) from theta^0 of the data, to a gradient norm
far below the finite-d fluctuations. Returns the train loss, test loss/metrics from the same
Gaussian formula as the DMFT (:func:`dmftgen.observables.test_observables`, empirical Q, M, rho),
Q, M and the rows of theta_hat.
"""
from __future__ import annotations

import numpy as np


def erm(model, settings, d: int, *, seed_index: int = 0, gtol: float = 1e-10, maxiter: int = 5000) -> dict:
    from scipy.optimize import minimize

    from ..codegen import load_kernels
    from ..observables import test_observables
    from ..sim.data import draw_data

    kern = load_kernels(model)
    p = model.param_vector(settings.params)
    n = int(round(settings.delta * d))
    data = draw_data(model, p, n, d, settings.seed, seed_index)
    X, s, z = data.X, data.s, data.z
    m = model.m
    reg = settings.delta * settings.lam
    loss = np.empty(n)
    g = np.empty((n, m))

    def f(x):
        th = x.reshape(m, d)
        r = np.ascontiguousarray(X @ th.T)
        kern.loss_batch(r, s, z, p, loss)
        kern.ell_batch(r, s, z, p, g)
        val = loss.sum() + 0.5 * reg * (th * th).sum()
        grad = (g.T @ X) + reg * th
        return val, grad.ravel()

    x0 = np.ascontiguousarray(data.th0T).ravel()
    opt = minimize(f, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter, "gtol": gtol, "ftol": 1e-15, "maxcor": 30})
    th = opt.x.reshape(m, d)
    r = np.ascontiguousarray(X @ th.T)
    kern.loss_batch(r, s, z, p, loss)
    out = {"train_loss": float(loss.mean())}
    if model.metrics:
        met = np.empty((n, len(model.metrics)))
        kern.metrics_batch(r, s, z, p, met)
        for j, name in enumerate(model.metrics):
            out[f"train_{name}"] = float(met[:, j].mean())
    Q = th @ th.T / d
    M = th @ data.thsT.T / d
    tst = test_observables(kern, model, Q[None], M[None], data.rho, p)
    for key, v in tst.items():
        if key != "test_loss_mc":
            out[key] = float(v[0])
    kern.ell_batch(r, s, z, p, g)
    out.update(Q=Q, M=M, rho=data.rho, theta=th.T.copy(), theta_star=data.thsT.T.copy(),
               grad_norm=float(np.linalg.norm((g.T @ X) + reg * th) / np.sqrt(d)), success=bool(opt.success),
               nit=int(opt.nit))
    return out


__all__ = ["erm"]
