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
#: Times at which :func:`test_gradients` differentiates (linear interpolation in between).
GRAD_NODES = 24


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix via eigh (Q may be singular, e.g. theta^0 = 0)."""
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def common_sample(model, n: int = N_TEST, seed: int = TEST_SEED):
    """Standard normals xi (n, m + k) and label noises z (n, NZ) shared by every evaluation.

    Cached per (m, k, noise laws, n, seed): every simulation seed and every solve reuses it.
    """
    return _common_sample(model.m, model.k, tuple(model.noise_laws), n, seed)


#: Bits of the scrambled Sobol points: each is a multiple of 2^-SOBOL_BITS, 0 included.
SOBOL_BITS = 30


def sobol_uniforms(dim: int, n: int, rng) -> np.ndarray:
    """n points (n, dim) of a scrambled Sobol sequence (randomised quasi-Monte Carlo), each moved
    to the midpoint of its cell of width 2^-SOBOL_BITS, so that quantile functions stay finite
    (|ndtri| <= 6.2) and every average stays unbiased to O(2^-SOBOL_BITS). The first
    2^ceil(log2 n) points are drawn (the balanced size) and the first n kept: any prefix of the
    randomised sequence is still an unbiased sample of the uniform law.

    Not a clip to [0.5/n, 1 - 0.5/n] (before the fifth session of 2026-12-06): one point of the n
    lies in [0, 1/n) in every coordinate, half the time below 0.5/n, and moving it there cut the
    Gaussian tails: the second moment of ndtri(u) fell by ~2/n (measured -0.0200 +- 0.0011 at
    n = 100), biasing a solve's t = 0 train loss by -1.7 % at 100 paths per replica and the
    common test sample by -3e-5 (tests/test_observables.py)."""
    from scipy.stats import qmc

    u = qmc.Sobol(d=max(int(dim), 1), scramble=True, bits=SOBOL_BITS,
                  seed=rng).random_base2(max(int(n) - 1, 1).bit_length())[:n]
    return u + 2.0 ** -(SOBOL_BITS + 1)


@functools.lru_cache(maxsize=8)
def _common_sample(m, k, laws, n, seed):
    """The sample behind :func:`common_sample`.

    A scrambled Sobol sequence mapped through the inverse CDFs (quasi-Monte Carlo): for the
    smooth integrands of the losses its error decays almost like 1/n instead of 1/sqrt(n) (for
    linreg at n = 2^16 the test loss is exact to ~1e-5 instead of ~3e-3), which matters when
    curves are compared with closed forms.  Discontinuous metrics (0-1 error) still converge.
    """
    from scipy.special import ndtri

    from .model import Noise

    nz = len(laws)
    u = sobol_uniforms(m + k + nz, n, seed)
    xi = ndtri(u[:, : m + k])
    z = np.empty((n, nz))
    for j, law in enumerate(laws):
        z[:, j] = Noise(law).ppf(u[:, m + k + j])
    # shared by every caller (cached): callers must not write into these arrays
    return np.ascontiguousarray(xi), np.ascontiguousarray(z)


def test_observables(kern, model, Q, Mo, rho, p, *, n: int = N_TEST, seed: int = TEST_SEED) -> dict:
    """Test loss and metrics E[L(w; r*, z)] for (w, r*) ~ N(0, [[Q, M], [M^T, rho]]).

    On the common sample (xi_w, xi_*, z), teacher first: r* = xi_* rho^(1/2) and
    w = M rho^+ r* + (Q - M rho^+ M^T)^(1/2) xi_w (the conditional law of w given r*; symmetric
    PSD square roots, so singular Q, e.g. theta^0 = 0, is fine). r* and with it every label is the
    same at all times (given rho): a discontinuous teacher's labels do not flip from one time to
    the next, so the 0-1 error moves with the dynamics only (tests/test_observables.py), and the
    part of the loss and metrics that depends on (r*, z) alone is evaluated once
    (``aux_batch``; the kernels ``loss_aux_batch``, ``metrics_aux_batch`` take it).

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
    rho = _per_time(rho, k, T)
    xi, z = common_sample(model, n, seed)
    p = np.ascontiguousarray(p, dtype=np.float64)
    loss = np.empty(n)
    met = np.empty((n, len(model.metrics)))
    out = {"test_loss": np.full(T, np.nan), "test_loss_mc": np.full(T, np.nan)}
    for name in model.metrics:
        out[f"test_{name}"] = np.full(T, np.nan)
    s, rho_s = None, None
    for t in range(T):
        if not (np.all(np.isfinite(Q[t])) and np.all(np.isfinite(Mo[t])) and np.all(np.isfinite(rho[t]))):
            continue
        if s is None or not np.array_equal(rho[t], rho_s):
            # teacher first: r* = xi_s rho^(1/2) is the same at every time with the same rho, so
            # the labels of the common sample do not flip from one time to the next
            rho_s = rho[t]
            s = xi[:, m:] @ _sqrt_psd(rho_s)
            rho_pinv = np.linalg.pinv(rho_s, hermitian=True)
            sx = np.concatenate([s, xi[:, :m]], axis=1)   # (r*, xi_w): r is one product with it
            # the labels' part of the loss and metrics, once (dmftgen/codegen/labels.py)
            aux = np.empty((n, int(kern.NAUX)))
            kern.aux_batch(s, z, p, aux)
        # w | r* ~ N(M rho^+ r*, Q - M rho^+ M^T): the law of (w, r*) the joint square root gave
        A = Mo[t] @ rho_pinv
        r = sx @ np.concatenate([A.T, _sqrt_psd(Q[t] - A @ Mo[t].T)])
        kern.loss_aux_batch(r, aux, p, loss)
        out["test_loss"][t] = loss.mean()
        out["test_loss_mc"][t] = loss.std() / np.sqrt(n)
        if model.metrics:
            kern.metrics_aux_batch(r, aux, p, met)
            for q, name in enumerate(model.metrics):
                out[f"test_{name}"][t] = met[:, q].mean()
    return out


def test_gradients(kern, model, Q, Mo, rho, p, base, *, n: int = 1 << 14) -> dict:
    """d(test observable)/d(Q, M entries) (T, m m + m k) by central differences on the common sample.

    ``base`` is :func:`test_observables` at (Q, Mo) (its keys name the observables). Entry i < m m
    is Q[a, b] (a, b = divmod(i, m)); the pair (a, b), (b, a) is moved together and each entry gets
    half the derivative, so ``grad . (dQ.ravel(), dM.ravel())`` is the first-order change for a
    symmetric dQ. A finite step (3 % of the largest Q) on a common sample: indicator metrics (0-1
    error) have a gradient only in this smoothed sense; for smooth losses the O(h^2) bias is tiny.
    A smaller common sample (2^14) suffices for an error-propagation gradient, and so do fewer
    times: the gradient is evaluated at :data:`GRAD_NODES` grid points and interpolated linearly in
    t between them ((Q, M) and so the gradient are smooth in t; it only scales the error bars),
    nodes spaced geometrically (:func:`grad_nodes`: (Q, M) move fastest right after theta^0).
    Measured (logistic, Figure 1 setting, T = 5, 101 times, P = 8000): against the gradient at
    every time the propagated errors move by 1 % (median) and 7 % (worst time) of themselves, for
    the loss and the 0-1 error alike (32 nodes: the same 7 %, the 0-1 error's own finite-difference
    noise; 8 replicas' errors scatter by ~27 % anyway); committee 0.09 %. The evaluations fall from
    4 x 101 to 4 x 25 (the gradient's share of the test observables' cost from 1/2 to 1/5).
    """
    m, kk = model.m, model.k
    Q = np.asarray(Q, dtype=float).reshape(-1, m, m)
    Mo = np.asarray(Mo, dtype=float).reshape(Q.shape[0], m, kk)
    T = Q.shape[0]
    keys = [k for k in base if k != "test_loss_mc"]
    npar = m * m + m * kk
    scale = max(float(np.abs(Q).max(initial=0.0)), 1e-2)
    h = 0.03 * scale
    nodes = grad_nodes(T)
    Q, Mo, rho = Q[nodes], Mo[nodes], _per_time(rho, kk, T)[nodes]
    grads = {key: np.zeros((nodes.size, npar)) for key in keys}
    for i in range(npar):
        outs = []
        for sgn in (1.0, -1.0):
            Qp, Mp = Q.copy(), Mo.copy()
            if i < m * m:
                a, b = divmod(i, m)
                Qp[:, a, b] += sgn * h
                if a != b:
                    Qp[:, b, a] += sgn * h  # symmetric perturbation of the pair
            else:
                a, j = divmod(i - m * m, kk)
                Mp[:, a, j] += sgn * h
            outs.append(test_observables(kern, model, Qp, Mp, rho, p, n=n))
        for key in keys:
            d = (outs[0][key] - outs[1][key]) / (2 * h)
            if i < m * m and divmod(i, m)[0] != divmod(i, m)[1]:
                d = 0.5 * d  # the pair (a,b),(b,a) was moved together; both entries get half
            grads[key][:, i] = np.nan_to_num(d)
    if nodes.size == T:
        return grads
    return {key: np.stack([np.interp(np.arange(T), nodes, g[:, i]) for i in range(npar)], axis=1)
            for key, g in grads.items()}


def grad_nodes(T: int) -> np.ndarray:
    """The grid indices where :func:`test_gradients` differentiates: 0 and GRAD_NODES indices
    spaced geometrically from 1 to T - 1 (dense early, where (Q, M) move fast from theta^0)."""
    if T <= GRAD_NODES + 1:
        return np.arange(T)
    return np.unique(np.concatenate([[0], np.geomspace(1, T - 1, GRAD_NODES).round().astype(int)]))


def _per_time(rho, k, T):
    """rho as (T, k, k) (it may be given once for all times)."""
    rho = np.asarray(rho, dtype=float)
    # k = 0 (no teacher): rho has size 0 and reshape(-1, 0, 0) is ambiguous.
    return np.broadcast_to(rho.reshape((-1, k, k)) if k else np.zeros((1, 0, 0)), (T, k, k))


def replica_test_observables(kern, model, Q_reps, M_reps, rho, p) -> dict:
    """Test observables of R replica solves: value at the replica mean, between-replica error.

    ``Q_reps`` (R, T, m, m), ``M_reps`` (R, T, m, k). Returns ``test_<x>`` = F(Qbar, Mbar) on the
    full common sample (:data:`N_TEST`) and ``test_<x>_err`` = sd_r(grad F . (Q_r - Qbar, M_r - Mbar))
    / sqrt(R), the between-replica standard error of F propagated to first order (the replicas'
    covariance of (Q, M), kernel feedback included, through the gradient of :func:`test_gradients`),
    and ``test_<x>_reps`` (R, T) = F(Qbar, Mbar) + grad F . (Q_r - Qbar, M_r - Mbar), each
    replica's curve to the same order.

    Why not mean_r F(Q_r, M_r) (issue 12): that costs R full-sample evaluations at every time
    (4/5 of a default logistic solve's P-independent CPU), and its value differs from F(Qbar, Mbar)
    only by the Jensen gap, O(Var(Q_r) F'') ~ 1e-6 here, plus the common sample's label-jump
    quantisation (labels flipped as the joint square root of the covariance moved, before the
    teacher-first factor of :func:`test_observables`), measured up to 0.26 of the error bar
    (median 0.06) in the Figure 1 setting; the errors agree to 0.9-1.1 (loss),
    0.86-1.3 (0-1 error, an indicator: gradient in the smoothed finite-difference sense).
    """
    Q_reps = np.asarray(Q_reps, dtype=float)
    M_reps = np.asarray(M_reps, dtype=float)
    R, T = Q_reps.shape[:2]
    Qb, Mb = Q_reps.mean(0), M_reps.mean(0)
    base = test_observables(kern, model, Qb, Mb, rho, p)
    out = {key: v for key, v in base.items() if key != "test_loss_mc"}
    if R < 2 or T == 0:
        for key in list(out):
            out[key + "_err"] = np.full(T, np.nan)
        return out
    grads = test_gradients(kern, model, Qb, Mb, rho, p, base)
    dev = np.concatenate([(Q_reps - Qb).reshape(R, T, -1), (M_reps - Mb).reshape(R, T, -1)], axis=2)
    for key, gr in grads.items():
        lin = np.einsum("ki,rki->rk", gr, dev)
        # no error where the value itself is undefined (non-finite Q or M at that time)
        out[key + "_err"] = np.where(np.isfinite(out[key]), lin.std(0, ddof=1) / np.sqrt(R), np.nan)
        # each replica's curve to the same first order (their spread is the error above)
        out[key + "_reps"] = out[key][None, :] + lin
    return out


# Not pytest tests despite the names (test files import them).
test_observables.__test__ = False
test_gradients.__test__ = False
