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
from dmftgen.comparison import assumption_warnings, discrepancy
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
    import importlib

    cmpmod = importlib.import_module("dmftgen.comparison")  # `import dmftgen.compare as` gives the function

    monkeypatch.setattr(cmpmod, "table_json", boom)
    with pytest.raises(RuntimeError):
        main(["compare", "linreg", *TINY, "--seed", "3", "--out", str(out)])
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # same files, same bytes, no temp files left behind
    # (c) a run that finishes but is not ok (tau far beyond the stability limit): written beside
    # the earlier directory (OUT.failed), which is kept whole
    monkeypatch.undo()
    assert main(["compare", "linreg", *TINY, "--tau", "1000", "--out", str(out)]) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert "verdict: n/a" in (tmp_path / "cmp.failed" / "summary.txt").read_text()


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
    from dmftgen.comparison import compare

    t = 0.1 * np.arange(6)
    sim = _fake(t[:3], lambda x: 1.0 + x, "_sem", status="diverged")
    dm = _fake(t, lambda x: 1.0 + x + 0.1 * math.sqrt(2) * (x > 0), "_err")
    cmp = compare(load_model("linreg"), Settings(T=0.5, dt=0.1), sims={"sgf": sim}, dmft=dm, methods=("sgf",))
    assert len(cmp.table["t"]) == 3  # compared on the common finished part
    assert any("simulation (sgf) diverged: blew up" in w for w in cmp.warnings), cmp.warnings
    assert any("differ by t = -20.0 combined standard errors" in w for w in cmp.warnings), cmp.warnings
    assert "DISAGREEMENT" in cmp.summary and "WARNING: simulation (sgf) diverged" in cmp.summary


# ----------------------------------------------------------------------------------------------
# The verdict: statistics against independent references, calibration, extrapolations
# ----------------------------------------------------------------------------------------------
def test_welch_matches_scipy_ttest_and_normal_scores_are_exact():
    from dmftgen.analysis.stats import welch

    rng = np.random.default_rng(3)
    for na, nb in [(4, 8), (3, 20), (12, 5)]:
        a, b = rng.normal(0.0, 1.0, na), rng.normal(0.3, 2.0, nb)
        ref = stats.ttest_ind(a, b, equal_var=False)   # independent reference: scipy's Welch statistic
        w = welch(a.mean(), a.std(ddof=1) / math.sqrt(na), na - 1, b.mean(), b.std(ddof=1) / math.sqrt(nb), nb - 1)
        assert float(w["t"]) == pytest.approx(ref.statistic, rel=1e-12)
        # p on the conservative min(na, nb) - 1 dof (never below scipy's Welch-Satterthwaite p)
        assert float(w["dof"]) == min(na, nb) - 1
        assert float(w["p"]) == pytest.approx(2 * stats.t.sf(abs(ref.statistic), min(na, nb) - 1), rel=1e-9)
        assert float(w["p"]) >= ref.pvalue
        # normal score: Phi^-1 of the t cdf (same tail probability)
        assert stats.norm.sf(abs(float(w["zn"]))) == pytest.approx(float(w["p"]) / 2, rel=1e-9)
    # not testable: a missing error (one seed) or an exact point (both errors 0)
    w = welch([1.0, 1.0, 1.0], [np.nan, 0.0, 0.1], 3, [1.0, 2.0, 1.1], [0.1, 0.0, 0.0], 7)
    assert np.isnan(w["p"][0]) and np.isnan(w["p"][1]) and np.isfinite(w["p"][2])


def test_fit_inv_d_matches_weighted_polyfit():
    from dmftgen.analysis.stats import fit_inv_d

    ds = np.array([256.0, 512.0, 1024.0])
    x = np.array([[1.10, 2.0], [1.05, 2.1], [1.03, 1.9]])
    s = np.array([[0.02, 0.1], [0.015, 0.1], [0.01, 0.2]])
    fit = fit_inv_d(ds, x, s, [3, 3, 3])
    for j in range(2):
        # numpy's weighted fit (w = 1/sigma) in u = 1/d; cov="unscaled" is (X^T W X)^-1
        coef, cov = np.polyfit(1 / ds, x[:, j], 1, w=1 / s[:, j], cov="unscaled")
        assert fit["a"][j] == pytest.approx(coef[1], rel=1e-10)
        assert fit["b"][j] == pytest.approx(coef[0], rel=1e-8)
        assert fit["a_se"][j] == pytest.approx(math.sqrt(cov[1, 1]), rel=1e-8)
    # two sizes: exact line through the points; equal errors and dofs: Welch dof from the weights
    f2 = fit_inv_d([512, 1024], np.array([[1.2], [1.1]]), np.array([[0.1], [0.1]]), [4, 4])
    assert f2["a"][0] == pytest.approx(1.0) and f2["b"][0] == pytest.approx(0.1 * 1024)
    assert f2["a_se"][0] == pytest.approx(0.1 * math.sqrt(5))  # a = 2 x_1024 - x_512
    assert f2["a_dof"][0] == 4  # conservative: the smallest dof of the sizes


def test_family_verdict_false_alarm_rate_and_power_on_synthetic_tables():
    """Monte Carlo of the decision rule itself (no dynamics): correlated observables, 4 seeds
    (Student t_3 errors) and 8 replicas; the Bonferroni bound must hold, bias must be seen."""
    from dmftgen.analysis.stats import LEVEL, bonferroni, welch

    rng = np.random.default_rng(0)
    n_fam, K, S, R = 4000, 16, 4, 8
    # correlated seeds: a common factor (correlation 0.64) across the K observables of one seed

    def fam(bias, S=S):
        g = rng.standard_normal((n_fam, 1, S))
        seeds = 0.8 * g + 0.6 * rng.standard_normal((n_fam, K, S))
        reps = rng.standard_normal((n_fam, K, R)) * 0.5
        x, sx = seeds.mean(2), seeds.std(2, ddof=1) / math.sqrt(S)
        y, sy = reps.mean(2) + bias, reps.std(2, ddof=1) / math.sqrt(R)
        p = welch(x, sx, S - 1, y, sy, R - 1)["p"]
        return np.array([bonferroni(row)[0] for row in p]), p
    p0, single = fam(0.0)
    # binomial 3-sigma allowance around the bound (n_fam = 4000)
    for lev in (LEVEL, 0.05):
        assert np.mean(p0 < lev) <= lev + 3 * math.sqrt(lev * (1 - lev) / n_fam), lev
    # the single tests: conservative (Hsu's min dof; measured 2.8 % at a nominal 5 %) but not vacuous
    assert 0.02 < np.mean(single < 0.05) < 0.05 + 3 * math.sqrt(0.05 * 0.95 / single.size)
    # power: a bias of 6 standard errors of the seed mean is seen in 25 % of the families with
    # 4 seeds (t_3 tails) and in most with 8 seeds (hence compare's default --seeds 8)
    pb, _ = fam(3.0)  # 3 sd of one seed = 6 s.e. of the 4-seed mean
    assert 0.1 < np.mean(pb < LEVEL) < 0.5
    pb8, _ = fam(3.0 * math.sqrt(2), S=8)  # 6 s.e. of the 8-seed mean
    assert np.mean(pb8 < LEVEL) > 0.8


def _fake_sim(t, values, sem, seeds=8, status="ok", meta=None, message=""):
    from dmftgen.results import Result

    n = len(t)
    data = {"t": t, "train_loss": values, "test_loss": 2 * values, "Q": values.reshape(n, 1, 1),
            "M": values.reshape(n, 1, 1)}
    for k in list(data)[1:]:
        data[k + "_sem"] = np.full_like(data[k], sem)
    return Result(data, dict({"seeds_used": seeds, "seeds": seeds}, **(meta or {})), status=status,
                  message=message)


def _fake_dmft(t, values, err, replicas=8, status="ok", message=""):
    from dmftgen.results import Result

    n = len(t)
    data = {"t": t, "train_loss": values, "test_loss": 2 * values, "Q": values.reshape(n, 1, 1),
            "M": values.reshape(n, 1, 1)}
    for k in list(data)[1:]:
        data[k + "_err"] = np.full_like(data[k], err)
        data[k + "_err"][0] = 0.0
    return Result(data, {"replicas": replicas, "err_dof": replicas - 1}, status=status, message=message)


def test_one_seed_gives_na_and_exact_t0_is_never_tested():
    from dmftgen.comparison import compare

    t = 0.1 * np.arange(9)
    f = 1.0 + t
    lin = load_model("linreg")
    st = Settings(T=0.8, dt=0.1)
    # one seed: the simulation has no error bar -> "n/a", never z = inf / DISAGREEMENT
    one = _fake_sim(t, f + 0.05, np.nan, seeds=1)
    cmp = compare(lin, st, sims={"sgf": one}, dmft=_fake_dmft(t, f, 0.01), methods=("sgf",))
    assert cmp.verdict["K"] == 0 and "verdict: n/a (a single seed" in cmp.summary
    assert "DISAGREEMENT" not in cmp.summary
    # t = 0 differs with both errors 0 (exact on both sides): not among the tested times
    sim = _fake_sim(t, f, 0.02)
    sim["train_loss"][0] += 0.5
    sim["train_loss_sem"][0] = 0.0
    cmp = compare(lin, st, sims={"sgf": sim}, dmft=_fake_dmft(t, f, 0.01), methods=("sgf",))
    assert cmp.verdict["times"] == pytest.approx([0.2, 0.4, 0.6, 0.8]) and cmp.verdict["word"] == "agreement"
    assert cmp.verdict["p"] == 1.0 and "agreement at the 1 % level" in cmp.summary


def test_finite_size_extrapolation_is_what_the_verdict_tests(tmp_path):
    """x(d) = a + b/d exactly at two sizes: the fit recovers a; the DMFT equals a, so the
    extrapolated verdict agrees while the raw comparison at the largest d does not."""
    from dmftgen.comparison import compare, write_outputs

    t = 0.1 * np.arange(9)
    a, b = 1.0 + t, 40.0 * (t + 0.1)
    sims = {"sgf": {256: _fake_sim(t, a + b / 256, 0.004), 512: _fake_sim(t, a + b / 512, 0.002)}}
    cmp = compare(load_model("linreg"), Settings(T=0.8, dt=0.1), sims=sims, dmft=_fake_dmft(t, a, 0.001),
                  methods=("sgf",))
    ex = cmp.table["observables"]["train_loss"]["sim"]["sgf"]["extrap"]
    np.testing.assert_allclose(ex["mean"], a, rtol=1e-10)
    np.testing.assert_allclose(ex["fs_bias"], b / 512, rtol=1e-8)
    assert cmp.verdict["word"] == "agreement" and cmp.raw_verdict["word"] == "DISAGREEMENT"
    assert "finite size   b/d at d = 512" in cmp.summary and "fit x(d) = a + b/d over d = 256, 512" in cmp.summary
    paths = write_outputs(cmp, tmp_path / "o")
    head = (tmp_path / "o" / "table.csv").read_text().splitlines()[0].split(",")
    assert "train_loss_sgf_dinf" in head and "train_loss_sgf_d256" in head
    assert "sim_sgf_d256.npz" in {p.name for p in paths.values()}


def test_time_step_bias_is_measured_named_and_removed_for_sgd():
    """SGD against a DMFT with an O(dt) bias: f(dt) = f0 + c dt, f(2dt) = f0 + 2 c dt. The
    verdict on 2 f(dt) - f(2dt) agrees; the uncorrected one does not; the budget and the hint
    name the time step first."""
    from dmftgen.comparison import compare

    t = 0.1 * np.arange(9)
    f0, c = 1.0 + t, 0.5 * t
    sim = _fake_sim(t, f0, 0.002)
    dm = _fake_dmft(t, f0 + c * 0.1, 0.001)
    t2 = 0.2 * np.arange(5)
    chk = _fake_dmft(t2, 1.0 + t2 + 0.5 * t2 * 0.2, 0.001)
    cmp = compare(load_model("linreg"), Settings(T=0.8, dt=0.1, tau=0.5), sims={"sgd": sim}, dmft=dm,
                  dt_check=chk, methods=("sgd",))
    e = cmp.table["observables"]["train_loss"]
    np.testing.assert_allclose(e["dt_bias"][::2], (c * 0.1)[::2], atol=1e-12)
    np.testing.assert_allclose(e["dmft_corr"][::2], f0[::2], atol=1e-12)
    assert cmp.verdict["word"] == "agreement" and cmp.raw_verdict["word"] == "DISAGREEMENT"
    assert "time step     |f(2dt) - f(dt)|" in cmp.summary
    # when the corrected verdict fails too (an extra bias), the hint lists the time step first
    sim2 = _fake_sim(t, f0 + 0.03, 0.002)
    cmp2 = compare(load_model("linreg"), Settings(T=0.8, dt=0.1, tau=0.5), sims={"sgd": sim2}, dmft=dm,
                   dt_check=chk, methods=("sgd",))
    assert cmp2.verdict["word"] == "DISAGREEMENT"
    hint = next(x for x in cmp2.summary.splitlines() if "likely causes" in x)
    assert hint.split("largest first: ")[1].startswith("time step (")


def test_non_ok_solver_status_and_diverged_seeds_are_summary_lines():
    from dmftgen.comparison import compare

    t = 0.1 * np.arange(9)
    f = 1.0 + t
    sim = _fake_sim(t, f, 0.02, seeds=3, meta={"diverged_seeds": [2]},
                    message="1 of 4 seeds diverged and are excluded from the averages (seed indices [2])")
    dm = _fake_dmft(t, f, 0.01, status="inaccurate", message="self-check: S_U pivots clipped")
    cmp = compare(load_model("linreg"), Settings(T=0.8, dt=0.1), sims={"sgf": sim}, dmft=dm, methods=("sgf",))
    assert "  status: DMFT solver: inaccurate: self-check: S_U pivots clipped" in cmp.summary
    assert "status: simulation sgf d=1024: ok: 1 of 4 seeds diverged" in cmp.summary
    assert cmp.verdict["word"] == "agreement"  # the excluded seed does not make z infinite
    # an unstable simulation (a blown-up curve far from the DMFT) is not tested: n/a with the reason
    bad = _fake_sim(t, f * 1e6, 0.02, seeds=3)
    bad.status = "unstable"
    cmp = compare(load_model("linreg"), Settings(T=0.8, dt=0.1), sims={"sgf": bad}, dmft=dm, methods=("sgf",))
    assert cmp.verdict["word"] == "n/a" and cmp.verdict["K"] == 0
    assert "verdict: n/a (the simulation (sgf, d = 1024) is unstable" in cmp.summary


def test_simulator_excludes_and_counts_diverged_seeds(monkeypatch, linreg):
    import dmftgen.sim.driver as drv
    from dmftgen.sim import simulate

    model = linreg
    real = drv.run_sgf
    calls = []

    def flaky(*a, **k):
        path, extra = real(*a, **k)
        calls.append(1)
        if len(calls) == 2:  # the second seed "blows up" after 2 records
            path.status, path.message, path.n_done = "diverged", "diverged at t = 0.1: test", 2
        return path, extra

    monkeypatch.setattr(drv, "run_sgf", flaky)
    st = Settings(delta=2.0, tau=0.5, T=0.4, dt=0.1, seed=1)
    res = simulate(model, st, d=32, seeds=3)
    monkeypatch.undo()
    assert res.ok and res.meta["diverged_seeds"] == [1] and res.meta["seeds_used"] == 2
    assert "1 of 3 seeds diverged and are excluded" in res.message and len(res.t) == 5
    # the averages are those of seeds 0 and 2 alone (recomputed from single-seed runs)
    s0 = simulate(model, st, d=32, seeds=1)
    s2 = simulate(model, st, d=32, seeds=3)  # seeds 0, 1, 2 all fine
    assert s2.meta["diverged_seeds"] == [] and s2.meta["seeds_used"] == 3
    one_two = 2 * res["train_loss"] - s0["train_loss"]  # = seed 2 alone
    assert np.all(np.isfinite(one_two)) and not np.allclose(one_two, s0["train_loss"])


def test_default_dmft_errors_come_from_replicas(linreg):
    from dmftgen.dmft import solve

    model = linreg
    st = Settings(delta=2.0, tau=0.5, T=0.4, dt=0.1, seed=2)
    res = solve(model, st, paths=800)
    assert res.meta["replicas"] == 8 and res.meta["err_dof"] == 7 and "between-replica" in res.meta["errors"]
    one = solve(model, st, paths=800, replicas=1)
    assert one.meta["err_dof"] == 19 and "replicas=1" in one.meta["errors"]
    few = solve(model, st, paths=60)  # 60 // 40 = 1 replica fits: falls back to one solve
    assert few.meta.get("replicas", 1) == 1
    from dmftgen.errors import SettingsError
    with pytest.raises(SettingsError, match="replicas"):
        solve(model, st, paths=800, replicas="many")


def test_overlap_panel_averages_exchangeable_units_at_m3():
    from types import SimpleNamespace

    from dmftgen.analysis.figure import display_curves

    t = np.arange(3.0)
    obs = {}
    for a in range(3):
        for b in range(a, 3):
            v = np.full(3, 1.0 if a == b else 0.1 * (a + b))
            obs[f"Q{a}{b}"] = {"panel": "overlaps", "dmft": v, "dmft_err": v * 0, "sim": {
                "sgf": {"mean": v + 0.01, "sem": v * 0 + 0.01}}}
    for a in range(3):
        obs[f"M{a}0"] = {"panel": "overlaps", "dmft": np.full(3, 0.2 * a), "dmft_err": np.zeros(3), "sim": {}}
    curves = display_curves(SimpleNamespace(m=3, k=1), {"t": t, "observables": obs}, ["sgf"], "overlaps")
    labels = [c[0] for c in curves]
    assert labels == ["Q diag (mean over a)", "Q off-diag (mean over a<b)", "M, teacher 0 (mean over a)"]
    np.testing.assert_allclose(curves[1][1]["dmft"], (0.1 + 0.2 + 0.3) / 3)
    np.testing.assert_allclose(curves[2][1]["dmft"], 0.2)
    # m = 2: every entry drawn
    assert len(display_curves(SimpleNamespace(m=2, k=1), {"t": t, "observables": obs}, ["sgf"], "loss")) == 0


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
    # Volterra limit tau_c = 2 at lam = 0 (docs/theory.md §5), exact for linear regression
    w = assumption_warnings(lin, kl, Settings(tau=2.5), p)
    assert any("unstable" in x and "tau_c = 2" in x for x in w), w
    # its advice includes the Euler grid's limit (1.924 at dt 0.05, the run's own message), not 2
    assert any("Lower --tau below 1.924 (at dt = 0.05; 2 as dt -> 0)" in x for x in w), w
    w = assumption_warnings(lin, kl, Settings(tau=2.5, dt=0.8, T=1.6), p)  # a grid unstable at any tau
    assert any("Lower --dt (the grid dt = 0.8 is unstable at any tau) and --tau below 2." in x for x in w), w
    assert assumption_warnings(lin, kl, Settings(tau=1.9, dt=0.01), p) == []
    # a stable flow on an unstable Euler grid: dt (lam + m_+) > 2 with m_+ = (1 + 2^-1/2)^2 = 2.91
    w = assumption_warnings(lin, kl, Settings(tau=0.5, dt=0.8, T=4.8), p)
    assert any("reduce --dt" in x for x in w), w

    logi = load_model("logistic")
    w = assumption_warnings(logi, load_kernels(logi), Settings(), logi.param_vector())
    assert len(w) == 1 and "discontinuous" in w[0]


def test_richardson_with_the_sgf_is_flagged():
    """The SGF at dt has the DMFT at the same dt as its exact limit (README); --richardson
    compared it with the dt -> 0 extrapolation without a word."""
    from dmftgen import compare

    lin = load_model("linreg")
    s = Settings(T=0.2, dt=0.1)
    res = compare(lin, s, d=[32], seeds=2, paths=400, methods=("sgf",), richardson=True)
    assert any("--richardson with the SGF" in w for w in res.warnings), res.warnings
    assert "8 replicas per solve" in res.summary  # it read "1 replicas" (they are in meta.fine)
    res = compare(lin, s, d=[32], seeds=2, paths=400, methods=("sgf",))
    assert not any("--richardson" in w for w in res.warnings)


def test_coarse_sgd_steps_are_reported_not_called_tiny():
    """SGD with eta/d = 0.25 against dt = 0.05 (--batch 64 at d = 128): recorded up to 0.1 away
    from the grid times and compared there without a word, and the budget said 'SGD steps eta/d
    are tiny'."""
    from dmftgen.analysis.verdict import budget_lines
    from dmftgen.comparison.table import result_warnings
    from dmftgen.results import Result

    t = np.arange(11) * 0.05
    coarse = Result({"t": t, "train_loss": 1 - t}, {"eta": 32.0, "t_actual": (np.round(t / 0.25) * 0.25).tolist()})
    fine = Result({"t": t, "train_loss": 1 - t}, {"eta": 0.5, "t_actual": (t + 0.0015).tolist()})
    w = result_warnings({"sgd": {128: coarse}}, None)
    assert len(w) == 1 and "eta/d = 0.25 is not small" in w[0] and "up to 0.1 away" in w[0], w
    assert result_warnings({"sgd": {128: fine}}, None) == []
    v = {"word": "agreement", "budget": {"dt": {"size": 1.0, "rel": 0.01, "obs": "Q", "t": 0.5}}}
    assert "are tiny" not in "".join(budget_lines(v, {"eta": 32.0, "d": 128, "d_list": [128], "dt": 0.05}))
    assert "are tiny" in "".join(budget_lines(v, {"eta": 0.5, "d": 1024, "d_list": [1024], "dt": 0.05}))


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
    # the command says why a slope is missing (an excess of 0 at the floor printed "+nan")
    from dmftgen.commands.w2 import fmt_slope

    assert fmt_slope(-0.5) == "-0.500" and fmt_slope(float("nan")).startswith("n/a")


@pytest.mark.parametrize("extra, env, said", [
    (["--paths", "10"], {}, "paths=10 (--paths) is too few for 20 path groups"),
    (["--paths", "400"], {"DMFTGEN_MEMORY_LIMIT": "1M"}, "memory"),
])
def test_w2_command_refuses_what_the_solve_would_refuse_before_computing(tmp_path, capsys, monkeypatch,
                                                                         extra, env, said):
    """What the DMFT solve checks before computing (dmft.solver.check_solve: paths per path group,
    memory) is checked by w2_scan before any solve or simulation starts, exit 2 (the command had a
    narrower check of its own, --paths >= 2, that let 2..39 paths through to the solve)."""
    import dmftgen.dmft as dmft
    import dmftgen.sim as sim

    monkeypatch.setattr(dmft, "solve", lambda *a, **k: pytest.fail("solved before the checks"))
    monkeypatch.setattr(sim, "simulate", lambda *a, **k: pytest.fail("simulated before the checks"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    rc = main(["w2", "linreg", "--d", "32,64", "--T", "0.4", "--dt", "0.1", "--seeds", "2",
               "--out", str(tmp_path / "w2"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and said in err and "Traceback" not in err, err
    assert not (tmp_path / "w2").exists()


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


def test_dt_corrected_dmft_error_matches_the_spread_over_seeds():
    """compare's SGD correction 2 f(dt) - f(2 dt) (the coupled 2 dt solve, ``refine=1``): its error
    ``dmft_corr_err`` against the sd of the corrected value over 24 seeds, at t = T (losses).

    Band as in tests/test_dmft.py::test_richardson_errors_match_the_spread_over_seeds: sd / sigma
    over 24 seeds in [0.53, 1.54] (chi2(23) at 2.5e-4 per tail), the claimed errors' rms scatters
    by ~5 %: rms(err) / sd in [0.62, 1.99]. Measured 1.21 (train), 1.06 (test); with
    sqrt(4 e_dt^2 + e_2dt^2), which treats the coupled solves as independent, 2.89 and 2.60
    (2.0-3.3 for the logistic Figure 1 observables, 16 seeds)."""
    from scipy.stats import chi2

    from dmftgen.comparison.table import build_table
    from dmftgen.dmft import solve

    model = load_model("linreg")
    n = 24
    lo, hi = np.sqrt(chi2.ppf([2.5e-4, 1 - 2.5e-4], n - 1) / (n - 1))
    band = (0.95 / hi, 1.05 / lo)
    vals, errs = [], []
    for seed in range(n):
        s = Settings(delta=2.0, tau=0.5, T=2.0, dt=0.1, seed=seed)
        main = solve(model, s, paths=4000)
        two = solve(model, s.replace(dt=0.2), paths=4000, refine=1)
        obs = build_table(model, {}, main, [], dt_check=two)["observables"]
        vals.append([obs[k]["dmft_corr"][-1] for k in ("train_loss", "test_loss")])
        errs.append([obs[k]["dmft_corr_err"][-1] for k in ("train_loss", "test_loss")])
    vals, errs = np.array(vals), np.array(errs)
    ratio = np.sqrt((errs ** 2).mean(0)) / vals.std(0, ddof=1)
    assert np.all((ratio > band[0]) & (ratio < band[1])), (ratio, band)


# ----------------------------------------------------------------------------------------------
# The general DMFT solver reduces to the closed forms (dmftgen/reference). Marchenko-Pastur
# (tau = 0) and the MP-Volterra curve (tau > 0) against the solver are in tests/test_dmft.py, and
# against the simulator in tests/test_sim.py / tests/test_reference.py; the online limit is here.
# ----------------------------------------------------------------------------------------------
def test_dmft_large_delta_reduces_to_online_odes():
    # delta -> oo at fixed tau: every sample is seen t/(delta tau) -> 0 times, the memory and
    # own-noise terms (1/delta) vanish and the DMFT reduces to the online overlap ODEs
    # (reference.online, docs/theory.md §5). Errors of the comparison at delta = 200:
    #  * Euler O(dt): removed by Richardson extrapolation (dt = 0.1 and 0.05; measured Q bias
    #    +0.006 at dt = 0.1, +0.0034 at dt = 0.05, i.e. first order), leaving O(dt^2) ~ 0.3 %;
    #  * finite delta: O(1/delta) = 0.5 %;
    #  * Monte Carlo: err = the spread of the 8 extrapolated replica curves / sqrt(8) (7 dof).
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
