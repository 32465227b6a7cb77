"""compare / w2: end-to-end command, atomic outputs, W2 formulas against independent references,
assumption warnings, and the DMFT solver against the closed-form reference curves."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import sympy as sp
from scipy import stats

from dmftgen import Model, Settings, load_model, student, teacher
from dmftgen.cli import main
from dmftgen.compare import assumption_warnings, discrepancy
from dmftgen.w2 import loglog_slope, w2, w2_1d, w2_against_dmft, w2_assignment, wp_1d

TINY = ["--d", "64", "--seeds", "2", "--T", "0.4", "--dt", "0.1", "--paths", "400"]


# ----------------------------------------------------------------------------------------------
# compare: end to end, atomic outputs
# ----------------------------------------------------------------------------------------------
def test_compare_command_writes_figure_table_summary(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "linreg", *TINY, "--method", "both", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    for name in ("figure.png", "table.csv", "table.json", "summary.txt", "sim_sgd.npz", "sim_sgf.npz",
                 "dmft.npz"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.txt").read_text()
    assert summary in printed and "max z" in summary and "train_loss" in summary
    # CSV: one row per grid time (T/dt + 1 = 5), the documented columns, z finite where errors exist
    lines = (out / "table.csv").read_text().splitlines()
    head = lines[0].split(",")
    assert len(lines) == 1 + 5
    for col in ("t", "epochs", "train_loss_dmft", "train_loss_dmft_err", "train_loss_sgd",
                "train_loss_sgd_sem", "train_loss_sgd_z", "test_loss_sgf_z", "Q_dmft", "M_sgf"):
        assert col in head, col
    rows = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]])
    t = rows[:, head.index("t")]
    np.testing.assert_allclose(t, 0.1 * np.arange(5), atol=1e-12)
    # epochs = t / (delta tau) with the defaults delta = 2, tau = 0.5
    np.testing.assert_allclose(rows[:, head.index("epochs")], t, atol=1e-12)
    # z recomputed from the table's own columns (the definition, independently of compare.py)
    sim, sem = rows[:, head.index("test_loss_sgd")], rows[:, head.index("test_loss_sgd_sem")]
    dm, err = rows[:, head.index("test_loss_dmft")], rows[:, head.index("test_loss_dmft_err")]
    k = slice(1, None)  # t = 0: both sides exact (theta^0 = 0)
    np.testing.assert_allclose(rows[k, head.index("test_loss_sgd_z")],
                               np.abs(sim - dm)[k] / np.sqrt(sem[k] ** 2 + err[k] ** 2), rtol=1e-8)
    js = json.loads((out / "table.json").read_text())
    assert js["model"] == "linreg" and set(js["observables"]["train_loss"]["sim"]) == {"sgd", "sgf"}
    assert js["options"]["batch"] == 1 and js["options"]["eta"] == pytest.approx(0.5)


def test_compare_failure_keeps_earlier_outputs(tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    assert main(["compare", "linreg", *TINY, "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    # (a) a failure while computing: nothing is written
    import dmftgen.dmft as dmft

    def boom(*a, **k):
        raise RuntimeError("solver crashed")

    monkeypatch.setattr(dmft, "solve", boom)
    with pytest.raises(RuntimeError):
        main(["compare", "linreg", *TINY, "--seed", "3", "--out", str(out)])
    monkeypatch.undo()
    # (b) a failure while rendering the outputs (after the runs): still nothing replaced
    import dmftgen.compare as cmpmod

    monkeypatch.setattr(cmpmod, "table_json", boom)
    with pytest.raises(RuntimeError):
        main(["compare", "linreg", *TINY, "--seed", "3", "--out", str(out)])
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # same files, same bytes, no temp files left behind


def test_discrepancy_definition_and_degenerate_cases():
    z = discrepancy([1.0, 1.0, 2.0, 2.0, np.nan], [0.3, np.nan, 0.0, 0.0, 0.1],
                    [1.5, 1.2, 2.0, 2.5, 1.0], [0.4, 0.1, 0.0, 0.0, 0.1])
    assert z[0] == pytest.approx(0.5 / 0.5)      # 3-4-5 triangle
    assert z[1] == pytest.approx(0.2 / 0.1)      # missing sem counts as 0
    assert z[2] == 0.0 and z[3] == np.inf         # both exact: equal -> 0, different -> inf
    assert np.isnan(z[4])


def _fake(t, value, err_key, status="ok"):
    from dmftgen.results import Result

    n = len(t)
    data = {"t": t, "train_loss": value(t), "test_loss": 2 * value(t), "Q": value(t).reshape(n, 1, 1),
            "M": value(t).reshape(n, 1, 1)}
    for k in list(data)[1:]:
        data[k + err_key] = np.full_like(data[k], 0.01)
    return Result(data, {}, status=status, message="blew up at t = 0.3" if status != "ok" else "")


def test_diverged_runs_and_large_discrepancies_are_warnings_not_silent():
    # Precomputed (fake) results: a simulation that diverged after 3 grid points and a DMFT that
    # is off by 10 combined standard errors -> both reported in warnings and in the summary.
    from dmftgen.compare import compare

    t = 0.1 * np.arange(6)
    sim = _fake(t[:3], lambda x: 1.0 + x, "_sem", status="diverged")
    dm = _fake(t, lambda x: 1.0 + x + 0.1 * math.sqrt(2) * (x > 0), "_err")
    cmp = compare(load_model("linreg"), Settings(T=0.5, dt=0.1), sims={"sgf": sim}, dmft=dm, methods=("sgf",))
    assert len(cmp.table["t"]) == 3  # compared on the common finished part
    assert any("simulation (sgf) diverged: blew up" in w for w in cmp.warnings), cmp.warnings
    assert any("differ by t = -20.0 combined standard errors" in w for w in cmp.warnings), cmp.warnings
    assert "DISAGREEMENT" in cmp.summary and "WARNING: simulation (sgf) diverged" in cmp.summary


# ----------------------------------------------------------------------------------------------
# Assumption warnings
# ----------------------------------------------------------------------------------------------
def _kern(model):
    from dmftgen.codegen import generate, load_kernels

    generate(model)
    return load_kernels(model)


def test_warning_non_lipschitz(gen_dir):
    # ell = (r - s)^3: sup |grad ell| = 3 R^2 grows 256-fold from R = 4 to R = 64
    r, s = student(1), teacher(1)
    quartic = Model(name="quartic_cmp", student=r, teacher=s, loss=(r[0] - s[0]) ** 4 / 4, source=__file__)
    w = assumption_warnings(quartic, _kern(quartic), Settings(), quartic.param_vector())
    assert any("not globally Lipschitz" in x for x in w), w
    # a bounded smooth loss of the same shape is not flagged
    smooth = Model(name="smooth_cmp", student=r, teacher=s, loss=sp.log(sp.cosh(r[0] - s[0])), source=__file__)
    assert assumption_warnings(smooth, _kern(smooth), Settings(), smooth.param_vector()) == []


def test_warnings_unstable_tau_dt_and_discontinuous_labels():
    lin = load_model("linreg")
    from dmftgen.codegen import load_kernels

    kl = load_kernels(lin)
    p = lin.param_vector()
    assert assumption_warnings(lin, kl, Settings(tau=0.5), p) == []
    # Volterra limit tau_c = 2 at lam = 0 (math.md section 7), exact for linear regression
    w = assumption_warnings(lin, kl, Settings(tau=2.5), p)
    assert any("unstable" in x and "tau_c = 2" in x for x in w), w
    assert assumption_warnings(lin, kl, Settings(tau=1.9, dt=0.01), p) == []
    # a stable flow on an unstable Euler grid: dt (lam + m_+) > 2 with m_+ = (1 + 2^-1/2)^2 = 2.91
    w = assumption_warnings(lin, kl, Settings(tau=0.5, dt=0.8), p)
    assert any("reduce --dt" in x for x in w), w

    logi = load_model("logistic")
    w = assumption_warnings(logi, load_kernels(logi), Settings(), logi.param_vector())
    assert len(w) == 1 and "discontinuous" in w[0]


# ----------------------------------------------------------------------------------------------
# W2
# ----------------------------------------------------------------------------------------------
def test_w1_quantile_sums_match_scipy():
    # wp_1d(p=1) and w2_1d share the merged-breakpoint construction; scipy's W1 is an independent
    # implementation (CDF difference integral), exact up to round-off for any sizes.
    rng = np.random.default_rng(1)
    for nx, ny in [(50, 50), (1000, 777), (3, 11), (1, 9)]:
        x, y = rng.standard_normal(nx), rng.gamma(2.0, size=ny)
        assert wp_1d(x, y, 1) == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-12, abs=1e-14)


def test_w2_1d_gaussian_closed_form():
    # W2(N(m1, s1^2), N(m2, s2^2))^2 = (m1 - m2)^2 + (s1 - s2)^2. Deterministic quantile samples
    # x_i = m + s Phi^-1((i - 1/2)/n) of unequal sizes exercise the merged-breakpoint sum; their
    # second moment misses the law's by the tails beyond Phi^-1(1/(2n)) (~1e-4 relative at
    # n ~ 1e5), hence rel = 1e-3.
    m1, s1, m2, s2 = 0.3, 1.0, -0.5, 2.0
    qx = stats.norm.ppf((np.arange(100_000) + 0.5) / 100_000)
    qy = stats.norm.ppf((np.arange(77_777) + 0.5) / 77_777)
    exact = math.sqrt((m1 - m2) ** 2 + (s1 - s2) ** 2)
    assert w2_1d(m1 + s1 * qx, m2 + s2 * qy) == pytest.approx(exact, rel=1e-3)
    # random samples: W2 of empirical measures of sizes 2e4 / 3e4 carries a sampling bias of a few
    # 1e-2 (tails); 0.05 absolute is ~3x the spread seen over seeds.
    rng = np.random.default_rng(2)
    assert w2(m1 + s1 * rng.standard_normal(20_000), m2 + s2 * rng.standard_normal(30_000)) == \
        pytest.approx(exact, abs=0.05)


def test_w2_assignment_equals_1d_formula_on_embedded_data_and_brute_force():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal(300), 1.0 + 0.5 * rng.standard_normal(300)
    c = rng.standard_normal()
    X, Y = np.c_[x, np.full(300, c)], np.c_[y, np.full(300, c)]  # m = 1 data in R^2
    assert w2_assignment(X, Y) == pytest.approx(w2_1d(x, y), rel=1e-10)
    # brute force over all 7! permutations in R^3
    a, b = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    best = min(np.mean(np.sum((a - b[list(pm)]) ** 2, axis=1)) for pm in itertools.permutations(range(7)))
    assert w2(a, b) == pytest.approx(math.sqrt(best), rel=1e-12)


@pytest.mark.parametrize("m,d", [(1, 500), (2, 200)])
def test_w2_floor_accounts_for_sampling(m, d):
    # Rows drawn from the DMFT law itself: the mean of W2^2 equals the mean floor^2 (the floor is
    # the same estimator applied to an exact sample). The per-draw spread of W2^2 is ~50 % (tails),
    # so 24 draws each and a 4-standard-error band estimated from the draws themselves.
    rng = np.random.default_rng(4)
    R, S = 24, 20_000
    sample = rng.standard_normal((S, m))
    same = [w2_against_dmft(rng.standard_normal((d, m)), sample, rng, floor_reps=1) for _ in range(R)]
    w = np.array([o["w2"] ** 2 for o in same])
    f = np.array([o["floor"] ** 2 for o in same])
    se = math.sqrt((w.var(ddof=1) + f.var(ddof=1)) / R)
    assert abs(w.mean() - f.mean()) <= 4 * se
    # Rows shifted by a: for a translation W2^2(mu + a, nu) = W2^2(mu, nu) + |a|^2 + 2 a.(mean
    # difference) exactly, and the mean difference of independent samples averages to 0, so
    # mean(w2^2) - mean(floor^2) estimates |a|^2 = 0.16; band: 4 standard errors of that
    # difference, estimated from the draws.
    shift = np.full(m, 0.4 / math.sqrt(m))
    out = [w2_against_dmft(rng.standard_normal((d, m)) + shift, sample, rng, floor_reps=1) for _ in range(R)]
    ws = np.array([o["w2"] ** 2 for o in out])
    se = math.sqrt((ws.var(ddof=1) + f.var(ddof=1)) / R)
    assert abs(ws.mean() - f.mean() - 0.16) <= 4 * se
    assert 4 * se < 0.08  # the band is narrow against the effect |a|^2 = 0.16 (and, for m = 2,
    # against the floor^2 ~ 0.15 that a missing bias correction would add)


def test_loglog_slope():
    d = np.array([256, 512, 1024, 2048])
    assert loglog_slope(d, 3.0 * d ** -0.5) == pytest.approx(-0.5, abs=1e-12)
    assert np.isnan(loglog_slope(d, [np.nan, 0, 0, 1]))


def test_w2_command_small(tmp_path, capsys):
    out = tmp_path / "w2"
    rc = main(["w2", "linreg", "--d", "32,64", "--T", "0.4", "--dt", "0.1", "--paths", "200",
               "--seeds", "2", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "log-log slope" in text
    js = json.loads((out / "w2.json").read_text())
    assert js["d"] == [32, 64] and len(js["t"]) == 2 and (out / "w2.png").stat().st_size > 0
    w = np.array(js["w2"], dtype=float)
    assert np.all(np.isfinite(w)) and np.all(w > 0)


# ----------------------------------------------------------------------------------------------
# The general DMFT solver reduces to the closed forms (dmftgen/reference). Marchenko-Pastur
# (tau = 0) and the MP-Volterra curve (tau > 0) against the solver are in tests/test_dmft.py, and
# against the simulator in tests/test_sim.py / tests/test_reference.py; the online limit is here.
# ----------------------------------------------------------------------------------------------
def test_dmft_large_delta_reduces_to_online_odes():
    # delta -> oo at fixed tau: every sample is seen t/(delta tau) -> 0 times, the memory and
    # own-noise terms (1/delta) vanish and the DMFT reduces to the online overlap ODEs
    # (reference.online, math.md 4.3). Errors of the comparison at delta = 200:
    #  * Euler O(dt): removed by Richardson extrapolation (dt = 0.1 and 0.05; measured Q bias
    #    +0.006 at dt = 0.1, +0.0034 at dt = 0.05, i.e. first order), leaving O(dt^2) ~ 0.3 %;
    #  * finite delta: O(1/delta) = 0.5 %;
    #  * Monte Carlo: err = sqrt(4 e_{dt/2}^2 + e_dt^2) (conservative: both solves share a seed).
    # Tolerance 4 err + 1 % of the value.
    from dmftgen.codegen import load_kernels
    from dmftgen.dmft import solve
    from dmftgen.reference import from_kernels, solve_online

    model = load_model("logistic")
    p = model.param_vector()
    s = Settings(delta=200.0, tau=0.5, T=1.0, dt=0.1)
    res = solve(model, s, paths=8000, richardson=True)
    assert res.ok
    ref = solve_online(res.t, tau=0.5, rho=1.0, **from_kernels(load_kernels(model), p))
    for key, curve in (("Q", ref.Q), ("M", ref.M), ("test_loss", ref.test)):
        v = np.asarray(res[key]).reshape(len(res.t), -1)[:, 0]
        e = np.asarray(res[key + "_err"]).reshape(len(res.t), -1)[:, 0]
        c = np.asarray(curve).reshape(len(res.t), -1)[:, 0]
        for k in (5, 10):
            assert abs(v[k] - c[k]) <= 4 * e[k] + 0.01 * abs(c[k]), (key, k, v[k], e[k], c[k])
