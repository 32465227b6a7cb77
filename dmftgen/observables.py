"""Observables defined once, evaluated for both simulation and theory.

Test loss and test metrics are Gaussian expectations: for a fresh x ~ N(0, I/d), the pair of
pre-activations (w, r*) = (x^T theta, x^T theta*) is exactly N(0, [[Q, M], [M^T, rho]]) given
theta, so simulation (with its own Q, M, rho_hat) and DMFT (with its Q(t), M(t), rho) use the
same formula (docs/theory.md §4).  The expectation is taken on one fixed quasi-Monte Carlo
sample of standard normals and label noises (common random numbers): its small integration error
is the same for both curves and cancels in their difference.
"""
from __future__ import annotations

import functools

import numpy as np

#: Size and seed of the common-random-number sample.
N_TEST = 1 << 16
TEST_SEED = 20260206


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix via eigh (Q may be singular, e.g. theta^0 = 0)."""
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def common_sample(model, n: int = N_TEST, seed: int = TEST_SEED):
    """Standard normals xi (n, m + k) and label noises z (n, NZ) shared by every evaluation.

    Cached per (m, k, noise laws, n, seed): every simulation seed and every solve reuses it.
    """
    return _common_sample(model.m, model.k, tuple(model.noise_laws), n, seed)


@functools.lru_cache(maxsize=8)
def _common_sample(m, k, laws, n, seed):
    """The sample behind :func:`common_sample`.

    A scrambled Sobol sequence mapped through the inverse CDFs (quasi-Monte Carlo): for the
    smooth integrands of the losses its error decays almost like 1/n instead of 1/sqrt(n) (for
    linreg at n = 2^16 the test loss is exact to ~1e-5 instead of ~3e-3), which matters when
    curves are compared with closed forms.  Discontinuous metrics (0-1 error) still converge.
    """
    from scipy.special import ndtri
    from scipy.stats import qmc

    nz = len(laws)
    dim = m + k + nz
    u = qmc.Sobol(d=max(dim, 1), scramble=True, seed=seed).random(n)
    # keep away from 0 and 1 so that ndtri stays finite
    u = np.clip(u, 0.5 / n, 1.0 - 0.5 / n)
    xi = ndtri(u[:, : m + k])
    z = np.empty((n, nz))
    for j, law in enumerate(laws):
        uj = u[:, m + k + j]
        z[:, j] = {"normal": lambda v: ndtri(v), "uniform": lambda v: v,
                   "rademacher": lambda v: np.where(v < 0.5, -1.0, 1.0)}[law](uj)
    # shared by every caller (cached): callers must not write into these arrays
    return np.ascontiguousarray(xi), np.ascontiguousarray(z)


def test_observables(kern, model, Q, Mo, rho, p, *, n: int = N_TEST, seed: int = TEST_SEED) -> dict:
    """Test loss and metrics E[L(w; r*, z)] for (w, r*) ~ N(0, [[Q, M], [M^T, rho]]).

    Parameters
    ----------
    kern : generated kernel module
    Q : array (T, m, m)
    Mo : array (T, m, k)
    rho : array (k, k) or (T, k, k)
    p : parameter vector

    Returns
    -------
    dict with ``test_loss`` (T,) and ``test_<metric>`` (T,) for each declared metric, plus
    ``test_loss_mc`` (T,), the standard error of the common sample (for reference only).
    """
    m, k = model.m, model.k
    Q = np.asarray(Q, dtype=float).reshape(-1, m, m)
    T = Q.shape[0]
    Mo = np.asarray(Mo, dtype=float).reshape(T, m, k)
    rho = np.asarray(rho, dtype=float)
    # k = 0 (no teacher): rho has size 0 and reshape(-1, 0, 0) is ambiguous.
    rho = np.broadcast_to(rho.reshape((-1, k, k)) if k else np.zeros((1, 0, 0)), (T, k, k))
    xi, z = common_sample(model, n, seed)
    p = np.ascontiguousarray(p, dtype=np.float64)
    loss = np.empty(n)
    met = np.empty((n, len(model.metrics)))
    out = {"test_loss": np.full(T, np.nan), "test_loss_mc": np.full(T, np.nan)}
    for name in model.metrics:
        out[f"test_{name}"] = np.full(T, np.nan)
    for t in range(T):
        cov = np.zeros((m + k, m + k))
        cov[:m, :m] = Q[t]
        cov[:m, m:] = Mo[t]
        cov[m:, :m] = Mo[t].T
        cov[m:, m:] = rho[t]
        if not np.all(np.isfinite(cov)):
            continue
        g = xi @ _sqrt_psd(cov)
        r = np.ascontiguousarray(g[:, :m])
        s = np.ascontiguousarray(g[:, m:])
        kern.loss_batch(r, s, z, p, loss)
        out["test_loss"][t] = loss.mean()
        out["test_loss_mc"][t] = loss.std() / np.sqrt(n)
        if model.metrics:
            kern.metrics_batch(r, s, z, p, met)
            for q, name in enumerate(model.metrics):
                out[f"test_{name}"][t] = met[:, q].mean()
    return out


# Not a pytest test despite the name (test files import it).
test_observables.__test__ = False
