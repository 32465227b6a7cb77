"""Simulators (dmftgen/sim): SGF Euler--Maruyama and minibatch SGD against independent references.

References used: plain-numpy steps built from the generated ``ell_batch`` (one step of each
fused kernel); exact second moments of Euler--Maruyama for least squares (a deterministic
recursion); the empirical strong order of convergence on nested Brownian paths; the
Marchenko--Pastur gradient-descent closed form (docs/theory.md §5, dmftgen.reference); SGF vs
minibatch SGD at the same temperature tau = eta/B (docs/theory.md §1).
"""
import json
import math

import numpy as np
import pytest

from dmftgen import Settings, SettingsError, load_model
from dmftgen.codegen import load_kernels
from dmftgen.sim import draw_data, run_sgd, run_sgf, simulate
from dmftgen.sim.data import stream


@pytest.fixture(scope="module")
def linreg():
    m = load_model("linreg")
    return m, load_kernels(m), m.param_vector({})


@pytest.fixture(scope="module")
def committee():
    m = load_model("committee")
    return m, load_kernels(m), m.param_vector({})


# ------------------------------------------------------------------------------------------------
# one step of each fused kernel against plain numpy
# ------------------------------------------------------------------------------------------------
def test_sgf_step_matches_numpy(committee):
    """theta_1 = theta_0 - dt lam theta_0 - X^T [ell(X theta_0) * (dt + sqrt(tau delta) dB)] / delta."""
    model, kern, p = committee
    n, d, dt, tau, lam = 96, 48, 0.05, 0.7, 0.3
    D = draw_data(model, p, n, d, seed=5, index=0)
    dB = np.random.default_rng(0).standard_normal(n) * math.sqrt(dt)
    path, thT = run_sgf(kern, D, p, delta=n / d, tau=tau, lam=lam, dt=dt, n_steps=1,
                        increments=lambda k: dB, theta_rows=4)
    th0 = D.th0T.T
    r = np.ascontiguousarray(D.X @ th0)
    ell = np.empty((n, model.m))
    kern.ell_batch(r, D.s, D.z, p, ell)
    th1 = th0 - dt * lam * th0 - D.X.T @ (ell * (dt + math.sqrt(tau * n / d) * dB)[:, None]) / (n / d)
    # same operations up to BLAS summation order: agreement to ~1e-15 relative
    np.testing.assert_allclose(thT.T, th1, rtol=1e-12, atol=1e-14)
    loss = np.empty(n)
    kern.loss_batch(r, D.s, D.z, p, loss)
    np.testing.assert_allclose(path.train_loss[0], loss.mean(), rtol=1e-13)
    np.testing.assert_allclose(path.Q[1], th1.T @ th1 / d, rtol=1e-12)
    np.testing.assert_allclose(path.M[1], th1.T @ D.thsT.T / d, rtol=1e-12)
    np.testing.assert_array_equal(path.rows[1], thT.T[:4])
    assert path.n_done == 2 and path.status == "ok"


def test_sgd_steps_match_numpy(committee):
    """Two SGD steps with replacement: i_b = floor(u_b n), theta -= eta_k[lam theta/d + mean_b x_i ell_i^T]."""
    model, kern, p = committee
    n, d, eta, lam, B = 64, 32, 0.8, 0.5, 3
    D = draw_data(model, p, n, d, seed=9, index=1)
    u = np.random.default_rng(2).random((2, B))
    thT = D.th0T.copy()
    kern.sim_sgd_steps(D.X, thT, D.s, D.z, p, u, True, np.array([eta, 0.5 * eta]), lam,
                       np.zeros(n, np.bool_), np.empty(B, np.int64))
    th = D.th0T.T.copy()
    for k, eta_k in enumerate((eta, 0.5 * eta)):
        idx = (u[k] * n).astype(int)
        r = np.ascontiguousarray(D.X[idx] @ th)
        ell = np.empty((B, model.m))
        kern.ell_batch(r, np.ascontiguousarray(D.s[idx]), np.ascontiguousarray(D.z[idx]), p, ell)
        th = th - eta_k * (lam * th / d + D.X[idx].T @ ell / B)
    np.testing.assert_allclose(thT.T, th, rtol=1e-12, atol=1e-15)


QUARTIC = '''"""Test model: no teacher (k = 0), m = 2, quartic row-wise regulariser H = a (th0^4 + th1^4)/4."""
import sympy as sp
from dmftgen import Model, student, theta
r = student(2)
th = theta(2)
z, a = sp.symbols("z a", real=True)
MODEL = Model(name="sim_quartic_test", student=r, teacher=(), noise={z: "normal"}, params={a: 0.3},
              loss=((r[0] + r[1]) / 2 - z) ** 2 / 2, regularizer=a * (th[0] ** 4 + th[1] ** 4) / 4,
              init_std=1.0, teacher_std=1)
'''


def test_regulariser_and_no_teacher(tmp_path, gen_dir):
    """h(theta) = a theta^3 enters both steps at the old theta; k = 0 teacher columns work."""
    from dmftgen.codegen import generate
    f = tmp_path / "sim_quartic_test.py"
    f.write_text(QUARTIC)
    model = load_model(str(f))
    generate(model)
    kern = load_kernels(model)
    assert kern.HAS_REG and kern.K == 0
    p = model.param_vector({"a": 0.3})
    n, d, dt, lam, tau = 60, 30, 0.1, 0.2, 0.5
    D = draw_data(model, p, n, d, seed=1, index=0)
    dB = np.random.default_rng(0).standard_normal(n) * math.sqrt(dt)
    path, thT = run_sgf(kern, D, p, delta=n / d, tau=tau, lam=lam, dt=dt, n_steps=1,
                        increments=lambda k: dB)
    th0 = D.th0T.T
    r = np.ascontiguousarray(D.X @ th0)
    ell = np.empty((n, 2))
    kern.ell_batch(r, D.s, D.z, p, ell)
    th1 = th0 - dt * (lam * th0 + 0.3 * th0 ** 3) \
        - D.X.T @ (ell * (dt + math.sqrt(tau * n / d) * dB)[:, None]) / (n / d)
    np.testing.assert_allclose(thT.T, th1, rtol=1e-12, atol=1e-14)
    assert path.M.shape == (2, 2, 0)
    # SGD, one step, B = 2 with replacement
    u = np.array([[0.1, 0.7]])
    thS = D.th0T.copy()
    kern.sim_sgd_steps(D.X, thS, D.s, D.z, p, u, True, np.array([0.5]), lam, np.zeros(n, np.bool_),
                       np.empty(2, np.int64))
    i = (u[0] * n).astype(int)
    g = np.empty((2, 2))
    kern.ell_batch(np.ascontiguousarray(D.X[i] @ th0), D.s[i], np.ascontiguousarray(D.z[i]), p, g)
    want = th0 - 0.5 * ((lam * th0 + 0.3 * th0 ** 3) / d + D.X[i].T @ g / 2)
    np.testing.assert_allclose(thS.T, want, rtol=1e-12, atol=1e-14)
    res = simulate(model, Settings(T=0.3, dt=0.1, lam=lam), d=20, seeds=2)
    assert res.ok and res["M"].shape == (4, 2, 0) and np.all(np.isfinite(res["test_loss"]))


def test_minibatch_without_replacement_is_uniform_subset(linreg):
    """Floyd's algorithm: B distinct indices, each index with frequency B/n (chi-square check)."""
    _, kern, p = linreg
    n, B, reps = 12, 5, 3000
    X = np.zeros((n, 2))
    s, z = np.zeros((n, 1)), np.zeros((n, 1))
    mark, idx = np.zeros(n, np.bool_), np.empty(B, np.int64)
    u = np.random.default_rng(4).random((reps, 1, B))
    counts = np.zeros(n)
    pairs = np.zeros((n, n))
    for k in range(reps):
        kern.sim_sgd_steps(X, np.zeros((1, 2)), s, z, p, u[k], False, np.ones(1), 0.0, mark, idx)
        assert len(set(idx.tolist())) == B and not mark.any()
        counts[idx] += 1
        pairs[np.ix_(idx, idx)] += 1
    # chi-square with n-1 = 11 dof on the index frequencies (mean 11, sd 4.7): 40 is p < 1e-4.
    # Counts of a fixed subset size are negatively correlated, which only shrinks chi2.
    expected = reps * B / n
    assert np.sum((counts - expected) ** 2 / expected) < 40
    # pair inclusion P(i, j in S) = B(B-1)/(n(n-1)) for a uniform subset; check the spread
    off = pairs[~np.eye(n, dtype=bool)]
    exp_pair = reps * B * (B - 1) / (n * (n - 1))
    assert np.all(np.abs(off - exp_pair) < 6 * math.sqrt(exp_pair))


# ------------------------------------------------------------------------------------------------
# Euler--Maruyama: exact moments and strong order
# ------------------------------------------------------------------------------------------------
def test_em_train_loss_matches_exact_em_moments(linreg):
    """Mean train loss of the simulated EM scheme vs its exact second-moment recursion (least squares).

    For ell = X theta - y the EM step theta' = A theta + b - (c/delta) X^T (ell * dB) gives exactly
    m' = A m + b and S' = A S A^T + A m b^T + b m^T A^T + b b^T + (c^2 dt/delta^2) X^T diag(E ell^2) X,
    E ell_i^2 = x_i^T S x_i - 2 y_i x_i^T m + y_i^2, with A = (1 - lam dt) I - (dt/delta) X^T X,
    b = (dt/delta) X^T y, c^2 = tau delta. This pins the noise intensity sqrt(tau delta) and the
    1/delta of the simulator; the Monte Carlo error is estimated from the paths themselves.
    """
    model, kern, p = linreg
    n, d, dt, N, tau, lam = 48, 24, 0.1, 10, 0.5, 0.2
    delta = n / d
    D = draw_data(model, p, n, d, seed=11, index=0)
    y = D.s[:, 0] + p[0] * D.z[:, 0]
    X = D.X
    A = (1 - lam * dt) * np.eye(d) - dt / delta * X.T @ X
    b = dt / delta * X.T @ y
    mvec = D.th0T[0].copy()
    S = np.outer(mvec, mvec)
    exact = []
    for k in range(N + 1):
        e2 = np.einsum("ij,jk,ik->i", X, S, X) - 2 * y * (X @ mvec) + y ** 2
        exact.append(0.5 * e2.mean())
        Am = A @ mvec
        S = A @ S @ A.T + np.outer(Am, b) + np.outer(b, Am) + np.outer(b, b) \
            + tau * delta * dt / delta ** 2 * (X.T * e2) @ X
        mvec = Am + b
    exact = np.array(exact)
    # The loss under multiplicative noise is right-skewed: 400 paths gave up to 3-5 "standard
    # errors" on some data sets, 4000 paths <= 1.4, so use 2000 (measured max: 1.9, 2.2, 0.6
    # standard errors on data seeds 11, 13, 12).
    P = 2000
    sims = np.array([run_sgf(kern, D, p, delta=delta, tau=tau, lam=lam, dt=dt, n_steps=N,
                             rng=np.random.default_rng(1000 + j))[0].train_loss for j in range(P)])
    mean, sem = sims.mean(0), sims.std(0, ddof=1) / math.sqrt(P)
    # 4 standard errors: a 6e-5 two-sided normal tail per time, 10 times -> false alarm < 1e-3
    # (and the seeds are fixed, so the test is deterministic). k = 0 is deterministic.
    assert np.all(np.abs(mean - exact)[1:] <= 4 * sem[1:]), (mean, exact, sem)
    assert abs(mean[0] - exact[0]) < 1e-12
    # the noise must matter here, or the check above would be vacuous: EM with tau = 0 differs
    # from tau = 1 by several standard errors at the end
    gd = run_sgf(kern, D, p, delta=delta, tau=0.0, lam=lam, dt=dt, n_steps=N,
                 rng=np.random.default_rng(0))[0].train_loss
    assert abs(gd[-1] - exact[-1]) > 10 * sem[-1]   # measured: 34 standard errors


def _endpoints(kern, D, p, tau, T, fine, levels, paths, seed):
    """theta(T) for each level L (steps of T/L) on nested Brownian paths summed from a fine one."""
    n, d = D.X.shape
    rng = np.random.default_rng(seed)
    err = {L: [] for L in levels}
    for _ in range(paths):
        dBf = rng.standard_normal((fine, n)) * math.sqrt(T / fine)

        def end(L):
            dB = dBf.reshape(L, fine // L, n).sum(axis=1)
            return run_sgf(kern, D, p, delta=n / d, tau=tau, lam=0.0, dt=T / L, n_steps=L,
                           increments=lambda k: dB[k], record=False)[1]
        ref = end(fine)
        for L in levels:
            err[L].append(np.sum((end(L) - ref) ** 2) / d)
    return np.array([math.sqrt(np.mean(err[L])) for L in levels])


def test_em_strong_order(linreg):
    """Strong error (E|theta_dt(T) - theta_ref(T)|^2/d)^(1/2) ~ dt^gamma on nested increments.

    Least squares has multiplicative, non-commuting noise (the vector fields c x_i ell_i(theta)
    do not commute), so Euler--Maruyama has strong order 1/2; with tau = 0 it is Euler's method,
    order 1. Measured (16 paths, dt = 1/8 .. 1/128, reference 1/2048): slope 0.52 for tau = 1,
    1.04 for tau = 0. The bounds [0.4, 0.75] leave room for the O(dt) drift error at coarse dt
    (which steepens the slope) and the sampling error of 16 paths (a few %).
    """
    model, kern, p = linreg
    n, d, T = 128, 64, 1.0
    D = draw_data(model, p, n, d, seed=7, index=0)
    levels = np.array([8, 16, 32, 64, 128])
    h = T / levels
    e = _endpoints(kern, D, p, 1.0, T, 2048, levels, paths=16, seed=1)
    slope = np.polyfit(np.log(h), np.log(e), 1)[0]
    assert 0.4 <= slope <= 0.75, (slope, e)
    e0 = _endpoints(kern, D, p, 0.0, T, 1024, levels[:3], paths=1, seed=1)
    slope0 = np.polyfit(np.log(h[:3]), np.log(e0), 1)[0]
    assert 0.9 <= slope0 <= 1.15, (slope0, e0)


# ------------------------------------------------------------------------------------------------
# against theory: Marchenko-Pastur gradient descent (tau = 0) and SGD vs SGF
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("law", ["gaussian", "rademacher"])
def test_gradient_flow_matches_marchenko_pastur(linreg, law):
    """tau = 0: Euler steps of GF on ridge regression vs the MP closed form of the same Euler steps.

    ``gradient_flow(..., dt=dt)`` is the exact d -> infinity limit of gradient descent with step
    dt (docs/theory.md §5), so there is no time-discretisation error to allow for. What remains
    is finite d: fluctuations O(d^-1/2) (captured by the standard error over seeds, which
    includes the fluctuation of rho_hat) and a bias O(1/d) ~ 2e-3 at d = 512. Measured: all
    |sim - MP| <= 0.63 standard errors (6 seeds; max |diff| 0.0075); bound: 4 standard errors + 1/d.
    Rademacher inputs (+-1/sqrt(d); the MP law is universal): max 3.5 standard errors on the train
    loss, i.e. |diff| = 0.0025 against sem 0.0007 at t = 4 (|x_i|^2 = 1 exactly, so seeds scatter
    less); that is within the O(1/d) = 0.002 allowance, and its sign flips between d = 256, 512
    and 1024 (+0.004, -0.0025, -0.0019).
    """
    from dmftgen.reference.marchenko_pastur import gradient_flow

    model = linreg[0]
    d, delta, lam, sigma, dt = 512, 2.0, 0.1, 0.5, 0.1
    res = simulate(model, Settings(delta=delta, tau=0.0, lam=lam, T=4.0, dt=dt, seed=3), d=d, seeds=6,
                   data=law)
    assert res.ok
    ref = gradient_flow(res.t, delta, sigma, lam, 1.0, dt=dt)
    for key, want in (("train_loss", ref.train), ("test_loss", ref.test), ("Q", ref.Q), ("M", ref.M)):
        got = res[key].reshape(-1)
        sem = res[key + "_sem"].reshape(-1)
        assert np.all(np.abs(got - want) <= 4 * sem + 1.0 / d), (key, got - want, sem)
    # the curves move: the test is not passing on a flat line
    assert ref.train[-1] < 0.5 * ref.train[0]


def _volterra_check(method, d, T, seeds):
    from dmftgen.reference.volterra import volterra

    model = load_model("linreg")
    dt = 0.05
    res = simulate(model, Settings(delta=2.0, tau=0.5, lam=0.1, T=T, dt=dt, seed=5), d=d,
                   seeds=seeds, method=method)
    assert res.ok
    # SGF: the exact Euler-Maruyama analogue of the Volterra equation (same dt); SGD: continuous
    ref = volterra(res.t, 2.0, 0.5, 0.5, 0.1, 1.0, dt=dt if method == "sgf" else None)
    zs = {}
    for key, want in (("train_loss", ref.train), ("test_loss", ref.test)):
        diff = (res[key] - want)[1:]
        sem = res[key + "_sem"][1:]
        zs[key] = float(np.max(np.abs(diff) / sem))
        assert np.all(np.abs(diff) <= 4 * sem + 1.0 / d), (method, key, diff, sem)
    return zs


def test_sgf_matches_mp_volterra_curve():
    """tau = 0.5, lam = 0.1, sigma = 0.5, delta = 2: the SGF train/test losses vs the deterministic
    Marchenko-Pastur Volterra curves of docs/theory.md §5 (homogenized SGD, the d -> infinity
    limit for least squares; check values 0.3055 / 0.2008 at t = 0.5 / 1). Same error model as
    the gradient-flow test: 4 standard errors over seeds + 1/d for the O(1/d) bias. Measured at
    d = 512, 6 seeds, T = 5: max 1.9 standard errors (SGF), 1.7 (SGD, B = 1)."""
    _volterra_check("sgf", 256, 2.0, 6)


@pytest.mark.slow
def test_sgf_and_sgd_match_mp_volterra_curve_long():
    for method in ("sgf", "sgd"):
        _volterra_check(method, 512, 5.0, 6)


def test_sgd_matches_sgf_at_same_temperature(linreg):
    """Minibatch SGD with tau = eta/B = 0.5 vs SGF (docs/theory.md §1).

    For least squares the two have the same drift and noise covariance per unit time (up to the
    rank-one mean term and (n-B)/(n-1), O(B/n)), and the same second moments of the losses, so
    the mean curves agree up to finite-size noise and the O(dt) Euler bias of the SGF (dt = 0.02:
    ~1e-3). Smallest learning rate possible at this tau is eta = tau (B = 1); B = 16 (eta = 8,
    without replacement) checks that only tau matters. Same seeds -> same data in all three runs,
    so the difference is dominated by the dynamics noise; the bound uses the (larger) combined
    standard errors over 8 seeds: 4 sigma, plus 0.01 for the O(B/n) and Euler biases.
    Measured: max |SGD - SGF| = 1.06 combined standard errors (B = 1 and B = 16).
    """
    model = linreg[0]
    s = Settings(delta=2.0, tau=0.5, lam=0.0, T=1.0, dt=0.02, seed=3)
    sgf = simulate(model, s, d=256, seeds=8)
    for batch, replace in ((1, True), (16, False)):
        sgd = simulate(model, s, d=256, seeds=8, method="sgd", batch=batch, replace=replace)
        assert sgd.meta["eta"] == 0.5 * batch
        for key in ("train_loss", "test_loss"):
            diff = sgd[key] - sgf[key]
            err = np.hypot(sgd[key + "_sem"], sgf[key + "_sem"])
            assert np.all(np.abs(diff[1:]) <= 4 * err[1:] + 0.01), (batch, key, diff, err)
    # and SGD did learn: train loss dropped by > 60 % (rho + sigma^2)/2 = 0.625 -> ~0.19
    assert sgd["train_loss"][-1] < 0.4 * sgd["train_loss"][0]


def test_sgd_time_axis_is_k_eta_over_d(linreg):
    """SGD records at the steps k = round(t d / eta); actual times t = k eta/d go to meta when off-grid."""
    model = linreg[0]
    s = Settings(delta=2.0, tau=0.5, T=0.3, dt=0.1, seed=0)
    res = simulate(model, s, d=37, seeds=1, method="sgd", batch=2)   # eta/d = 1/37: off-grid
    k = np.rint(np.array([0, 0.1, 0.2, 0.3]) * 37 / 1.0)
    np.testing.assert_allclose(res.meta["t_actual"], k / 37)
    np.testing.assert_allclose(res.t, [0, 0.1, 0.2, 0.3])
    assert res.meta["steps"] == k[-1]


def test_constant_schedule_is_a_time_change(committee):
    """gamma(t) = c multiplies ell and h by c: drift x c, noise covariance x c^2. Step k of the
    SGF at (tau, dt) with gamma = c is then step k at (c tau, c dt) without schedule (same
    normals: dB = sqrt(dt) xi), and SGD with eta_k = c eta is SGD with learning rate c eta."""
    model, kern, p = committee
    c, tau, dt, N = 0.4, 0.6, 0.05, 12
    D = draw_data(model, p, 80, 40, seed=4, index=0)
    a, _ = run_sgf(kern, D, p, delta=2.0, tau=tau, lam=0.1, dt=dt, n_steps=N,
                   rng=np.random.default_rng(5), schedule=lambda t: np.full_like(t, c))
    b, _ = run_sgf(kern, D, p, delta=2.0, tau=c * tau, lam=0.1, dt=c * dt, n_steps=N,
                   rng=np.random.default_rng(5))
    for key in ("train_loss", "Q", "M"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=1e-12, err_msg=key)
    times = 0.1 * np.arange(6)
    g, _ = run_sgd(kern, D, p, lam=0.1, eta=1.0, batch=2, replace=True, times=times,
                   rng=np.random.default_rng(6), schedule=lambda t: np.full_like(t, c))
    h, _ = run_sgd(kern, D, p, lam=0.1, eta=c, batch=2, replace=True, times=c * times,
                   rng=np.random.default_rng(6))
    for key in ("train_loss", "Q", "M"):
        np.testing.assert_allclose(getattr(g, key), getattr(h, key), rtol=1e-12, err_msg=key)


def test_schedule_formula_and_errors(linreg):
    model = linreg[0]
    s = Settings(delta=2.0, tau=0.5, T=1.0, dt=0.1, seed=1)
    # a decaying rate learns less than the constant one over the same horizon (GD, tau -> SGF)
    slow = simulate(model, s, d=64, seeds=1, schedule="1/(1 + 4*t)")
    fast = simulate(model, s, d=64, seeds=1)
    assert slow.meta["schedule"] == "1/(4*t + 1)"
    assert slow["train_loss"][-1] > fast["train_loss"][-1]
    np.testing.assert_array_equal(slow["train_loss"][:2], fast["train_loss"][:2])  # gamma(0) = 1
    with pytest.raises(SettingsError, match="finite and >= 0"):
        simulate(model, s, d=64, seeds=1, schedule="1 - 2*t")
    # the value as a number (it read "np.float64(-10.0)"), a pole without a RuntimeWarning
    import warnings

    from dmftgen.sim.schedule import Schedule

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SettingsError, match=r"at t = 0\.1 it is inf\.$"):
            Schedule("1/(t - 0.1)")(np.array([0.1]))
        with pytest.raises(SettingsError, match=r"at t = 0 it is -1\.$"):
            Schedule("-1")(np.array([0.0]))
    with pytest.raises(SettingsError, match="only use the time `t`"):
        simulate(model, s, d=64, seeds=1, schedule="exp(-k*t)")


# ------------------------------------------------------------------------------------------------
# reproducibility, divergence, validation, CLI
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(), dict(method="sgd", batch=4, replace=False),
                                dict(data="rademacher", theta_rows=3)])
def test_same_seed_same_numbers(committee, kw):
    model = committee[0]
    s = Settings(delta=1.5, tau=0.4, lam=0.1, T=0.4, dt=0.1, seed=12)
    a = simulate(model, s, d=40, seeds=2, **kw)
    b = simulate(model, s, d=40, seeds=2, **kw)
    c = simulate(model, s.replace(seed=13), d=40, seeds=2, **kw)
    assert a.keys() == b.keys()
    for key in a.keys():
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)   # bit for bit
    assert not np.array_equal(a["train_loss"], c["train_loss"])
    assert not np.array_equal(a["Q"], c["Q"])


def test_data_laws():
    """X entries: N(0, 1/d) or exactly +-1/sqrt(d); teacher/init laws and streams per role."""
    model = load_model("committee")
    p = model.param_vector({"init_std": 0.5})
    n, d = 400, 200
    G = draw_data(model, p, n, d, seed=1, index=0)
    R = draw_data(model, p, n, d, seed=1, index=0, data="rademacher")
    assert np.allclose(np.abs(R.X), 1 / math.sqrt(d))
    # variance 1/d: sample mean of d*X^2 over 8e4 entries, sd sqrt(2/8e4) = 0.005
    assert abs(np.mean(G.X ** 2) * d - 1) < 0.025
    # the teacher, init and noise streams do not depend on the law of X
    np.testing.assert_array_equal(G.thsT, R.thsT)
    np.testing.assert_array_equal(G.th0T, R.th0T)
    np.testing.assert_array_equal(G.z, R.z)
    assert G.th0T.shape == (2, d) and G.thsT.shape == (1, d) and G.s.shape == (n, 1)
    assert abs(np.std(G.th0T) - 0.5) < 0.05          # init_std = 0.5 over 400 entries
    np.testing.assert_allclose(G.s, G.X @ G.thsT.T)
    np.testing.assert_allclose(G.rho, G.thsT @ G.thsT.T / d)
    other = draw_data(model, p, n, d, seed=1, index=1)
    assert not np.array_equal(G.X, other.X)
    assert stream(1, 0, 4).random() != stream(1, 1, 4).random()


def test_inputs_do_not_depend_on_n_or_storage():
    """X is drawn in blocks of rows from per-block streams: a prefix for smaller n, and the
    matrix-free SGF (X regenerated every step) gives the stored-X numbers up to rounding."""
    from dmftgen.sim.data import BLOCK_ROWS, draw_inputs
    for law in ("gaussian", "rademacher"):
        big = draw_inputs(3, 1, 3 * BLOCK_ROWS + 7, 50, law)
        small = draw_inputs(3, 1, BLOCK_ROWS + 5, 50, law)
        np.testing.assert_array_equal(small, big[:BLOCK_ROWS + 5])
    model = load_model("committee")
    s = Settings(delta=1.7, tau=0.6, lam=0.05, T=0.5, dt=0.1, seed=2)
    a = simulate(model, s, d=100, seeds=2, theta_rows=2)               # n = 170: 3 blocks
    b = simulate(model, s, d=100, seeds=2, theta_rows=2, matrix_free=True)
    assert b.meta["matrix_free"] and a.keys() == b.keys()
    for key in a.keys():
        # blockwise X^T G sums in a different order: relative differences ~1e-16 per step
        np.testing.assert_allclose(b[key], a[key], rtol=1e-10, atol=1e-13, err_msg=key)


def test_divergence_is_a_status(linreg):
    """Least squares at tau = 3 > 2 (beyond the stability limit, docs/theory.md §5) blows up."""
    model = linreg[0]
    res = simulate(model, Settings(delta=2.0, tau=3.0, T=80.0, dt=0.1, seed=0), d=64, seeds=2)
    assert res.status == "diverged"
    assert "diverged at t =" in res.message and "tau < 2" in res.message
    t_stop = float(res.message.split("diverged at t =")[1].split(":")[0])
    assert 1.0 < t_stop < 80.0
    R = len(res.t)
    assert R < 801 and res["train_loss"].shape == (R,) and res["Q"].shape == (R, 1, 1)
    assert np.all(np.isfinite(res["train_loss"])) and np.all(np.isfinite(res["Q"]))
    # below the limit the same run is fine
    ok = simulate(model, Settings(delta=2.0, tau=1.0, T=20.0, dt=0.1, seed=0), d=64, seeds=1)
    assert ok.ok and len(ok.t) == 201


def test_interrupt_keeps_finished_part(linreg):
    """Ctrl-C inside a run returns the finished records with status "interrupted"."""
    model, kern, p = linreg
    D = draw_data(model, p, 40, 20, seed=0, index=0)

    def stop_after(k_stop):
        def tick(k):
            if k == k_stop:
                raise KeyboardInterrupt
        return tick
    path, _ = run_sgf(kern, D, p, delta=2.0, tau=0.5, lam=0.0, dt=0.1, n_steps=10,
                      rng=np.random.default_rng(0), tick=stop_after(3))
    assert path.status == "interrupted" and path.n_done == 4
    assert np.all(np.isfinite(path.train_loss[:4])) and np.all(np.isfinite(path.Q[:4]))
    path, _ = run_sgd(kern, D, p, lam=0.0, eta=0.5, batch=1, replace=True, times=0.1 * np.arange(11),
                      rng=np.random.default_rng(0), tick=stop_after(2))
    assert path.status == "interrupted" and path.n_done == 3


@pytest.mark.parametrize("settings_kw, kw, pattern", [
    (dict(delta=0.0), {}, "delta"),
    (dict(tau=-0.1), {}, "tau"),
    (dict(dt=0.0), {}, "dt"),
    ({}, dict(d=1), "`d` must be >= 2"),
    ({}, dict(method="sgd", batch=200), "exceeds the number of samples n = 40"),
    ({}, dict(method="sgd", batch=2, eta=3.0), "differs from tau"),
    (dict(tau=0.0), dict(method="sgd"), "SGD needs tau"),
    ({}, dict(method="adam"), "unknown method"),
    ({}, dict(data="uniform"), "unknown data law"),
    ({}, dict(batch=4), "only apply to --method sgd"),
    ({}, dict(seeds=0), "`seeds` must be >= 1"),
    ({}, dict(seeds=2.5), "`seeds` must be an integer, got 2.5"),
    ({}, dict(d="many"), "`d` must be an integer, got 'many'"),
    ({}, dict(method="sgd", matrix_free=True), "matrix-free mode is implemented for --method sgf"),
    ({}, dict(d=10 ** 7), "--method sgf --matrix-free"),
    ({}, dict(seeds=10 ** 12), "the seeds' records"),  # 8 bytes x 3 times x 5 entries x 1e12 > any RAM
    (dict(params={"nope": 1.0}), {}, "no parameter `nope`"),
])
def test_bad_settings_are_named(linreg, settings_kw, kw, pattern):
    model = linreg[0]
    with pytest.raises(SettingsError, match=pattern):
        simulate(model, Settings(**{"T": 0.2, "dt": 0.1, **settings_kw}), **{"d": 20, **kw})


def test_whole_numbers_as_float_or_text_are_integers(linreg):
    """The simulators' integer options take a whole number in any form the CLI or a sweep's grid
    passes (``config.whole``, the one integer reader): 4.0 and "4" are 4, and the same run."""
    from dmftgen.sim import resolve_run

    model = linreg[0]
    s = Settings(T=0.2, dt=0.1)
    for d, seeds in ((20.0, "2"), ("20", 2.0)):
        got = resolve_run(model, s, d=d, seeds=seeds, method="sgf", batch=None, eta=None, replace=True,
                          data="gaussian", theta_rows=0)
        assert got[0] == 20 and got[2] == 2 and type(got[0]) is int and type(got[2]) is int


def test_w2_checks_its_seeds_like_simulate(linreg):
    from dmftgen.w2 import w2_scan

    with pytest.raises(SettingsError, match="`seeds` must be >= 1"):
        w2_scan(linreg[0], Settings(T=0.2, dt=0.1), dims=(8, 16), seeds=0, paths=400)


def test_cli_simulate_writes_json_and_npz(tmp_path, capsys):
    from dmftgen.cli import main
    from dmftgen.results import Result

    out = tmp_path / "sim.json"
    rc = main(["simulate", "logistic", "--method", "sgf", "--delta", "2", "--tau", "0.5", "--T", "0.3", "--dt", "0.1",
               "--d", "32", "--seeds", "2", "--param", "beta=3", "--seed", "4", "--out", str(out)])
    assert rc == 0
    raw = json.loads(out.read_text())
    for key in ("t", "train_loss", "test_loss", "train_error", "test_error", "Q", "M",
                "train_loss_sem", "test_error_sem", "Q_sem", "M_sem"):
        assert key in raw
    assert raw["meta"]["settings"]["params"] == {"beta": 3.0}
    assert raw["meta"]["model"] == "logistic" and raw["meta"]["source_hash"].startswith("sha256:")
    assert raw["meta"]["seeds"] == 2 and raw["meta"]["d"] == 32 and raw["meta"]["n"] == 64
    assert "numba" in raw["meta"]["versions"]
    assert len(raw["t"]) == 4 and np.array(raw["Q"]).shape == (4, 1, 1)
    npz = tmp_path / "sgd.npz"
    rc = main(["simulate", "logistic", "--T", "0.3", "--dt", "0.1", "--d", "32", "--seeds", "1",
               "--method", "sgd", "--batch", "2", "--out", str(npz)])
    assert rc == 0
    r = Result.load(npz)
    assert r.meta["method"] == "sgd" and r.meta["eta"] == 1.0 and r["train_loss"].shape == (4,)
    # user errors: exit 2, one line, no traceback
    rc = main(["simulate", "logistic", "--d", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "`d` must be >= 2" in err and "Traceback" not in err
    rc = main(["simulate", "linreg", "--method", "sgf", "--tau", "3", "--T", "60", "--dt", "0.1", "--d", "32",
               "--seeds", "1", "--out", str(tmp_path / "div.json")])
    assert rc == 1
    assert json.loads((tmp_path / "div.json").read_text())["status"] == "diverged"


@pytest.mark.slow
def test_logistic_sgd_matches_sgf():
    """Nonlinear ell: SGD and SGF differ only by higher cumulants (docs/theory.md §1); at
    tau = 0.5 they agreed to finite-size precision in the design note's runs (d = 1024)."""
    model = load_model("logistic")
    s = Settings(delta=2.0, tau=0.5, T=3.0, dt=0.02, seed=1)
    sgf = simulate(model, s, d=1024, seeds=4)
    sgd = simulate(model, s, d=1024, seeds=4, method="sgd", batch=1)
    for key in ("train_loss", "test_loss", "train_error", "test_error"):
        err = np.hypot(sgd[key + "_sem"], sgf[key + "_sem"])
        assert np.all(np.abs(sgd[key] - sgf[key])[1:] <= 4 * err[1:] + 0.01), key
