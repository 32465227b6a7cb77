r"""Stochastic gradient flow (docs/theory.md §1, section 1.3) by Euler--Maruyama.

Itô SDE, one scalar Brownian motion per sample,

.. math::

    d\theta = -\big(\lambda\theta + h(\theta)\big)dt - \tfrac1\delta X^\top dL,\qquad
    dL_i = \ell(r_i; s_i, z_i)\,\big(dt + \sqrt{\tau\delta}\,dB_i\big),\qquad r = X\theta,

discretised at the left end of each step (docs/theory.md §2, "Stochastic integrals": Itô, never a
midpoint rule),

.. math::

    \theta_{k+1} = \theta_k - \Delta t\,(\lambda\theta_k + h(\theta_k))
                   - \tfrac1\delta X^\top\big[\ell(X\theta_k)\odot(\Delta t + \sqrt{\tau\delta}\,\Delta B_k)\big],
    \qquad \Delta B_{k,i}\sim N(0,\Delta t)\ \text{i.i.d.}

Per step: two BLAS products (``thT @ X.T`` and ``GT @ X``) and two generated kernels
(``sim_sgf_increment``: ell, the noise multiply and the train observables of the current state in
one pass over the n samples; ``sim_apply_update``: the update and the overlaps Q, M of the new
state in one pass over the d rows). Matrix-free data (``data.X is None``) runs the same step
block by block, regenerating each block of rows of X from the seed: one pass over X per step,
memory O(BLOCK_ROWS d) instead of O(n d).
"""
from __future__ import annotations

import math

import numpy as np

from .path import Path, blowup_limit, check_state


def run_sgf(kern, data, p, *, delta, tau, lam, dt, n_steps, rng=None, increments=None,
            theta_rows=0, record=True, tick=None, schedule=None) -> tuple[Path, np.ndarray]:
    """Integrate the SGF for ``n_steps`` Euler--Maruyama steps of size ``dt`` from ``data.th0T``.

    Parameters
    ----------
    kern : module
        Generated kernels of the model (``dmftgen.codegen.load_kernels``).
    data : dmftgen.sim.data.SimData
        X, teacher, initial student, noise.
    p : ndarray
        Model parameter vector.
    delta, tau, lam, dt : float
        delta = n/d as used in the equation (the caller passes n/d of the drawn data), temperature,
        ridge, time step.
    n_steps : int
        Number of steps N; states 0..N are recorded at t_k = k dt.
    rng : numpy.random.Generator, optional
        Source of the Brownian increments, dB_k = sqrt(dt) * rng.standard_normal(n).
    increments : callable, optional
        ``increments(k) -> dB_k`` of shape (n,) (variance dt), overriding ``rng``; used by tests to
        feed nested Brownian paths.
    theta_rows : int
        Record the first ``theta_rows`` rows of theta at every time.
    record : bool
        Compute the train observables at every step (else only Q, M and the final state).
    tick : callable, optional
        ``tick(k)`` called after each step (progress bar).
    schedule : callable, optional
        Learning-rate schedule gamma(t) (``dmftgen.sim.schedule``): step k uses gamma(t_k) dt in
        the drift and gamma(t_k) sqrt(tau delta) in the noise.

    Returns
    -------
    (Path, thT)
        The record and the final parameters (m, d). On divergence the record is cut at the last
        sane state (``path.n_done``) and ``path.status == "diverged"``.
    """
    s, z, thsT = data.s, data.z, data.thsT
    n, d = data.n, data.d
    m = data.th0T.shape[0]
    k = thsT.shape[0]
    nmet = int(kern.NMET)
    if increments is None:
        if rng is None:
            raise ValueError("run_sgf needs `rng` or `increments`")
        sq = math.sqrt(dt)

        def increments(_k):
            dB = rng.standard_normal(n)
            dB *= sq
            return dB

    times = dt * np.arange(n_steps + 1)
    path = Path.empty(times, m, k, nmet, theta_rows)
    thT = data.th0T.copy()
    gradT = np.empty((m, d))
    gtmp = np.empty((m, d)) if data.matrix_free else None
    Q = np.empty((m, m))
    Mo = np.empty((m, k))
    met = np.zeros(nmet)
    c = math.sqrt(tau * delta)
    inv_delta = 1.0 / delta
    inv_n, inv_d = 1.0 / n, 1.0 / d
    limit = blowup_limit(thT, thsT)
    bufs = {}
    gam = np.ones(n_steps) if schedule is None else schedule(times[:-1])
    step_dt, step_c = dt, c

    def buffers(rows):
        if rows not in bufs:
            bufs[rows] = (np.empty((m, rows)), np.empty((m, rows)))
        return bufs[rows]

    def sweep(dB, obs, grad):
        """One pass over the samples (all of X, or block by block when matrix-free):
        r = X theta, G = ell (dt + c dB), train observables, and X^T G into gradT."""
        met[:] = 0.0
        loss_sum, nbad = 0.0, 0
        first = True
        for sl, Xb in data.blocks():
            RT, GT = buffers(sl.stop - sl.start)
            np.matmul(thT, Xb.T, out=RT)
            if grad:
                ls, nb = kern.sim_sgf_increment(RT, s[sl], z[sl], p, dB[sl], step_dt, step_c, GT, met,
                                                obs)
                nbad += nb
                if first:
                    np.matmul(GT, Xb, out=gradT)
                else:  # matrix-free: accumulate the blocks' X_b^T G_b
                    np.matmul(GT, Xb, out=gtmp)
                    np.add(gradT, gtmp, out=gradT)
            else:
                ls = kern.sim_train_observables(RT, s[sl], z[sl], p, met)
            loss_sum += ls
            first = False
        return loss_sum, nbad

    amax = kern.sim_overlaps(thT, thsT, Q, Mo)
    why = check_state(Q * inv_d, amax, limit)
    if why:
        path.diverge(0.0, why)
        return path, thT
    path.Q[0] = Q * inv_d
    path.M[0] = Mo * inv_d
    try:
        for step in range(n_steps):
            step_dt, step_c = gam[step] * dt, gam[step] * c
            loss_sum, nbad = sweep(increments(step), record, True)
            if record:
                path.train_loss[step] = loss_sum * inv_n
                path.train_metrics[step] = met * inv_n
            if path.rows is not None:
                path.rows[step] = thT[:, :theta_rows].T
            if nbad:
                path.n_done = step  # state `step` itself is already non-finite under ell
                path.diverge(times[step], f"ell is NaN/inf for {nbad} sample(s)")
                return path, thT
            path.n_done = step + 1
            amax = kern.sim_apply_update(thT, gradT, p, lam, step_dt, inv_delta, thsT, Q, Mo)
            Qn = Q * inv_d
            why = check_state(Qn, amax, limit)
            if why:
                path.diverge(times[step + 1], why)
                return path, thT
            path.Q[step + 1] = Qn
            path.M[step + 1] = Mo * inv_d
            if tick is not None:
                tick(step)
    except KeyboardInterrupt:
        path.interrupt(times[path.n_done])
        return path, thT
    # train observables of the final state
    loss_sum, _ = sweep(None, True, False)
    path.train_loss[n_steps] = loss_sum * inv_n
    path.train_metrics[n_steps] = met * inv_n
    if path.rows is not None:
        path.rows[n_steps] = thT[:, :theta_rows].T
    path.n_done = n_steps + 1
    return path, thT
