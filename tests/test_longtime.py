"""Long horizons (dmftgen.dmft.longtime) and the stationary regime (dmftgen.dmft.stationary).

References: the continuous and discrete Marchenko-Pastur/Volterra closed forms of ridge
regression (overlap M exactly, losses and their noise floor), a fine uniform-grid DMFT solve on a
common horizon, synthetic curves with a known plateau, and the stationarity balance dQ/dt = 0 of
the logistic model.

Tolerances: "3 err" is a 3-sigma Monte Carlo allowance (the solver's own between-replica errors;
for solve_long those of the extrapolated replica curves). Discretisation
allowances are derived next to each assertion from the measured first-order error
(``*_disc`` = |f(dt/2) - f(dt)| is the error of the dt/2 solve, so a uniform solve at dt_ref has
error ~ disc * dt_ref / (dt/2)). Seeds are fixed: every test is deterministic.
Cost (2 shared cores): ~40 s by default; the T = 50-100 runs are marked slow.
"""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from dmftgen.config import Settings
from dmftgen.dmft import solve
from dmftgen.dmft.longtime import compare_overlap, solve_long
from dmftgen.dmft.stationary import detect_plateau, linreg_stationary, plateau, q_balance, stationary_values
from dmftgen.errors import SettingsError
from dmftgen.reference.marchenko_pastur import gradient_flow
from dmftgen.reference.volterra import noise_floor, volterra

SIGMA = 0.5          # linreg label noise (model default)
DELTA, TAU, LAM = 2.0, 0.5, 0.1


@pytest.fixture(scope="module")
def linreg_long(linreg):
    """T = 30 at dt = 0.2 (K = 150 and 300): stationary from t ~ 10 (slowest rate ~ 0.37)."""
    return solve_long(linreg, Settings(delta=DELTA, tau=TAU, lam=LAM, T=30, dt=0.2, seed=21), paths=8000)


@pytest.fixture(scope="module")
def linreg_uniform(linreg):
    """Fine uniform grid (dt = 0.025, K = 200) on the common horizon T = 5."""
    return solve(linreg, Settings(delta=DELTA, tau=TAU, lam=LAM, T=5, dt=0.025, seed=22), paths=8000)


def _c(arr):
    arr = np.asarray(arr, float)
    return arr.reshape(arr.shape[0], -1)[:, 0] if arr.ndim > 1 else arr


def _bonferroni(n, dof=7, alpha=0.01):
    """|t| threshold for n pointwise comparisons at a family-wise false-alarm rate ``alpha``: the
    Student-t quantile (``dof`` = R - 1 = 7 for the default 8 replicas: each time's error is the
    spread of 8 replica curves, so its ratio to the true sd scatters, and over 26-151 times a
    correct solve reaches |z| = 4-6 somewhere: measured 3.6-5.8 over seeds 21-23) at alpha / (2n).
    n = 26: 6.35; n = 151: 8.41."""
    from scipy.stats import t as student_t

    return float(student_t.isf(alpha / (2.0 * n), dof))


def _check_overlap(long, ref, keys, dt_ref, rem=None):
    """Per common time: |long - ref| <= z_n sqrt(e_long^2 + e_ref^2) + disc * dt_ref / (dt/2)
    + |rem| + 1e-3, z_n = :func:`_bonferroni` (n times, 7 degrees of freedom: the smaller of the
    two errors', conservative as in dmftgen.analysis.stats).

    The second term is the first-order error of the uniform reference. The long solve's own error
    after extrapolation is O(dt^2): ``rem[key]``, where known exactly (ridge regression: the
    Richardson combination of the discrete closed forms minus the continuous one; up to 5e-3 on
    the test loss at t <= 1 for dt = 0.2), else inside the 1e-3 (measured 4e-3 at t = 0.2 on the
    exact M of ridge regression, 5e-5 for t >= 5). Since ``*_err`` of a replica solve_long is the
    spread of the extrapolated replicas (honest, no longer the conservative
    sqrt(4 e_fine^2 + e_coarse^2), 1.6-3.0 times larger), the remainder must be allowed for
    explicitly: it reached 3.8 of the honest error bars at t = 0.2 (seed 21).
    """
    dt_half = long.meta["long"]["dt"][1]
    step = int(round((long.t[1] - long.t[0]) / (ref.t[1] - ref.t[0])))
    idx = np.arange(0, len(ref.t), step)[: len(long.t)]
    n = idx.size
    assert n >= 10
    for key in keys:
        a, b = _c(long[key])[:n], _c(ref[key])[idx]
        ea, eb = _c(long[key + "_err"])[:n], _c(ref[key + "_err"])[idx]
        allow = _bonferroni(n) * np.hypot(ea, eb) + _c(long[key + "_disc"])[:n] * dt_ref / dt_half + 1e-3
        if rem is not None and key in rem:
            allow = allow + np.abs(rem[key][:n])
        assert np.all(np.abs(a - b) <= allow), (key, np.max(np.abs(a - b) - allow))


# -------------------------------------------------------------------------------------------------
# plateau detection on synthetic curves with a known answer
# -------------------------------------------------------------------------------------------------
def test_plateau_synthetic_exponential_approach():
    rng = np.random.default_rng(5)
    t = np.linspace(0, 40, 401)
    s = 2e-3
    y_inf, A = 0.3, 0.5
    y = y_inf + A * np.exp(-t / 2) + s * rng.standard_normal(t.size)
    p = detect_plateau(t, y, np.full(t.size, s), key="loss")
    assert p.reached
    # the window mean of pure noise has sd s / sqrt(n) << s; 3 s is the (conservative) reported error
    assert abs(p.value - y_inf) <= 3 * p.err
    # drift left at t_reached must be below a few error bars: A e^{-t/2} = 10 s at t = 6.4, and the
    # test must not wait until the drift is far below the noise (0.3 s at t = 13.4)
    assert 2 * np.log(A / (10 * s)) <= p.t_reached <= 2 * np.log(A / (0.3 * s)), p.t_reached


def test_plateau_synthetic_correlated_noise_and_offsets():
    # DMFT-like errors: one common offset for all times (fully correlated), err = its sd
    t = np.linspace(0, 50, 251)
    y = 1.0 - 0.8 * np.exp(-t / 5) + 0.01  # offset of one error bar
    p = detect_plateau(t, y, np.full(t.size, 0.01))
    assert p.reached and abs(p.value - 1.0) <= 3 * p.err
    # the remaining drift 0.8 e^{-t/5} drops below 3 * 0.01 at t = 16.4
    assert 10.0 <= p.t_reached <= 17.0, p.t_reached


def test_plateau_rejects_drifting_curves():
    rng = np.random.default_rng(6)
    t = np.linspace(0, 40, 401)
    s = 1e-3
    e = np.full(t.size, s)
    # a ramp whose drift over the last 20 % (8 time units) is 0.08 = 80 s
    assert not detect_plateau(t, 0.01 * t + s * rng.standard_normal(t.size), e).reached
    # slow relaxation: e^{-t/50} still drifts by ~0.07 over the last window
    assert not detect_plateau(t, np.exp(-t / 50), e).reached
    with pytest.raises(SettingsError):
        detect_plateau(t, np.exp(-t), None)  # exact curve without a tolerance


def test_plateau_drift_error_from_the_replicas():
    """Errors that wander in time (each of 8 replicas off by its own slope b_r (t - 18), b_r ~
    N(0, 0.01^2), plus small white noise): the mean curve can drift across the last window by more
    than 3 e_bar from noise alone, and without the replicas' curves the test refuses the plateau
    (here, seed 0; 4 of 30 seeds). With them, the drift's own error sd_r(drift_r) / sqrt(8) is
    measured and the plateau is accepted (30 of 30). A real trend, the same in every replica, has
    replicas that agree on their drift: refused either way. (The drift may reach 4.53 of its
    measured errors: the Student-t quantile, 7 degrees of freedom, at z = 3's rate.)"""
    t = np.linspace(10, 20, 41)
    rng = np.random.default_rng(0)
    reps = 1.0 + 0.01 * rng.standard_normal((8, 1)) * (t - 18.0) + 0.001 * rng.standard_normal((8, t.size))
    y, e = reps.mean(0), reps.std(0, ddof=1) / np.sqrt(8)
    assert not detect_plateau(t, y, e).reached
    p = detect_plateau(t, y, e, reps=reps)
    assert p.reached and p.t_reached == t[0]
    trend = reps + 0.01 * (t - 10.0)
    for r in (None, trend):
        assert not detect_plateau(t, trend.mean(0), e, reps=r).reached


def test_dmft_result_keeps_each_replicas_curve(logistic):
    """``*_reps`` (R, n, ...) of a solve are the replicas' own curves. Q, M and the train loss are
    kept as each replica computed them; the test observables are evaluated once, at the replica
    mean, and each replica's curve is F(Qbar, Mbar) + grad F . (Q_r - Qbar, M_r - Mbar). Checked
    against F(Q_r, M_r) evaluated directly: within 0.025 of the error bar for the test loss
    (measured, seeds 0-2; a replica lies up to ~6 error bars from the mean, so a missing or
    wrong-signed gradient term would be off by error bars); the bound, 0.1, is the first-order
    term's reach. The Dataset names the replica dimension."""
    from dmftgen.codegen import load_kernels
    from dmftgen.dataset import to_dataset
    from dmftgen.observables import test_observables

    res = solve(logistic, Settings(delta=2, tau=0.5, lam=0.1, T=1, dt=0.1), paths=4000)
    R = res.meta["replicas"]
    for key in ("Q", "M", "train_loss", "test_loss", "test_error"):
        assert res[key + "_reps"].shape == (R,) + res[key].shape
    kern = load_kernels(logistic)
    err = res["test_loss_err"][1:]
    for r in range(R):
        F = test_observables(kern, logistic, res["Q_reps"][r], res["M_reps"][r], res["rho"], logistic.param_vector())
        assert np.all(np.abs(res["test_loss_reps"][r][1:] - F["test_loss"][1:]) <= 0.1 * err), r
    assert to_dataset(res)["Q_reps"].dims == ("replica", "t", "a", "b")


def test_solve_long_takes_the_replicas_option(linreg):
    """replicas="auto" (the documented default value) and an explicit R are solve options like any
    other: they were refused (R > 1: "not supported", although the default runs 8 replicas) or
    crashed (int("auto")). Each gives R extrapolated replica curves whose spread is ``*_err``."""
    s = Settings(delta=DELTA, tau=TAU, lam=LAM, T=1.0, dt=0.2, seed=3)
    auto = solve_long(linreg, s, paths=800)
    for opt in ("auto", 8):
        res = solve_long(linreg, s, paths=800, replicas=opt)
        assert res.ok and np.array_equal(res["train_loss"], auto["train_loss"])
    res = solve_long(linreg, s, paths=800, replicas=2)
    reps = res["train_loss_reps"]
    assert reps.shape == (2, len(res.t))
    assert np.allclose(res["train_loss_err"], reps.std(0, ddof=1) / np.sqrt(2), rtol=1e-12, atol=0)


# -------------------------------------------------------------------------------------------------
# ridge regression: long horizon vs exact references and vs the uniform grid
# -------------------------------------------------------------------------------------------------
def test_long_horizon_overlap_M_is_second_order(linreg, linreg_long):
    # M of ridge regression involves no Monte Carlo (deterministic tangents): exact comparison
    # with the continuous closed form isolates the discretisation error of the extrapolation.
    ref = gradient_flow(linreg_long.t, DELTA, sigma=SIGMA, lam=LAM)
    err02 = np.abs(_c(linreg_long["M"]) - ref.M)
    coarse = np.abs(_c(linreg_long["M_coarse"]) - ref.M)
    assert err02.max() < 0.2 * coarse.max()  # measured 0.0037 vs 0.038
    short = solve_long(linreg, Settings(delta=DELTA, tau=TAU, lam=LAM, T=5, dt=0.1, seed=21), paths=400, groups=4)
    err01 = np.abs(_c(short["M"]) - gradient_flow(short.t, DELTA, sigma=SIGMA, lam=LAM).M)
    # second order: halving dt divides the error by ~4 (measured 4.8); first order would give 2
    assert err02[linreg_long.t <= 5 + 1e-9].max() / err01.max() > 3.0


def test_long_horizon_matches_uniform_grid_on_common_horizon(linreg_long, linreg_uniform):
    # the exact O(dt^2) remainder of the extrapolation, 2 f(0.1) - f(0.2) - f(0), from the closed forms
    t = linreg_long.t[linreg_long.t <= 5 + 1e-9]
    v0, v1, v2 = (volterra(t, DELTA, SIGMA, TAU, LAM, dt=dt) for dt in (None, 0.1, 0.2))
    rem = {key: 2 * getattr(v1, f) - getattr(v2, f) - getattr(v0, f)
           for key, f in (("train_loss", "train"), ("test_loss", "test"), ("Q", "Q"))}
    _check_overlap(linreg_long, linreg_uniform, ("train_loss", "test_loss", "Q"), dt_ref=0.025, rem=rem)
    cmp = compare_overlap(linreg_long, linreg_uniform)
    assert cmp["train_loss"]["n"] == 26 and cmp["train_loss"]["t_max"] == pytest.approx(5.0)


def test_long_horizon_matches_continuous_volterra(linreg_long):
    # MC plus the O(dt^2) remainder of the extrapolation, rem = 2 f(0.1) - f(0.2) - f(0) from the
    # discrete and continuous closed forms (up to 5e-3 at t <= 1, -8.4e-4 at the noise floor).
    # The MC allowance is per time, over all 151 times, with the honest 7-dof errors of the
    # extrapolated replicas: _bonferroni(151) = 8.41 error bars (the old 3 error bars + 2e-3 was
    # with the conservative sqrt(4 e_f^2 + e_c^2), 1.6-3.0 times larger; measured max |z| over
    # the times 2.6 (train) and 5.8 (test) for seed 21, 3.6-5.1 for seeds 22-23).
    # The test loss is taken from the solver's own (Q, M), (Q - 2M + rho + sigma^2)/2, as in
    # tests/test_dmft.py: independent of the test-loss quadrature of dmftgen.observables.
    res = linreg_long
    v, v1, v2 = (volterra(res.t, DELTA, SIGMA, TAU, LAM, dt=dt) for dt in (None, 0.1, 0.2))
    te = 0.5 * (_c(res["Q"]) - 2 * _c(res["M"]) + 1.0 + SIGMA ** 2)
    te_err = 0.5 * _c(res["Q_err"])  # M is exact for ridge regression (no Monte Carlo)
    z = _bonferroni(len(res.t))
    for name, val, err, f in (("train", res["train_loss"], res["train_loss_err"], "train"), ("test", te, te_err, "test")):
        ref = getattr(v, f)
        rem = 2 * getattr(v1, f) - getattr(v2, f) - ref
        d = np.abs(val - ref)
        # (+ 1e-12: round-off at t = 0, where both are exact and the error is 0)
        assert np.all(d <= z * err + np.abs(rem) + 1e-12), (name, np.max(d - z * err - np.abs(rem)))


def test_linreg_stationary_continuous_equals_noise_floor():
    assert linreg_stationary(DELTA, SIGMA, TAU, LAM) == pytest.approx(noise_floor(DELTA, SIGMA, TAU, LAM), rel=1e-12)
    # closed form for lam = 0, delta > 1 (docs/theory.md §5)
    L, E = linreg_stationary(2.0, SIGMA, 0.5, 0.0)
    assert L == pytest.approx(0.5 * SIGMA ** 2 / 1.5, rel=1e-6)
    assert E == pytest.approx(SIGMA ** 2 + 0.25 * L, rel=1e-6)
    # the discrete floor tends to the continuous one linearly in dt
    L1, L2 = linreg_stationary(DELTA, SIGMA, TAU, LAM, dt=0.01)[0], linreg_stationary(DELTA, SIGMA, TAU, LAM, dt=0.02)[0]
    Lc = linreg_stationary(DELTA, SIGMA, TAU, LAM)[0]
    assert (L2 - Lc) / (L1 - Lc) == pytest.approx(2.0, rel=0.02)
    assert linreg_stationary(DELTA, SIGMA, 3.0, 0.0) == (np.inf, np.inf)  # tau above critical (2)


def test_stationary_values_match_the_direct_stationary_solve(linreg_long):
    """Plateau of the long-time solver vs the stationary state solved directly, at each step.

    The discrete floor at dt is exact for the DMFT at dt (MC error only), for the coarse (0.2)
    and fine (0.1) solves; their Richardson combination is compared with 2 L(0.1) - L(0.2).
    """
    res = linreg_long
    for key, i in (("train_loss", 0), ("test_loss", 1)):
        f2 = linreg_stationary(DELTA, SIGMA, TAU, LAM, dt=0.2)[i]
        f1 = linreg_stationary(DELTA, SIGMA, TAU, LAM, dt=0.1)[i]
        fc = linreg_stationary(DELTA, SIGMA, TAU, LAM)[i]
        for sub, ref in (("_coarse", f2), ("_fine", f1), ("", 2 * f1 - f2)):
            p = plateau(res, key + sub, atol=0.0)
            assert p.reached, (key + sub, p)
            # slowest relaxation rate ~0.37 (Volterra-renormalised): drift below the MC error
            # (~3e-3) well before t = 15
            assert p.t_reached <= 15.0, (key + sub, p.t_reached)
            assert abs(p.value - ref) <= 3 * p.err, (key + sub, p.value, ref, p.err)
        # Richardson plateau vs the continuous floor: MC + the O(dt^2) remainder |2 f1 - f2 - fc|
        p = plateau(res, key, atol=0.0)
        assert abs(p.value - fc) <= 3 * p.err + abs(2 * f1 - f2 - fc)
    vals = stationary_values(res)
    assert {"train_loss", "test_loss", "Q", "M"} <= set(vals)
    assert "train_loss_coarse" not in vals


# -------------------------------------------------------------------------------------------------
# logistic regression with ridge: long horizon vs the uniform grid
# -------------------------------------------------------------------------------------------------
def test_logistic_long_horizon_matches_uniform_grid(logistic):
    lo = solve_long(logistic, Settings(delta=DELTA, tau=TAU, lam=LAM, T=20, dt=0.2, seed=23), paths=4000)
    ro = solve(logistic, Settings(delta=DELTA, tau=TAU, lam=LAM, T=4, dt=0.05, seed=24), paths=4000)
    assert lo.ok and ro.ok
    _check_overlap(lo, ro, ("train_loss", "test_loss", "Q", "M"), dt_ref=0.05)
    # the stationarity balance 2 lam Q + 2 E[r ell] - tau E[ell^2] = -dQ/dt shrinks as the run
    # settles (it is -dQ/dt exactly up to O(dt^2) after extrapolation). Q still relaxes at t = 20:
    # measured B(20) / B(2) = 0.05-0.10 (mean 0.07, sd 0.02 from the Monte Carlo noise of B(20)
    # over seeds 23-26 at two tangent counts; B(2) = -0.29..-0.30); the bound 0.15 is the mean
    # + 4 sd, while a run that does not settle keeps the ratio near 1
    B, scale = q_balance(lo)
    k2 = int(np.argmin(np.abs(lo.t - 2.0)))
    assert abs(B[-1, 0, 0]) < 0.15 * abs(B[k2, 0, 0])
    # and equals -dQ/dt from the curve itself (central differences, 20 % + MC allowance)
    Q = _c(lo["Q"])
    dQ = np.gradient(Q, lo.t)
    assert abs(B[k2, 0, 0] + dQ[k2]) <= 0.2 * abs(dQ[k2]) + 3 * _c(lo["Q_err"])[k2] / 0.2


# -------------------------------------------------------------------------------------------------
# command line
# -------------------------------------------------------------------------------------------------
def test_cli_solve_long_writes_result_and_stationary_values(tmp_path, capsys):
    from dmftgen.commands import solve_long as cmd
    from dmftgen.results import Result

    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers())
    out = tmp_path / "long.npz"
    args = parser.parse_args(["solve-long", "linreg", "--lam", "0.1", "--T", "20", "--dt", "0.2",
                              "--paths", "400", "--groups", "4", "--out", str(out)])
    assert cmd.run(args) == 0
    res = Result.load(out)
    assert res.t[-1] == pytest.approx(20.0)
    st = res.meta["stationary"]["train_loss"]
    assert set(st) >= {"reached", "value", "err", "t_reached"}
    assert res.meta["long"]["steps"] == [100, 200]
    assert "stationary" in capsys.readouterr().out


# -------------------------------------------------------------------------------------------------
# slow: the long horizons themselves
# -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_linreg_t100_stationary_vs_noise_floor(linreg):
    # 4000 paths per replica: the finite-P bias of the plateau (the replicas' kernels are Monte
    # Carlo estimates fed back into their own paths, a bias ~ R/P not in the error bars) is here
    # -0.0066 on the test loss with 1000 paths per replica (mean of seeds 1, 2, 3, 31; z -1.8 on
    # average against the errors of randomised-QMC static draws) and -0.0021 with 4000 (z -1.0)
    res = solve_long(linreg, Settings(delta=DELTA, tau=TAU, lam=0.0, T=100, dt=0.2, seed=31), paths=32000)
    assert res.ok
    # lam = 0, delta = 2: slowest GF rate m_- = 0.086, so the floor is reached only late
    for key, i in (("train_loss", 0), ("test_loss", 1)):
        f2 = linreg_stationary(DELTA, SIGMA, TAU, 0.0, dt=0.2)[i]
        p = plateau(res, key + "_coarse", atol=0.0)
        assert p.reached and abs(p.value - f2) <= 3 * p.err, (key, p, f2)
        fc, f1 = linreg_stationary(DELTA, SIGMA, TAU, 0.0)[i], linreg_stationary(DELTA, SIGMA, TAU, 0.0, dt=0.1)[i]
        p = plateau(res, key, atol=0.0)
        assert p.reached and abs(p.value - fc) <= 3 * p.err + abs(2 * f1 - f2 - fc), (key, p, fc)


@pytest.mark.slow
def test_logistic_t50_reaches_a_stationary_state(logistic):
    res = solve_long(logistic, Settings(delta=DELTA, tau=TAU, lam=LAM, T=50, dt=0.2, seed=32), paths=10000)
    assert res.ok
    vals = stationary_values(res, keys=["train_loss", "test_loss", "Q", "M"])
    for key, p in vals.items():
        assert p.reached and p.t_reached < 30.0, (key, p)
    # stationary state: dQ/dt = 0 <=> the balance B vanishes. Its Monte Carlo error is the
    # replicas' spread of B itself (Q_balance_err; the errors of Q, E r ell, E ell ell are
    # correlated), here 0.012-0.014 with Richardson's sqrt(4 e_f^2 + e_c^2). Over the plateau,
    # |mean B| <= 3 x the mean error (an upper bound of the average's error): seeds 0..6 and 32
    # measured |z| <= 0.8, mean B -0.0045 (8 seeds, error 0.0043). The former bound, a fixed 1 % of
    # the scale 2 lam Q + 2 |E r ell| + tau E ell^2 (0.0087), sat below the error and failed at
    # seed 32 (B = -0.0107, z = -0.77). What it resolves at P = 1e4: a B beyond ~0.05, 6 % of the
    # scale (a tau E ell^2 off by half, 0.018, is not resolved: checked); the error's own bound
    # below keeps that resolution.
    B, scale = q_balance(res)
    late = res.t >= vals["Q"].t_reached
    np.testing.assert_allclose(B, res["Q_balance"], rtol=1e-12, atol=1e-15)  # the same B two ways
    err = np.asarray(res["Q_balance_err"])[late, 0, 0].mean()
    assert err < 0.02 * scale[late].mean()  # measured 0.0138 of 0.874 (1.6 %)
    assert abs(B[late, 0, 0].mean()) <= 3.0 * err

