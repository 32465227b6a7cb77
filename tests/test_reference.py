"""Tests of dmftgen.reference against independent checks (simulations, closed forms, Monte Carlo).

Every tolerance is derived in the comment next to its assertion. Run time ~10 s on 2 cores.
"""

import subprocess
import sys
import types

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import expit, ndtr

from dmftgen.reference import (
    critical_tau,
    from_kernels,
    gradient_flow,
    is_stable,
    kernel_integrals,
    mp_density,
    mp_quadrature,
    mp_support,
    noise_floor,
    online_expectations,
    online_rhs,
    solve_online,
    volterra,
)

# ----------------------------------------------------------------------------------------------
# Marchenko-Pastur quadrature
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [0.5, 2.0, 4.0])
def test_mp_quadrature_known_moments(delta):
    # Known MP moments of A = X^T X / delta (ratio g = 1/delta), continuous part only:
    # mass min(1, delta), first moment 1, second moment 1 + g, and for delta > 1 the
    # inverse moment 1/(1-g). Gauss-Chebyshev is exact up to rounding for polynomial moments
    # times the smooth factor 1/m (geometric convergence): 1e-12 is ~1e4 x machine epsilon.
    g = 1.0 / delta
    m, w = mp_quadrature(delta, 400)
    assert abs(w.sum() - min(1.0, delta)) < 1e-12
    assert abs(w @ m - 1.0) < 1e-12
    assert abs(w @ m**2 - (1.0 + g)) < 1e-12
    if delta > 1:
        assert abs(w @ (1.0 / m) - 1.0 / (1.0 - g)) < 1e-12
    # against adaptive scipy quad of the density (independent of the node rule); quad's own
    # error estimate is < 1e-10 here
    f = lambda x: np.exp(-1.3 * x) * x  # noqa: E731
    lo, hi = mp_support(delta)
    ref = quad(lambda x: f(x) * mp_density(x, delta), lo, hi, epsabs=1e-13, epsrel=1e-13, limit=200)[0]
    assert abs(w @ f(m) - ref) < 1e-10


def test_mp_quadrature_delta_one():
    # delta = 1: m_- = 0, Gauss-Jacobi (1/2, -1/2); moments 1, 1, 2 exactly (rounding of
    # scipy's Jacobi roots ~1e-12 at 400 nodes).
    m, w = mp_quadrature(1.0, 400)
    assert abs(w.sum() - 1) < 1e-11 and abs(w @ m - 1) < 1e-11 and abs(w @ m**2 - 2) < 1e-10


# ----------------------------------------------------------------------------------------------
# Gradient flow / gradient descent closed form vs direct numpy gradient descent
# ----------------------------------------------------------------------------------------------

_D = 1000
_SEEDS = 3


def _gd_simulation(delta, lams, sigma, dt, ks, seed, d=_D):
    """Direct Euler gradient descent on a random ridge-regression instance, one column per ridge
    value in ``lams`` (same data). Returns (len(ks), 4, len(lams)): train, test, Q, M.

    theta* and eps are rescaled to |theta*|^2 = d, |eps|^2 = n (rho = 1 exactly), which removes
    the dominant but trivial O(d^-1/2) fluctuation of |theta*|^2/d.
    """
    rng = np.random.default_rng(seed)
    n = int(round(delta * d))
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    ts = rng.standard_normal(d)
    ts *= np.sqrt(d) / np.linalg.norm(ts)
    eps = rng.standard_normal(n)
    eps *= np.sqrt(n) / np.linalg.norm(eps)
    y = (X @ ts + sigma * eps)[:, None]
    lam = np.asarray(lams)[None, :]
    th = np.zeros((d, lam.size))
    out = []
    for k in range(max(ks) + 1):
        res = X @ th - y
        if k in ks:
            out.append([0.5 * np.mean(res**2, 0), 0.5 * np.mean((th - ts[:, None]) ** 2, 0) + 0.5 * sigma**2,
                        np.mean(th * th, 0), ts @ th / d])
        th = th - dt * (lam * th + X.T @ res / delta)
    return np.array(out)


@pytest.mark.parametrize("delta", [0.5, 2.0])
def test_gd_closed_form_matches_simulation(delta):
    sigma, dt, lams = 0.5, 0.05, (0.0, 0.1)
    ts = np.array([0.5, 2.0, 5.0])
    ks = [int(round(t / dt)) for t in ts]
    sims = np.array([_gd_simulation(delta, lams, sigma, dt, ks, s) for s in range(_SEEDS)])
    mean = sims.mean(0)
    se = sims.std(0, ddof=1) / np.sqrt(_SEEDS)
    for j, lam in enumerate(lams):
        th = gradient_flow(ts, delta, sigma, lam, 1.0, dt=dt)  # exact for this dt: only finite-d error
        theory = np.stack([th.train, th.test, th.Q, th.M], axis=1)
        # Finite-size error: single-run sd is c/sqrt(d) with c <= 1.2 (measured with 20 seeds at
        # d = 1000; max |mean - theory| * sqrt(d) was 0.24 with 20 seeds). Tolerance = 4 standard
        # errors estimated from the seeds, with a floor 0.25/sqrt(S d) so that an unluckily small
        # 3-seed estimate cannot make it spuriously strict, plus 1/d for the O(1/d) spectral bias.
        tol = 4 * np.maximum(se[..., j], 0.25 / np.sqrt(_SEEDS * _D)) + 1.0 / _D
        assert np.all(np.abs(mean[..., j] - theory) <= tol), (lam, mean[..., j] - theory, tol)
        # and the error really is O(d^-1/2): |mean - theory| < 1.5/sqrt(d) in absolute terms
        assert np.max(np.abs(mean[..., j] - theory)) < 1.5 / np.sqrt(_D)


def test_gd_converges_to_gf_first_order():
    # Euler GD vs flow: phi_k = 1-(1-dt a)^k vs 1-exp(-a t); (1-dt a)^{t/dt} = e^{-at}(1 - a^2 t dt/2
    # + O(dt^2)), so the error is first order: halving dt must halve it (ratio 2 +- 5% at these dt,
    # second-order correction ~ dt * a^2 t ~ 2-4%).
    t = np.array([1.0, 2.5])
    for delta, lam in [(0.5, 0.0), (2.0, 0.1)]:
        gf = gradient_flow(t, delta, 0.5, lam)
        errs = []
        for dt in [0.02, 0.01, 0.005]:
            gd = gradient_flow(t, delta, 0.5, lam, dt=dt)
            errs.append(np.array([gd.train - gf.train, gd.test - gf.test, gd.Q - gf.Q, gd.M - gf.M]))
        r1 = np.abs(errs[0] / errs[1])
        r2 = np.abs(errs[1] / errs[2])
        assert np.all((r1 > 1.9) & (r1 < 2.1)) and np.all((r2 > 1.95) & (r2 < 2.05)), (r1, r2)


def test_gf_closed_form_identities():
    # test = (Q - 2M + rho + sigma^2)/2 is an identity of the closed form; rounding only.
    c = gradient_flow(np.linspace(0, 6, 13), 0.7, 0.4, 0.05, 1.3)
    assert np.allclose(c.test, 0.5 * (c.Q - 2 * c.M + 1.3 + 0.16), atol=1e-13, rtol=0)
    # t = 0: theta = 0 -> train = (rho + sigma^2)/2, Q = M = 0 (exact).
    assert abs(c.train[0] - 0.5 * (1.3 + 0.16)) < 1e-14 and c.Q[0] == 0 and c.M[0] == 0


# ----------------------------------------------------------------------------------------------
# Volterra (homogenized SGF)
# ----------------------------------------------------------------------------------------------


def test_volterra_check_values():
    # docs/theory.md §5 check values, printed to 4 decimals: allowed error = half a unit in the
    # last digit (5e-5) plus the numerical error of this solver (Richardson-extrapolated
    # trapezoid, O(h^4); measured < 1e-8 by comparing n_steps = 200 and 2000, asserted below).
    t = [0.5, 1.0, 2.5, 5.0]
    c = volterra(t, delta=2.0, sigma=0.5, tau=0.5, lam=0.1, rho=1.0)
    assert np.all(np.abs(c.train - [0.3055, 0.2008, 0.1201, 0.0986]) <= 5e-5 + 1e-7), c.train
    assert np.all(np.abs(c.test - [0.4159, 0.3325, 0.2569, 0.2364]) <= 5e-5 + 1e-7), c.test
    c2 = volterra(t, delta=2.0, sigma=0.5, tau=0.5, lam=0.1, rho=1.0, n_steps=2000)
    # Richardson (4L_{h/2}-L_h)/3 with h = 5/200 has error ~h^4 * O(1) ~ 4e-7 at worst: 1e-6
    assert np.max(np.abs(c2.train - c.train)) < 1e-6 and np.max(np.abs(c2.test - c.test)) < 1e-6


@pytest.mark.parametrize("delta,tau,T", [(2.0, 0.5, 150.0), (4.0, 1.0, 60.0)])
def test_volterra_noise_floor(delta, tau, T):
    # lambda = 0, delta > 1: L(inf) = (1 - 1/delta) sigma^2 / (2 - tau),
    # E(inf) = sigma^2 delta / (2 (delta - 1)) + tau/2 L(inf)  (docs/theory.md §5, closed form).
    sigma = 0.5
    L_inf = (1 - 1 / delta) * sigma**2 / (2 - tau)
    E_inf = sigma**2 * delta / (2 * (delta - 1)) + 0.5 * tau * L_inf
    c = volterra([T], delta, sigma, tau, 0.0, 1.0, n_steps=int(20 * T))
    # The slowest mode decays like exp(-2 m_- T) with m_- = (1 - delta^-1/2)^2 (0.086 / 0.25):
    # at these T the remaining transient is < 2e-8 (measured 1.4e-8, 7e-8 relative to the
    # quadrature of the floor); tolerance 2e-7.
    assert abs(c.train[0] - L_inf) < 2e-7 and abs(c.test[0] - E_inf) < 2e-7
    # the general-lambda noise_floor() formula agrees with the lambda = 0 closed form (quadrature
    # exact to rounding for these integrands)
    Lf, Ef = noise_floor(delta, sigma, tau)
    assert abs(Lf - L_inf) < 1e-12 and abs(Ef - E_inf) < 1e-12


def test_volterra_tau0_is_gradient_flow():
    # tau = 0 => K = K_te = 0, so L = L_GF and E = E_GF up to the cubic-spline interpolation
    # of the grid solution (~h^4 f'''' ~ 1e-9 at h = 5/400) and rounding.
    t = np.array([0.3, 1.0, 2.7, 5.0])
    for delta, lam in [(0.5, 0.0), (2.0, 0.1)]:
        v = volterra(t, delta, 0.5, 0.0, lam, 1.0)
        g = gradient_flow(t, delta, 0.5, lam, 1.0)
        assert np.max(np.abs(v.train - g.train)) < 1e-8 and np.max(np.abs(v.test - g.test)) < 1e-8
        vd = volterra([1.0, 2.5], delta, 0.5, 0.0, lam, 1.0, dt=0.05)  # discrete: exact
        gd = gradient_flow([1.0, 2.5], delta, 0.5, lam, 1.0, dt=0.05)
        assert np.max(np.abs(vd.train - gd.train)) < 1e-14 and np.max(np.abs(vd.test - gd.test)) < 1e-14


def test_critical_tau_and_stability():
    # lambda = 0: int m^2/(2m) dmu = 1/2 -> tau_c = 2 exactly (quadrature exact for a polynomial).
    for delta in (0.5, 2.0):
        assert abs(critical_tau(delta) - 2.0) < 1e-12
        assert is_stable(delta, 1.99) and not is_stable(delta, 2.01)
    # lambda > 0: against adaptive quad of the MP density (independent rule; quad error < 1e-10)
    lam, delta = 0.1, 2.0
    lo, hi = mp_support(delta)
    ref = quad(lambda m: m**2 / (2 * (lam + m)) * mp_density(m, delta), lo, hi, epsabs=1e-13)[0]
    assert abs(critical_tau(delta, lam) - 1 / ref) < 1e-8
    # the resolvent blows up beyond tau_c: the Volterra loss grows far above its initial value
    tc = critical_tau(delta, lam)
    above = volterra([40.0], delta, 0.5, 1.2 * tc, lam, n_steps=800, richardson=False)
    below = volterra([40.0], delta, 0.5, 0.8 * tc, lam, n_steps=800, richardson=False)
    assert above.train[0] > 10 * 0.5 * (1 + 0.25) and below.train[0] < 0.5 * (1 + 0.25)
    # discrete time: dt -> 0 recovers the continuous integral (first order in dt)
    ik = kernel_integrals(delta, 1.0, lam)[0]
    assert abs(kernel_integrals(delta, 1.0, lam, dt=1e-4)[0] - ik) < 1e-3 * ik


def _em_sgf_simulation(delta, lam, sigma, tau, dt, ks, seed, d=_D, replicas=4):
    """Euler-Maruyama SGF (per-sample noise, NOT homogenized) on a random ridge instance."""
    rng = np.random.default_rng(100 + seed)
    n = int(round(delta * d))
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    ts = rng.standard_normal(d)
    ts *= np.sqrt(d) / np.linalg.norm(ts)
    eps = rng.standard_normal(n)
    eps *= np.sqrt(n) / np.linalg.norm(eps)
    y = X @ ts + sigma * eps
    th = np.zeros((d, replicas))
    out = []
    for k in range(max(ks) + 1):
        res = X @ th - y[:, None]
        if k in ks:
            out.append([np.mean(0.5 * np.mean(res**2, 0)),
                        np.mean(0.5 * np.mean((th - ts[:, None]) ** 2, 0)) + 0.5 * sigma**2])
        xi = rng.standard_normal((n, replicas))
        th = th - dt * (lam * th + X.T @ res / delta) + np.sqrt(tau * dt / delta) * (X.T @ (res * xi))
    return np.array(out)


def test_discrete_volterra_matches_euler_maruyama_sgf():
    # Large step dt = 0.25 so that the discrete and continuous Volterra curves differ clearly
    # (by ~8e-3 in train loss at t = 5, > 4 standard errors of the simulation mean).
    delta, lam, sigma, tau, dt = 2.0, 0.1, 0.5, 0.5, 0.25
    ts = np.array([1.0, 2.5, 5.0])
    ks = [int(round(t / dt)) for t in ts]
    S = 6
    sims = np.array([_em_sgf_simulation(delta, lam, sigma, tau, dt, ks, s) for s in range(S)])
    mean, se = sims.mean(0), sims.std(0, ddof=1) / np.sqrt(S)
    vd = volterra(ts, delta, sigma, tau, lam, 1.0, dt=dt)
    vc = volterra(ts, delta, sigma, tau, lam, 1.0)
    disc = np.stack([vd.train, vd.test], 1)
    cont = np.stack([vc.train, vc.test], 1)
    # finite-size + SGF-noise error of the mean: 4 standard errors (measured |dev| <= 1.6 SE with
    # 6 seeds, <= 1.3 SE with 12) with the SE floored at 0.003/sqrt(S) (0.003 = smallest measured
    # single-run sd over 12 seeds), plus 1/d for the O(1/d) bias.
    tol = 4 * np.maximum(se, 0.003 / np.sqrt(S)) + 1.0 / _D
    assert np.all(np.abs(mean - disc) <= tol), (mean - disc, se)
    # the test has power: the continuous curve is excluded at t = 5 (train)
    assert abs(mean[2, 0] - cont[2, 0]) > 4 * se[2, 0]


def test_discrete_volterra_first_order():
    # discrete Volterra -> continuous with error c1 dt + c2 dt^2: the observed order
    # p = log2(e(dt)/e(dt/2)) must be 1 + O(dt). Measured p - 1 = 0.10, 0.05 (t = 1, where c1 is
    # small) and <= 0.03 elsewhere; assert |p - 1| < 0.12 and that p - 1 shrinks as dt halves.
    # The continuous reference is accurate to < 1e-7, far below the smallest error 6.7e-5.
    t = [1.0, 2.5, 5.0]
    c = volterra(t, 2.0, 0.5, 0.5, 0.1, 1.0)
    for key in ("train", "test"):
        e = [getattr(volterra(t, 2.0, 0.5, 0.5, 0.1, 1.0, dt=dt), key) - getattr(c, key)
             for dt in (0.02, 0.01, 0.005)]
        p1, p2 = np.log2(e[0] / e[1]), np.log2(e[1] / e[2])
        assert np.all(np.abs(p1 - 1) < 0.12) and np.all(np.abs(p2 - 1) < np.abs(p1 - 1)), (p1, p2)


# ----------------------------------------------------------------------------------------------
# Online-SGD ODEs
# ----------------------------------------------------------------------------------------------


def test_online_linear_regression_closed_form():
    # l = r - r* - sigma z, lambda = 0, rho = 1: psi = (Q - 2M + 1 + sigma^2)/2 obeys
    # psi' = -2(psi - sigma^2/2) + tau psi  =>  psi = psi_inf + (psi_0 - psi_inf) e^{-(2-tau)t},
    # psi_inf = sigma^2/(2-tau), psi_0 = (1 + sigma^2)/2; and M' = -(M - 1) => M = 1 - e^{-t}.
    # Gauss-Hermite with 6 nodes is exact for these quadratics; the error is the ODE solver's
    # (rtol 1e-8 over ~30 steps: measured 9e-9), so tolerance 1e-7.
    sigma, tau = 0.5, 0.5
    t = np.linspace(0, 5, 11)
    c = solve_online(t, m=1, k=1, tau=tau, ell=lambda r, s, z: r - s - sigma * z, noise=("normal",),
                     loss=lambda r, s, z: 0.5 * (r - s - sigma * z)[:, 0] ** 2, n_gh=6, n_noise=6)
    psi_inf = sigma**2 / (2 - tau)
    psi = psi_inf + (0.5 * (1 + sigma**2) - psi_inf) * np.exp(-(2 - tau) * t)
    assert np.max(np.abs(c.test - psi)) < 1e-7
    assert np.max(np.abs(c.M[:, 0, 0] - (1 - np.exp(-t)))) < 1e-7


_BETA = 3.0


def _bern_ell(r, s, z):  # logistic loss on y in {0,1}, y = 1{u < sigmoid(beta s)}
    return expit(r) - (z < expit(_BETA * s)).astype(float)


def _bern_moments(r, s):  # E_u l = sig(r) - p, E_u l^2 = sig(r)^2 - 2 sig(r) p + p  (y^2 = y)
    p, a = expit(_BETA * s), expit(r)
    return a - p, (a * a - 2 * a * p + p)[:, :, None]


def _mc_rhs(C, ell_fn, noise_sampler, m, k, tau, lam, N, rng):
    """Independent Monte Carlo of the ODE right-hand side with per-component standard errors."""
    L = np.linalg.cholesky(C + 1e-300 * np.eye(m + k))
    g = rng.standard_normal((N, m + k)) @ L.T
    r, s = g[:, :m], g[:, m:]
    l = ell_fn(r, s, noise_sampler(rng, N))
    Q, M = C[:m, :m], C[:m, m:]
    # per-sample contributions to dQ (all m*m entries) and dM
    dq = -2 * lam * Q[None] - (r[:, :, None] * l[:, None, :] + l[:, :, None] * r[:, None, :]) \
        + tau * l[:, :, None] * l[:, None, :]
    dm = -lam * M[None] - l[:, :, None] * s[:, None, :]
    return dq.mean(0), dq.std(0) / np.sqrt(N), dm.mean(0), dm.std(0) / np.sqrt(N)


def test_online_rhs_vs_monte_carlo_bernoulli_logistic():
    tau, lam = 0.7, 0.05
    Q, M = np.array([[1.3]]), np.array([[0.6]])
    C = np.array([[1.3, 0.6], [0.6, 1.0]])
    rng = np.random.default_rng(7)
    dq, dq_se, dm, dm_se = _mc_rhs(C, _bern_ell, lambda g, N: g.random((N, 1)), 1, 1, tau, lam, 2_000_000, rng)
    dQa, dMa = online_rhs(Q, M, 1.0, tau, lam, ell_moments=_bern_moments)
    dQu, dMu = online_rhs(Q, M, 1.0, tau, lam, ell=_bern_ell, noise=("uniform",), n_noise=1600)
    # quadrature error (analytic moments: GH 48^2, ~2e-9) << MC standard error (~4e-4): 5 SE
    assert abs(dQa - dq).max() < 5 * dq_se.max() and abs(dMa - dm).max() < 5 * dm_se.max()
    assert abs(dQu - dq).max() < 5 * dq_se.max() and abs(dMu - dm).max() < 5 * dm_se.max()
    # the midpoint rule in the discontinuous uniform u converges like O(1/n_u) at fixed GH grid:
    # measured |error| of E[w l], E[l^2], E[l r*] <= 1.3e-5 at n_u = 1600; tolerance 5e-5 on the
    # combined right-hand side (dQ combines 2 E[wl] + tau E[l^2]).
    assert abs(dQu - dQa).max() < 5e-5 and abs(dMu - dMa).max() < 5e-5


def test_online_rhs_vs_monte_carlo_probit_and_committee():
    rng = np.random.default_rng(11)
    # probit teacher, logistic student: y = sign(s + 0.3 z), l = -y sigmoid(-y r); analytic
    # noise average with P(y = 1 | s) = Phi(s / 0.3).
    def moments(r, s):
        p, a = ndtr(s / 0.3), expit(r)
        return -p * (1 - a) + (1 - p) * a, (p * (1 - a) ** 2 + (1 - p) * a**2)[:, :, None]

    def ell(r, s, z):
        y = np.sign(s + 0.3 * z)
        return -y * expit(-y * r)

    C = np.array([[0.8, -0.4], [-0.4, 1.0]])
    dq, dq_se, dm, dm_se = _mc_rhs(C, ell, lambda g, N: g.standard_normal((N, 1)), 1, 1, 1.0, 0.0, 1_000_000, rng)
    dQ, dM = online_rhs(C[:1, :1], C[:1, 1:], 1.0, 1.0, 0.0, ell_moments=moments)
    assert abs(dQ - dq).max() < 5 * dq_se.max() and abs(dM - dm).max() < 5 * dm_se.max()  # 5 SE

    # m = 2 committee with fixed second layer v, teacher y = tanh(s) + 0.2 z (smooth in z):
    # l_a = (sum_b v_b tanh(r_b) - y) v_a (1 - tanh(r_a)^2). Checks the matrix form (E[w l^T]
    # is not symmetric here) and the 3-d eigen-square-root quadrature.
    v = np.array([1.0, 0.5])

    def ell2(r, s, z):
        y = np.tanh(s[:, 0]) + 0.2 * z[:, 0]
        return ((np.tanh(r) @ v - y)[:, None]) * v[None, :] * (1 - np.tanh(r) ** 2)

    C2 = np.array([[0.9, 0.2, 0.3], [0.2, 0.5, -0.1], [0.3, -0.1, 1.0]])
    dq, dq_se, dm, dm_se = _mc_rhs(C2, ell2, lambda g, N: g.standard_normal((N, 1)), 2, 1, 0.5, 0.1, 1_000_000, rng)
    dQ, dM = online_rhs(C2[:2, :2], C2[:2, 2:], 1.0, 0.5, 0.1, ell=ell2, noise=("normal",), n_gh=24, n_noise=12)
    assert np.all(np.abs(dQ - dq) < 5 * dq_se) and np.all(np.abs(dM - dm) < 5 * dm_se)  # 5 SE


def test_online_ode_vs_online_sgd_simulation():
    # Online SGD, batch 1, fresh x ~ N(0, I/d) each step, eta = tau, t = k eta / d
    # (docs/theory.md §1); Bernoulli logistic teacher. d = 500, 32 runs: the mean has
    # standard error ~1e-3 (estimated from the runs) and O(1/d) = 2e-3 bias; tolerance 4 SE + 2/d.
    tau, lam, d, S = 0.5, 0.05, 500, 32

    def loss_mean(r, s):
        p, r = expit(_BETA * s)[:, 0], r[:, 0]
        return p * np.logaddexp(0, -r) + (1 - p) * np.logaddexp(0, r)

    ts = [0.5, 1.0, 2.0]
    c = solve_online(ts, m=1, k=1, tau=tau, lam=lam, ell_moments=_bern_moments, loss_mean=loss_mean)
    rng = np.random.default_rng(3)
    ths = rng.standard_normal((d, S))
    ths *= np.sqrt(d) / np.linalg.norm(ths, axis=0)
    th = np.zeros((d, S))
    ks = {int(round(t * d / tau)): i for i, t in enumerate(ts)}
    Qs, Ms = np.zeros((3, S)), np.zeros((3, S))
    for k in range(max(ks) + 1):
        if k in ks:
            Qs[ks[k]], Ms[ks[k]] = np.mean(th * th, 0), np.mean(th * ths, 0)
        x = rng.standard_normal((d, S)) / np.sqrt(d)
        r, s = np.einsum("ij,ij->j", x, th), np.einsum("ij,ij->j", x, ths)
        y = (rng.random(S) < expit(_BETA * s)).astype(float)
        th -= tau * (lam * th / d + x * (expit(r) - y))
    for sim, ode in [(Qs, c.Q[:, 0, 0]), (Ms, c.M[:, 0, 0])]:
        se = sim.std(1, ddof=1) / np.sqrt(S)
        assert np.all(np.abs(sim.mean(1) - ode) <= 4 * se + 2.0 / d), (sim.mean(1), ode, se)
    # test loss = E[loss(w, r*)] at the ODE's (Q, M): compare with Monte Carlo at t = 2 (5 SE)
    g = rng.standard_normal((1_000_000, 2)) @ np.linalg.cholesky(
        np.array([[c.Q[2, 0, 0], c.M[2, 0, 0]], [c.M[2, 0, 0], 1.0]])).T
    lv = loss_mean(g[:, :1], g[:, 1:])
    assert abs(c.test[2] - lv.mean()) < 5 * lv.std() / 1e3


def test_from_kernels_adapter_and_no_numba_import():
    # A stand-in for a generated module (docs/kernels.md contract) with the Bernoulli logistic
    # model: the adapter must give exactly the same ODE solution as the plain callable (same
    # quadrature, so equal to rounding: 1e-12).
    def ell_batch(r, s, z, p, out):
        assert r.flags.c_contiguous and out.shape == (r.shape[0], 1)
        out[:] = expit(r) - (z < expit(p[0] * s)).astype(float)

    def loss_batch(r, s, z, p, out):
        y = (z[:, 0] < expit(p[0] * s[:, 0])).astype(float)
        out[:] = np.logaddexp(0, r[:, 0]) - y * r[:, 0]

    kern = types.SimpleNamespace(M=1, K=1, NZ=1, NOISE=("uniform",), HAS_LOSS=True, DISCONTINUOUS=True,
                                 ell_batch=ell_batch, loss_batch=loss_batch)
    kw = from_kernels(kern, [_BETA])
    assert kw["m"] == 1 and kw["k"] == 1 and kw["noise"] == ("uniform",) and kw["step"] == 0.05
    kw["step"] = 0.25  # coarse RK4 keeps this test cheap; both solves use the same steps
    t = [0.5, 1.0]
    a = solve_online(t, tau=0.5, n_noise=100, n_gh=16, **kw)
    b = solve_online(t, tau=0.5, m=1, k=1, ell=_bern_ell, noise=("uniform",), n_noise=100, n_gh=16, step=0.25,
                     loss=lambda r, s, z: np.logaddexp(0, r[:, 0]) - (z[:, 0] < expit(_BETA * s[:, 0])) * r[:, 0])
    assert np.allclose(a.Q, b.Q, atol=1e-12, rtol=0) and np.allclose(a.test, b.test, atol=1e-12, rtol=0)
    # against the smooth analytic-moments route: O(1/n_u) quadrature error of the jump in u
    # (measured 1e-4 - 1e-3 at n_u = 100, see the module docstring) plus the RK4 error at
    # step 0.25 (< 1e-5 here); tolerance 3e-3.
    c = solve_online(t, tau=0.5, ell_moments=_bern_moments)
    assert np.max(np.abs(a.Q - c.Q)) < 3e-3 and np.max(np.abs(a.M - c.M)) < 3e-3, (a.Q - c.Q, a.M - c.M)
    # importing dmftgen.reference must not import numba (it may already be imported by dmftgen)
    code = ("import sys, dmftgen; before = 'numba' in sys.modules; import dmftgen.reference; "
            "sys.exit(0 if before or 'numba' not in sys.modules else 1)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_online_expectations_singular_covariance():
    # theta0 = 0: Q = 0, M = 0 is a singular covariance; the eigen square root gives w = 0 exactly,
    # so E[w l] = 0 and E[l r*] = E[(0 - r* - sigma z) r*] = -rho (exact for GH).
    ex = online_expectations(np.zeros((1, 1)), np.zeros((1, 1)), 1.0, ell=lambda r, s, z: r - s - 0.5 * z,
                             noise=("normal",), n_gh=8, n_noise=8)
    assert abs(ex["Ewl"][0, 0]) < 1e-14 and abs(ex["Els"][0, 0] + 1.0) < 1e-13
    assert abs(ex["Ell"][0, 0] - 1.25) < 1e-13
