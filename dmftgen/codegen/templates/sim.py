"""Simulator hot loops (SGF Euler--Maruyama and minibatch SGD), copied into every generated module.

Everything after the template-body marker line (below) is pasted verbatim into
``generated/<model>.py`` after the row kernels (see docs/kernels.md, "Templates"), so the body can
call ``ell_row``, ``loss_row``, ``metrics_row`` and ``h_row`` directly and numba inlines them. The
body uses only the module constants (``M``, ``K``, ``NMET``, ``HAS_REG``), ``math``, ``np`` and
``njit``; it must not import anything. The lines above the marker exist only so that this file
can be read (and linted) on its own; they are not copied.

Layout used by the simulator drivers (``dmftgen/sim/``):

* ``thT`` -- the student parameters stored transposed, shape (M, d), C-contiguous: row-major
  (M, d) makes the two BLAS products ``thT @ X.T`` and ``GT @ X`` about 20 % faster than the
  tall-skinny (d, M) layout for M = 4 (measured: bench/bench_sgf_step.py), and lets the fused SGD
  kernel run over contiguous length-d rows.
* ``RT`` -- student pre-activations r = X theta, transposed, shape (M, n).
* ``s`` -- frozen teacher pre-activations r* = X theta*, shape (n, K) (computed once per run).
* ``z`` -- per-sample noise, shape (n, NZ); ``p`` -- parameter vector (NP,).

No random numbers are drawn here: Brownian increments and minibatch uniforms are passed in by the
driver, which owns the ``numpy.random.Generator`` (reproducibility, docs/kernels.md).
"""

import math  # noqa: F401  (provided by the generated module header)

import numpy as np
from numba import njit

M = K = NMET = 1
HAS_REG = False


def ell_row(r, s, z, p, out):  # pragma: no cover - stand-ins, replaced by the generated kernels
    raise NotImplementedError


def loss_row(r, s, z, p):  # pragma: no cover
    raise NotImplementedError


def metrics_row(r, s, z, p, out):  # pragma: no cover
    raise NotImplementedError


def h_row(th, p, out):  # pragma: no cover
    raise NotImplementedError


# --- template body ---


@njit(cache=True, nogil=True, error_model="numpy")
def sim_sgf_increment(RT, s, z, p, dB, dt, c, GT, met, obs):
    """Per-sample part of one SGF Euler--Maruyama step (docs/theory.md §1, Ito, left point).

    For every sample i, with r_i = RT[:, i]::

        ell_i = ell(r_i; s_i, z_i),   GT[:, i] = ell_i * (dt + c * dB_i),   c = sqrt(tau * delta),

    so that the driver's update is theta <- theta - dt (lam theta + h(theta)) - X^T G / delta
    (compact form dtheta = -h dt - X^T dL / delta, dL_i = ell_i (dt + sqrt(tau delta) dB_i)).

    When ``obs`` is true the train observables of the same (current) state are accumulated in the
    same pass: the return value ``loss_sum`` = sum_i L(r_i) and ``met[:] += metrics(r_i)``
    (``met`` must be zeroed by the caller). ``nbad`` counts samples whose ell is not finite.

    Returns
    -------
    (loss_sum, nbad) : (float, int)
    """
    n = RT.shape[1]
    r = np.empty(M)
    ell = np.empty(M)
    mrow = np.empty(NMET)
    loss_sum = 0.0
    nbad = 0
    for i in range(n):
        for a in range(M):
            r[a] = RT[a, i]
        ell_row(r, s[i], z[i], p, ell)
        f = dt + c * dB[i]
        for a in range(M):
            e = ell[a]
            if not math.isfinite(e):
                nbad += 1
            GT[a, i] = e * f
        if obs:
            loss_sum += loss_row(r, s[i], z[i], p)
            metrics_row(r, s[i], z[i], p, mrow)
            for q in range(NMET):
                met[q] += mrow[q]
    return loss_sum, nbad


@njit(cache=True, nogil=True, error_model="numpy")
def sim_train_observables(RT, s, z, p, met):
    """Train observables of the current state: returns sum_i L(r_i), adds sum_i metrics(r_i) to met."""
    n = RT.shape[1]
    r = np.empty(M)
    mrow = np.empty(NMET)
    loss_sum = 0.0
    for i in range(n):
        for a in range(M):
            r[a] = RT[a, i]
        loss_sum += loss_row(r, s[i], z[i], p)
        metrics_row(r, s[i], z[i], p, mrow)
        for q in range(NMET):
            met[q] += mrow[q]
    return loss_sum


@njit(cache=True, nogil=True, error_model="numpy")
def sim_apply_update(thT, gradT, p, lam, a_reg, a_grad, thsT, Q, Mo):
    """In-place parameter update and the overlaps of the new state, in one pass over the d rows.

    theta_j <- theta_j - a_reg * (lam * theta_j + h(theta_j)) - a_grad * grad_j   for every row j,
    with h evaluated at the old row (Ito / explicit Euler). SGF: a_reg = dt, a_grad = 1/delta.

    Then, for the new theta, Q[a, b] = sum_j theta_ja theta_jb and Mo[a, k] = sum_j theta_ja
    theta*_jk (the caller divides by d); ``thsT`` is the frozen teacher, shape (K, d).
    Returns max_j |theta_ja| (divergence guard; NaN propagates).
    """
    d = thT.shape[1]
    th = np.empty(M)
    hv = np.zeros(M)
    for a in range(M):
        for b in range(M):
            Q[a, b] = 0.0
        for k in range(K):
            Mo[a, k] = 0.0
    amax = 0.0
    for j in range(d):
        for a in range(M):
            th[a] = thT[a, j]
        if HAS_REG:
            h_row(th, p, hv)
        for a in range(M):
            v = th[a] - a_reg * (lam * th[a] + hv[a]) - a_grad * gradT[a, j]
            thT[a, j] = v
            th[a] = v
            av = abs(v)
            if not av <= amax:  # also catches NaN
                amax = av
        for a in range(M):
            for b in range(a, M):
                Q[a, b] += th[a] * th[b]
            for k in range(K):
                Mo[a, k] += th[a] * thsT[k, j]
    for a in range(M):
        for b in range(a + 1, M):
            Q[b, a] = Q[a, b]
    return amax


@njit(cache=True, nogil=True, error_model="numpy")
def sim_overlaps(thT, thsT, Q, Mo):
    """Q = sum_j theta_j theta_j^T, Mo = sum_j theta_j theta*_j^T (caller divides by d); max |theta|."""
    d = thT.shape[1]
    for a in range(M):
        for b in range(M):
            Q[a, b] = 0.0
        for k in range(K):
            Mo[a, k] = 0.0
    amax = 0.0
    for j in range(d):
        for a in range(M):
            v = thT[a, j]
            av = abs(v)
            if not av <= amax:
                amax = av
            for b in range(a, M):
                Q[a, b] += v * thT[b, j]
            for k in range(K):
                Mo[a, k] += v * thsT[k, j]
    for a in range(M):
        for b in range(a + 1, M):
            Q[b, a] = Q[a, b]
    return amax


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def sim_sgd_steps(X, thT, s, z, p, u, replace, etas, lam, mark, idx):
    """Run ``u.shape[0]`` minibatch SGD steps in place (docs/theory.md §1), rows indexed in place.

    Step k with minibatch S_k of size B = u.shape[1] and learning rate eta_k = ``etas[k]``
    (constant, or eta * gamma(t_k) under a schedule)::

        theta <- theta - eta_k [ (lam theta + h(theta)) / d + (1/B) sum_{i in S_k} x_i ell(x_i^T theta)^T ]

    ``u`` (steps, B) are uniforms in [0, 1) drawn by the driver. With ``replace`` the batch is
    i_b = floor(u_b n) (i.i.d. uniform). Without, Floyd's algorithm turns the same B uniforms into
    a uniform B-subset of [n]: for j = n-B .. n-1, t = floor(u (j+1)); take t unless already taken,
    else take j. ``mark`` (n,) bool scratch, all False on entry and on exit; ``idx`` (B,) int64
    scratch. No copy of X[S_k] is made (measured: bench/bench_sgf_step.py): all B pre-activations are
    formed first (old theta), then the regulariser pass (only if lam != 0 or a regulariser is
    declared) and B rank-one updates touch theta. ``reassoc``/``contract`` let LLVM vectorise the
    length-d dot products; the order is still fixed by the compiled code, so runs reproduce.

    Returns the number of non-finite ell values met (0 when all is well); stops after the first
    step that produced one.
    """
    n, d = X.shape
    nsteps, B = u.shape
    r = np.empty(M)
    ell = np.empty(M)
    ellb = np.empty((B, M))
    th = np.empty(M)
    hv = np.zeros(M)
    inv_d = 1.0 / d
    inv_B = 1.0 / B
    for k in range(nsteps):
        # -- draw the minibatch
        if replace:
            for b in range(B):
                t = int(u[k, b] * n)
                idx[b] = t if t < n else n - 1
        else:
            b = 0
            for jj in range(n - B, n):
                t = int(u[k, b] * (jj + 1))
                if t > jj:
                    t = jj
                if mark[t]:
                    t = jj
                mark[t] = True
                idx[b] = t
                b += 1
            for b in range(B):
                mark[idx[b]] = False
        # -- ell at the old theta for every row of the minibatch
        nbad = 0
        for b in range(B):
            i = idx[b]
            for a in range(M):
                acc = 0.0
                for j in range(d):
                    acc += X[i, j] * thT[a, j]
                r[a] = acc
            ell_row(r, s[i], z[i], p, ell)
            for a in range(M):
                if not math.isfinite(ell[a]):
                    nbad += 1
                ellb[b, a] = ell[a]
        eta = etas[k]
        # -- regulariser on every coordinate (h at the old theta), skipped when absent
        if HAS_REG or lam != 0.0:
            c_reg = eta * inv_d
            for j in range(d):
                for a in range(M):
                    th[a] = thT[a, j]
                if HAS_REG:
                    h_row(th, p, hv)
                for a in range(M):
                    thT[a, j] = th[a] - c_reg * (lam * th[a] + hv[a])
        # -- B rank-one updates theta_a -= (eta / B) ell_{b,a} x_{i_b}
        for b in range(B):
            i = idx[b]
            for a in range(M):
                cb = eta * inv_B * ellb[b, a]
                for j in range(d):
                    thT[a, j] -= cb * X[i, j]
        if nbad > 0:
            return nbad
    return 0
