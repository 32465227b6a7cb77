"""The solver never silently wrong: gradient flow for m > 1, self-checks, losses outside the theory.

References: the SGF simulation at the *same* dt (the discrete DMFT is exact for Euler--Maruyama at
its own step), the identities of dmftgen/dmft/checks.py, and injected faults that the checks must
flag (each fault was checked to be invisible to the plain status before this module existed).
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dmftgen import Settings, load_model, simulate, solve
from dmftgen.errors import UnsupportedModelError


@pytest.fixture(scope="module")
def committee():
    return load_model("committee")


GF = Settings(delta=3, tau=0.0, T=3, dt=0.02)


@pytest.fixture(scope="module")
def committee_gf(committee):
    return solve(committee, GF, paths=6000)


def _z(a, ea, b, eb):
    return np.abs(a - b) / np.hypot(ea, eb)


def test_gradient_flow_committee_matches_sgf_at_same_dt(committee, committee_gf):
    """tau = 0, m = 2 (the case whose sweep drifted before the QR factor): DMFT vs SGF at dt = 0.02.

    Tolerance: 4 combined standard errors (simulation: 4 seeds at d = 1000; DMFT: Monte Carlo);
    finite-size effects at d = 1000 were measured to be below 1 % of the train loss here (no trend
    in d from 500 to 4000 in the issue's measurements)."""
    th = committee_gf
    assert th.status == "ok", th.message
    assert th.meta["gram"] == "qr"
    sim = simulate(committee, GF, d=1000, seeds=4, method="sgf")
    for key in ("train_loss", "test_loss"):
        z = _z(sim[key][-1], sim[key + "_sem"][-1], th[key][-1], th[key + "_err"][-1])
        assert z < 4.0, (key, sim[key][-1], th[key][-1])
    for a in range(2):
        z = _z(sim["Q"][-1][a, a], sim["Q_sem"][-1][a, a], th["Q"][-1][a, a], th["Q_err"][-1][a, a])
        assert z < 4.0, (a, sim["Q"][-1], th["Q"][-1])


def test_gradient_flow_train_loss_never_increases(committee_gf):
    """Gradient flow descends: the solver's own descent check, and the curve itself."""
    th = committee_gf
    check = {c["name"]: c for c in th.meta["checks"]}["descent"]
    assert check["ok"] and check["n"] == len(th.t) - 1
    assert np.all(np.diff(th["train_loss"]) < 0)


def test_clipped_cholesky_at_tau0_is_flagged(committee):
    """Fault: the pivot-clipped Cholesky of S_U (the old sampler) at tau = 0. Its L L^T differs from
    S_U by O(1) and the solve must say `inaccurate`, naming the check, although at T = 3 its curves
    still look plausible."""
    th = solve(committee, GF, paths=6000, gram="cholesky")
    assert th.status == "inaccurate"
    failed = {c["name"] for c in th.meta["checks"] if not c["ok"]}
    assert "sampler factor" in failed
    assert th.message.startswith("self-check '")


def test_qr_and_cholesky_agree_when_cholesky_is_well_conditioned(logistic):
    """At tau = 0.5 both causal factors give the same solve (same paths: identical up to round-off).

    Both with float64 histories (option ``histories``): the QR keeps the increments it factors in
    float64 anyway, and with bfloat16 ones (dmftgen.dmft.rside.HIST) the two would solve systems
    that differ by the rounding of eta and of the Cholesky run's increments (measured ~5e-6 of
    the train loss). What is left is the two factors' round-off, ~1e-16 relative per entry of L
    L^T = S_U for this well-conditioned S_U (white fraction 0.95), growing through the K = 20
    steps of the sweep to at most ~1e-13 of the loss and Q (measured: 2.2e-16 of the loss).
    rtol 1e-10: a wrong factor (the sampler bug this guards against) moves them by O(1e-2)."""
    s = Settings(delta=2, tau=0.5, T=1, dt=0.05)
    a = solve(logistic, s, paths=2000, gram="qr", histories="float64")
    b = solve(logistic, s, paths=2000, gram="cholesky", histories="float64")
    assert a.ok and b.ok
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-10)
    np.testing.assert_allclose(a["Q"], b["Q"], rtol=1e-10)


@pytest.mark.parametrize("name", ["committee", "logistic"])
def test_tau_continuity_at_zero(name):
    """tau = 1e-3 and tau = 0 agree within their combined Monte Carlo errors (independent seeds);
    the O(tau) shift of the curves is far below them. ('auto' picks QR for both: white fraction
    < 0.05.) Each error bar is a between-replica estimate with err_dof = 7 degrees of freedom
    (measured over 16 seeds, the 7-dof error bars of one committee solve scatter over 0.35-1.25 of
    the true sd), so the difference over its combined error is referred to Student t, with the
    verdict's conservative dof and Bonferroni over the 40 times (dmftgen.analysis.stats: welch,
    bonferroni) at the self-checks' false-alarm rate ALPHA. Power, measured by scaling the tau =
    1e-3 curve: a jump of 0.5 % of the test loss fails it (family p <= 5e-5, both models; the
    committee's train loss is too noisy to show 4 %), the tau = 0 sampler bug of issue 9 was
    > 50 %. (tau = 0.2 against tau = 0 passes, family p 0.06-1: at T = 2 the O(tau) shift is
    within these errors. An earlier version of this test used the Welch-Satterthwaite dof, which
    the verdict's module documents as anti-conservative in the far tail.)"""
    from dmftgen.analysis.stats import bonferroni, welch
    from dmftgen.dmft.checks import ALPHA

    model = load_model(name)
    s0 = Settings(delta=3, tau=0.0, T=2, dt=0.05)
    a = solve(model, s0, paths=4000)
    b = solve(model, s0.replace(tau=1e-3, seed=1), paths=4000)  # independent paths
    assert a.ok and b.ok, (a.message, b.message)
    for key in ("train_loss", "test_loss"):
        w = welch(a[key][1:], a[key + "_err"][1:], a.meta["err_dof"],
                  b[key][1:], b[key + "_err"][1:], b.meta["err_dof"])
        assert bonferroni(w["p"])[0] >= ALPHA, (key, bonferroni(w["p"]))


def _scaled_gamma(monkeypatch, factor):
    from dmftgen.dmft import theta as theta_mod

    orig = theta_mod.ThetaSide.set_kernels

    def patched(self, k, gamma=None, **kw):
        return orig(self, k, gamma=None if gamma is None else factor * gamma, **kw)

    monkeypatch.setattr(theta_mod.ThetaSide, "set_kernels", patched)


def test_injected_gamma_error_is_flagged(logistic, monkeypatch):
    """Fault: the theta-side uses 1.05 Gamma instead of the r-side estimate. Without the checks the
    solve reports ok (the paths are consistent with the wrong C_theta they are given)."""
    s = Settings(delta=2, tau=0.5, T=1, dt=0.05)
    _scaled_gamma(monkeypatch, 1.05)
    th = solve(logistic, s, paths=2000)
    assert th.status == "inaccurate"
    assert "kernel consistency" in th.message


def test_checks_pooled_over_replicas_see_a_fault_that_each_replica_misses(logistic, monkeypatch):
    """Fault: the r-side input's known part (Phi0 g0 + Phi_star r*) 15 % too large, so that the
    paths' input does not have the covariance the theta-side says. In each of the 8 replicas
    (1000 paths) the Q balance's z stays below its threshold (worst z / threshold 0.49-0.84 over
    seeds 0..3), so the replicas' own checks alone reported ``ok``; pooled, the replica mean
    of the time-averaged residual has sqrt(8) times the z (4.96-7.88 against 3.87 over the same
    seeds) and the solve is ``inaccurate``, naming the pooled check. Without the fault the same
    solve is ``ok`` (the calibration test above: no pooled check fails on 32 correct solves)."""
    from dmftgen.dmft import rside

    orig = rside.RSide.run

    def run(self, k0, k1, wpre, W, use_W, R, RT):
        return orig(self, k0, k1, 1.15 * wpre, W, use_W, R, RT)

    monkeypatch.setattr(rside.RSide, "run", run)
    res = solve(logistic, Settings(delta=2, tau=0.5, T=2, dt=0.1), paths=8000)
    assert res.status == "inaccurate", res.message
    assert "pooled over 8 replicas" in res.message, res.message
    for meta in [res.meta] + res.meta["replica_meta"]:
        assert all(c["ok"] for c in meta["checks"]), meta["checks"]
    bad = {c["name"] for c in res.meta["pooled_checks"] if not c["ok"]}
    assert "Q balance (time average) (pooled over 8 replicas)" in bad, bad


def test_pooled_check_is_the_replica_mean_with_its_error():
    """checks.pooled on hand-made residuals: mean over replicas, error sqrt(sum e_r^2) / R,
    Welch--Satterthwaite dof, the times all replicas reached, and one-sided checks only count
    positive z (a descent check must not fail on a decrease)."""
    from scipy.stats import t as student_t

    from dmftgen.dmft.checks import _check, pooled

    t = np.arange(4.0)
    reps = []
    for r, (v, e) in enumerate([(1.0, 1.0), (3.0, 2.0)]):
        n = 4 if r == 0 else 3  # replica 1 stopped a step early
        reps.append([_check("x", "x", np.full((n, 1), v / e), np.full((n, 1), v), np.full((n, 1), e), t[:n], 9),
                     _check("d", "d", np.full(n, -v / e), np.full(n, -v), np.full(n, e), t[:n], 9, one_sided=True)])
    x, d = pooled(reps, 0.01)
    err = np.sqrt(1.0 + 4.0) / 2
    assert x["value"] == pytest.approx(2.0) and x["err"] == pytest.approx(err)
    assert x["worst_z"] == pytest.approx(2.0 / err) and x["n"] == 3
    dof = 25.0 / ((1.0 + 16.0) / 9)
    assert x["dof"] == pytest.approx(dof)
    assert x["threshold"] == pytest.approx(student_t.isf(0.01 / 2 / (2 * 3), dof))
    assert d["worst_z"] == 0.0 and d["ok"]
    # what goes into the result's meta: no per-entry arrays (JSON, no private keys)
    assert not [k for c in (x, d) for k in c if k.startswith("_")]


def test_injected_kernel_row_error_is_flagged(logistic, monkeypatch):
    """Fault: one off-diagonal row of K_ell perturbed by 10 % on its way to the theta-side."""
    from dmftgen.dmft import estimators

    orig = estimators.kl_row

    def patched(r, k, RT):
        row = orig(r, k, RT)
        return row * 1.1 if k == 7 else row

    monkeypatch.setattr(estimators, "kl_row", patched)
    th = solve(logistic, Settings(delta=2, tau=0.5, T=1, dt=0.05), paths=2000)
    assert th.status == "inaccurate"
    bad = [c for c in th.meta["checks"] if not c["ok"]]
    assert bad and bad[0]["t_worst"] == pytest.approx(0.35)


def test_checks_pass_on_a_correct_solve_and_are_in_the_file(logistic, tmp_path):
    """No false alarm on a correct solve; the checks travel with the result and show-result prints
    them (exit 0)."""
    th = solve(logistic, Settings(delta=2, tau=0.5, T=1, dt=0.05), paths=2000, replicas=1)
    assert th.ok, th.message
    names = {c["name"] for c in th.meta["checks"]}
    assert {"Q balance", "M balance", "kernel consistency", "sampler factor", "input variance"} <= names
    out = tmp_path / "r.json"
    th.save(out)
    p = subprocess.run([sys.executable, "-m", "dmftgen", "show-result", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "Q balance" in p.stdout and "FAIL" not in p.stdout


def test_self_check_errors_are_calibrated_and_the_false_alarm_rate_is_the_solves(logistic):
    """The two halves of the checks' stated false-alarm rate (docs/theory.md section 7).

    1. The batch-means error of a residual is honest: over 32 seeds x 8 replicas of correct solves
       the z = value / err of the time-averaged Q balance (one entry per replica, ~t with 19 dof)
       has rms 1.057 and mean -0.03 (measured; t_19 gives rms sqrt(19/17) = 1.057; the rms of
       256 draws scatters by sd 0.05, from Var(t_19^2) = 3.0). The band [0.9, 1.21] is 3 sd:
       error bars off by a factor sqrt(2) either way (rms 0.75 or 1.49; e.g. a group spread taken
       for the mean's error) fail it (checked: with 8 seeds, sd 0.1, the band had to be so wide
       that err / sqrt(2) passed; hence 32).
    2. The thresholds spend the rate of the whole solve, not of each check of each replica: with
       R replicas and C statistical checks of n entries each, every one sits at the Student-t
       quantile at check_alpha / (2 (2R) C n), and the C' checks pooled over the replicas at
       check_alpha / (2 2 C' n): half the rate to the replicas' own checks, half to the pooled
       ones. (Before, each had check_alpha to itself: a solve of 8 replicas and 5 checks raised
       false alarms ~40 times as often as stated; seen in the slow T = 50 test,
       tests/test_longtime.py.)
    3. The pooled time-averaged Q balance is calibrated too: over the 32 seeds its z (one per
       solve, ~N(0, 1): ~150 degrees of freedom) has rms within [0.62, 1.38] (3 sd of the rms of
       32 draws, 0.125) and mean within 3 / sqrt(32). Pooling multiplies a common bias of the
       replicas' residuals by sqrt(8) relative to the noise: the mean of part 1 (-0.03) becomes
       ~-0.09, far inside.
    """
    from scipy.stats import t as student_t

    zs, zp = [], []
    for seed in range(32):
        res = solve(logistic, Settings(delta=2, tau=0.5, lam=0.1, T=2, dt=0.1, seed=seed), paths=8000,
                    replicas=8)
        assert res.ok, res.message
        metas = [res.meta] + res.meta["replica_meta"]
        assert len(metas) == 8
        for meta in metas:
            c = next(c for c in meta["checks"] if c["name"] == "Q balance (time average)")
            zs.append(c["value"] / c["err"])
            stat = [c for c in meta["checks"] if "dof" in c]
            for c in stat:
                want = student_t.isf(1e-3 / (2 * 16 * len(stat) * c["n"]), c["dof"])
                assert c["threshold"] == pytest.approx(want, rel=1e-12), c
        pool = res.meta["pooled_checks"]
        for c in pool:
            assert c["threshold"] == pytest.approx(student_t.isf(0.5e-3 / (2 * len(pool) * c["n"]), c["dof"]),
                                                   rel=1e-12), c
        c = next(c for c in pool if c["name"].startswith("Q balance (time average)"))
        zp.append(c["value"] / c["err"])
    zs = np.array(zs)
    assert 0.9 <= np.sqrt(np.mean(zs ** 2)) <= 1.21, zs
    assert abs(zs.mean()) <= 3 * 1.057 / np.sqrt(zs.size), zs  # 3 sd of the mean of 256 draws
    zp = np.array(zp)
    assert 0.62 <= np.sqrt(np.mean(zp ** 2)) <= 1.38, zp
    assert abs(zp.mean()) <= 3 / np.sqrt(zp.size), zp
    # the Richardson pair: each solve at half the rate
    from dmftgen.dmft.extrapolation import richardson

    pair = richardson(logistic, Settings(delta=2, tau=0.5, T=0.5, dt=0.1), paths=2000, replicas=1,
                      check_alpha=0.01)
    for part in (pair.meta["coarse"], pair.meta["fine"]):
        stat = [c for c in part["checks"] if "dof" in c]
        c = stat[0]
        assert c["threshold"] == pytest.approx(student_t.isf(0.005 / (2 * len(stat) * c["n"]), c["dof"]))


# -- losses outside the theory -------------------------------------------------------------------


LAD = '''"""Least absolute deviations: L = |r0 - y|, y = s0 + z/2 (ell = sign(r0 - y) jumps in r)."""
import sympy as sp
from dmftgen import Model, student, teacher
r = student(1)
s = teacher(1)
z = sp.Symbol("z", real=True)
y = s[0] + z / 2
MODEL = Model(name="lad", student=r, teacher=s, noise={z: "normal"}, labels=y,
              loss=sp.Abs(r[0] - y), init_std=0, teacher_std=1)
'''

SQHINGE = '''"""Square hinge, noisy sign teacher: ell continuous in r, its Jacobian jumps."""
import sympy as sp
from dmftgen import Model, student, teacher
r = student(1)
s = teacher(1)
z = sp.Symbol("z", real=True)
y = sp.sign(s[0] + sp.Rational(3, 10) * z)
MODEL = Model(name="sqhinge", student=r, teacher=s, noise={z: "normal"}, labels=y,
              loss=sp.Max(0, 1 - y * r[0]) ** 2 / 2, init_std=0, teacher_std=1)
'''


def _write(tmp_path, name, text):
    f = tmp_path / f"{name}.py"
    f.write_text(textwrap.dedent(text))
    return f


def test_jump_detection_of_the_builtin_and_test_models(tmp_path):
    """ell jumps in r: LAD only; labels jump in s: sign/logistic (Bernoulli) and the square hinge's
    sign teacher, not Huber (clip(r - y) is continuous in s although it contains sign)."""
    from dmftgen.symbolic import derive

    got = {n: derive(load_model(n)) for n in ("linreg", "logistic", "sign", "huber", "committee", "twolayer")}
    got["lad"] = derive(load_model(str(_write(tmp_path, "lad", LAD))))
    got["sqhinge"] = derive(load_model(str(_write(tmp_path, "sqhinge", SQHINGE))))
    assert {n for n, s in got.items() if s.ell_jumps} == {"lad"}
    assert {n for n, s in got.items() if s.discontinuous} == {"logistic", "sign", "lad", "sqhinge"}
    assert "r0" in got["lad"].ell_jump_reason


def test_lad_is_refused_with_its_reason_and_runs_on_request(tmp_path, gen_dir):
    from dmftgen.codegen import generate

    f = _write(tmp_path, "lad", LAD)
    model = load_model(str(f))
    generate(model)
    s = Settings(delta=2, tau=0.5, T=0.5, dt=0.05)
    with pytest.raises(UnsupportedModelError) as exc:
        solve(model, s, paths=1000)
    msg = str(exc.value)
    assert "lad" in msg and "discontinuous in the student field r" in msg and "Dirac" in msg
    assert "pseudo-Huber" in msg and "--outside-theory" in msg
    res = solve(model, s, paths=1000, allow_outside_theory=True)
    assert res.status == "outside_theory" and res.meta["outside_theory"]
    # the CLI: exit 2, one message, no traceback; --outside-theory runs it (exit 1: not ok)
    cmd = [sys.executable, "-m", "dmftgen", "solve", str(f), "--T", "0.5", "--paths", "1000",
           "--out", str(tmp_path / "x.json")]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "Dirac" in p.stderr
    p = subprocess.run(cmd + ["--outside-theory"], capture_output=True, text=True)
    assert p.returncode == 1 and "outside_theory" in p.stderr


def test_show_names_the_jump(tmp_path):
    f = _write(tmp_path, "lad", LAD)
    p = subprocess.run([sys.executable, "-m", "dmftgen", "show", str(f)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "outside the theory" in p.stdout and "discontinuous in r" in p.stdout


@pytest.mark.slow
@pytest.mark.parametrize("dt", [0.05, 0.02, 0.01])
def test_gradient_flow_committee_table_of_the_issue(committee, dt):
    """The issue's setting (delta 3, tau 0, T 5): sweep vs SGF at the same dt, d = 2000, 8 seeds;
    4 combined standard errors."""
    s = Settings(delta=3, tau=0.0, T=5, dt=dt)
    th = solve(committee, s, paths=20000)
    assert th.ok, th.message
    sim = simulate(committee, s, d=2000, seeds=8, method="sgf")
    for key in ("train_loss", "test_loss"):
        assert _z(sim[key][-1], sim[key + "_sem"][-1], th[key][-1], th[key + "_err"][-1]) < 4.0


def test_compare_and_sweep_refuse_lad_before_computing(tmp_path, gen_dir):
    """compare and sweep refuse a model outside the theory at once (exit 2, no traceback), before
    any simulation: nothing is written."""
    from dmftgen.codegen import generate

    f = _write(tmp_path, "lad", LAD)
    generate(load_model(str(f)))
    for cmd in (["compare", str(f), "--T", "0.5", "--d", "64", "--seeds", "2", "--out", str(tmp_path / "cmp")],
                ["sweep", str(f), "--what", "solve", "--grid", "tau=0.1,0.2", "--T", "0.5",
                 "--out", str(tmp_path / "sw.nc")]):
        p = subprocess.run([sys.executable, "-m", "dmftgen", *cmd], capture_output=True, text=True, timeout=300)
        assert p.returncode == 2, (cmd[0], p.stderr)
        assert "Traceback" not in p.stderr and "discontinuous in the student field r" in p.stderr
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "sw.nc").exists()


def _record_reference(k, m, kl, n_tan_g, kl_det, gam, sizes, det, C, MF, su, R, scale_rs, Ku):
    """checks._record_row in numpy: the per-group K_ell rows formed explicitly, then contracted."""
    G, n, k0 = gam.shape[0], (k + 1) * m, k * m
    if det is not None:
        Kr = np.repeat(det[None], G, axis=0)
    else:
        Kr = np.zeros((G, m, n))
        if n_tan_g and k > 0:
            Kr[:, :, :k0] = kl[:, :, :k0] / n_tan_g + (kl_det[None, k0:n, :k0] if kl_det.size else 0.0)
        Kr[:, :, k0:] = gam / sizes[:, None, None]
    ck = np.einsum("aj,gbj->gab", C, Kr)
    km = Kr @ MF
    rs = (np.einsum("aj,gbj->gab", R[:, :k0], su[:, :, :k0]) / (sizes[:, None, None] * scale_rs)
          if scale_rs > 0 else np.zeros((G, m, m)))
    Kbar = Kr.mean(0)       # tangent part: every group has n_tan_g tangent paths
    Kbar[:, k0:] = np.tensordot(sizes / sizes.sum(), Kr[:, :, k0:], axes=1)  # Gamma_k: over all paths
    return ck, km, rs, np.abs(Ku - Kbar).max() / np.abs(Kbar).max()


@pytest.mark.parametrize("m,kk,n_tan_g,use_cv,deterministic,scale_rs",
                         [(2, 1, 3, True, False, 0.06), (1, 1, 4, False, False, 0.0),
                          (2, 0, 0, False, False, 0.06), (3, 2, 0, False, True, 0.02)])
def test_record_row_equals_the_explicit_group_rows(m, kk, n_tan_g, use_cv, deterministic, scale_rs):
    """The self-checks' per-group contractions (one compiled pass, shared by the row-mode sweep and
    by solves that keep every row) against the same contractions on explicitly formed group rows,
    with unequal group sizes (Gamma_k is weighted by them, the tangent part is not) and a
    theta-side row off the group mean by a known amount. Tolerance: round-off of sums of ~30
    terms of size ~1, 1e-12."""
    from dmftgen.dmft.checks import _record_row

    rng = np.random.default_rng(3)
    G, k = 5, 4
    n, NN = (k + 1) * m, 8 * m
    kl = rng.standard_normal((G, m, NN))
    kl_det = rng.standard_normal((NN, NN)) if use_cv else np.zeros((0, 0))  # checks._NO_ROW: none
    gam, sizes = rng.standard_normal((G, m, m)), rng.integers(30, 60, G).astype(float)
    det = rng.standard_normal((m, n)) if deterministic else None
    C, MF = rng.standard_normal((m, n)), rng.standard_normal((n, kk))
    su, R = rng.standard_normal((G, m, NN)), rng.standard_normal((m, NN))
    Ku = rng.standard_normal((m, n))
    ref = _record_reference(k, m, kl, n_tan_g, kl_det, gam, sizes, det, C, MF, su, R, scale_rs, Ku)
    ck, km, rs = np.zeros((G, m, m)), np.zeros((G, m, kk)), np.zeros((G, m, m))
    cons = _record_row(k, m, kl, n_tan_g, kl_det, gam, sizes, np.zeros((0, 0)) if det is None else det,
                       C, MF, su, R, scale_rs, Ku, ck, km, rs)
    for got, want in zip((ck, km, rs, cons), ref):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert ref[3] > 0.1  # the theta-side row differs: the residual is O(1), not round-off
