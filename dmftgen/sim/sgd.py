r"""Minibatch SGD (docs/theory.md §1, section 1.2) reported on the SGF clock t = k eta / d.

.. math::

    \theta^{k+1} = \theta^k - \eta\Big[\tfrac1d\big(\lambda\theta^k + h(\theta^k)\big)
                   + \tfrac1B\sum_{i\in S_k} x_i\,\ell(x_i^\top\theta^k; s_i, z_i)^\top\Big],

with :math:`S_k` a uniform minibatch of size B (i.i.d. indices with replacement, or a uniform
B-subset without), independent across steps. The mean step is :math:`(\eta/d)` times the SGF
drift and the noise covariance matches the SGF's with :math:`\tau=\eta/B` up to the rank-one
mean term and the factor (n-B)/(n-1) (docs/theory.md §1).

The steps between two recorded times run inside one generated kernel (``sim_sgd_steps``), which
indexes the minibatch rows of X in place; the driver only draws the uniforms that pick the
minibatches. At each recorded time the full r = X theta is formed by BLAS for the train
observables.
"""
from __future__ import annotations

import numpy as np

from .path import Path, blowup_limit, check_state

#: uniforms drawn per chunk (bounds the memory of a long stretch between two records)
_CHUNK = 1 << 20


def sgd_step_indices(times: np.ndarray, eta: float, d: int) -> np.ndarray:
    """Step numbers k nearest to the requested SGF times, k = round(t d / eta)."""
    return np.rint(np.asarray(times) * d / eta).astype(np.int64)


def run_sgd(kern, data, p, *, lam, eta, batch, replace, times, rng, theta_rows=0,
            tick=None, schedule=None) -> tuple[Path, np.ndarray]:
    """Run minibatch SGD from ``data.th0T`` and record at the steps nearest to ``times``.

    Parameters
    ----------
    kern, data, p :
        Generated kernels, run data, parameter vector (as for ``run_sgf``).
    lam : float
        Ridge strength.
    eta : float
        Learning rate; SGF time advances by eta/d per step.
    batch : int
        Minibatch size B (1 <= B <= n).
    replace : bool
        Draw the B indices with replacement (i.i.d.) or as a uniform subset.
    times : ndarray
        Requested SGF times (increasing, from 0); the record holds the actual times k eta / d.
    rng : numpy.random.Generator
        Source of the minibatch uniforms.
    theta_rows : int
        Record the first ``theta_rows`` rows of theta.
    tick : callable, optional
        ``tick(j)`` after record j.
    schedule : callable, optional
        gamma(t) (``dmftgen.sim.schedule.Schedule``): step k uses eta_k = eta * gamma(k eta / d).

    Returns
    -------
    (Path, thT)
    """
    X, s, z, thsT = data.X, data.s, data.z, data.thsT
    n, d = X.shape
    m = data.th0T.shape[0]
    k = thsT.shape[0]
    nmet = int(kern.NMET)
    ks = sgd_step_indices(times, eta, d)
    path = Path.empty(ks * (eta / d), m, k, nmet, theta_rows)
    thT = data.th0T.copy()
    RT = np.empty((m, n))
    Q = np.empty((m, m))
    Mo = np.empty((m, k))
    met = np.zeros(nmet)
    mark = np.zeros(n, dtype=np.bool_)
    idx = np.empty(batch, dtype=np.int64)
    limit = blowup_limit(thT, thsT)
    inv_n, inv_d = 1.0 / n, 1.0 / d
    XT = X.T
    rows_per_chunk = max(1, _CHUNK // batch)

    done = 0  # SGD steps taken so far
    try:
        for j, kj in enumerate(ks):
            while done < kj:
                steps = int(min(kj - done, rows_per_chunk))
                u = rng.random((steps, batch))
                if schedule is None:
                    etas = np.full(steps, eta)
                else:
                    etas = eta * schedule((done + np.arange(steps)) * (eta / d))
                nbad = kern.sim_sgd_steps(X, thT, s, z, p, u, replace, etas, lam, mark, idx)
                if nbad:
                    path.diverge(done * eta / d, f"ell is NaN/inf in a minibatch between steps "
                                 f"{done} and {done + steps}")
                    return path, thT
                done += steps
            amax = kern.sim_overlaps(thT, thsT, Q, Mo)
            why = check_state(Q * inv_d, amax, limit)
            if why:
                path.diverge(path.t[j], why)
                return path, thT
            np.matmul(thT, XT, out=RT)
            met[:] = 0.0
            path.train_loss[j] = kern.sim_train_observables(RT, s, z, p, met) * inv_n
            path.train_metrics[j] = met * inv_n
            path.Q[j] = Q * inv_d
            path.M[j] = Mo * inv_d
            if path.rows is not None:
                path.rows[j] = thT[:, :theta_rows].T
            path.n_done = j + 1
            if tick is not None:
                tick(j)
    except KeyboardInterrupt:
        path.interrupt(done * eta / d)
    return path, thT
