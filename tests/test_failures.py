"""Failure semantics (issue 14): corrupted kernels, unwritable outputs, interrupts and divergence
never lose or fake a result.  One test (or more) per case of the issue's table; the Ctrl-C and
SIGKILL cases run a real subprocess (tests/test_interrupts.py).
"""
from __future__ import annotations

import errno
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from dmftgen import Model, Settings, load_model, student, teacher
from dmftgen.cli import main
from dmftgen.errors import ModelError, SettingsError, StaleKernelsError
from dmftgen.results import Result

REPO = Path(__file__).resolve().parent.parent
GEN = REPO / "generated"
TINY_SIM = ["--d", "32", "--seeds", "2", "--T", "0.4", "--dt", "0.1"]
TINY_SOLVE = ["--T", "0.4", "--dt", "0.1", "--paths", "400"]


def _no_compute(monkeypatch):
    """Make any simulation or solve fail loudly: proves a check happened before computing."""
    def boom(*a, **k):
        raise AssertionError("computation started before the output check")

    import dmftgen.dmft
    import dmftgen.sim
    monkeypatch.setattr(dmftgen.sim, "simulate", boom)
    monkeypatch.setattr(dmftgen.dmft, "solve", boom)
    monkeypatch.setattr("dmftgen.comparison.compare", boom)


# ----------------------------------------------------------------------------------------------
# generated kernels: content hash, generator hash, syntax errors, same-name models
# ----------------------------------------------------------------------------------------------
def _fresh_import(monkeypatch, name):
    """Let load_kernels import generated/<name>.py from DMFTGEN_GENERATED in this process; the
    module table entry is restored (or removed) after the test."""
    monkeypatch.setitem(sys.modules, f"dmftgen_generated.{name}", None)


def test_one_byte_edit_of_a_kernel_is_refused(gen_dir, monkeypatch, logistic):
    from dmftgen.codegen import load_kernels

    gen_dir.mkdir()
    text = (GEN / "logistic.py").read_text()
    start = text.index("def ell_jac_row(")
    i = text.index("_t0*_sigmoid(-r0)", start) + len("_t0*_sigmoid(")
    edited = text[:i] + "+" + text[i + 1:]  # one byte in ell_jac_row: sigma(r) sigma(-r) -> sigma(r)^2
    assert len(edited) == len(text) and edited.count("_t0*_sigmoid(+r0)") == 1
    (gen_dir / "logistic.py").write_text(edited)
    _fresh_import(monkeypatch, "logistic")
    with pytest.raises(StaleKernelsError, match="edited or corrupted") as e:
        load_kernels(logistic)
    assert "python -m dmftgen generate logistic" in str(e.value)
    # the unedited copy loads (the check is on content, not on the location)
    (gen_dir / "logistic.py").write_text(text)
    _fresh_import(monkeypatch, "logistic")
    assert load_kernels(logistic).SOURCE_HASH.startswith("sha256:")


def test_cli_refuses_corrupted_kernels_with_one_message(gen_dir, capsys, monkeypatch):
    gen_dir.mkdir()
    text = (GEN / "linreg.py").read_text()
    (gen_dir / "linreg.py").write_text(text.replace("def h_row(", "def h_row2("))
    _fresh_import(monkeypatch, "linreg")
    rc = main(["solve", "linreg", *TINY_SOLVE, "--out", str(gen_dir.parent / "x.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "edited or corrupted" in err and "Run: python -m dmftgen generate linreg" in err
    assert len(err.strip().splitlines()) == 1 and not (gen_dir.parent / "x.json").exists()


def test_syntax_broken_generated_file_is_one_message(gen_dir, monkeypatch, linreg):
    """Even with a matching content hash (e.g. an emitter bug), a syntax error is one message."""
    from dmftgen.codegen import load_kernels
    from dmftgen.codegen.hashing import CONTENT_PREFIX, content_hash

    gen_dir.mkdir()
    text = (GEN / "linreg.py").read_text().replace("def ell_row(", "def ell_row((", 1)
    lines = [ln for ln in text.splitlines(True)]
    k = next(i for i, ln in enumerate(lines) if ln.startswith(CONTENT_PREFIX))
    lines[k] = CONTENT_PREFIX + content_hash(text) + "\n"
    (gen_dir / "linreg.py").write_text("".join(lines))
    _fresh_import(monkeypatch, "linreg")
    with pytest.raises(StaleKernelsError, match=r"not valid Python \(line \d+") as e:
        load_kernels(linreg)
    assert "python -m dmftgen generate linreg" in str(e.value)
    assert "dmftgen_generated.linreg" not in sys.modules or sys.modules["dmftgen_generated.linreg"].__file__ \
        != str(gen_dir / "linreg.py")


@pytest.mark.parametrize("rel", ["symbolic.py", "continuity.py", "functions.py", "codegen/printer.py", "codegen/emit.py",
                                 "codegen/__init__.py", "codegen/templates/dmft.py"])
def test_every_input_of_the_generated_bytes_is_in_the_source_hash(rel, tmp_path, monkeypatch, linreg):
    """A change to the derivation, the primitives, the printer, emitter, loader or a template
    changes every source hash (so stale kernels are refused instead of loading silently)."""
    import dmftgen.codegen.emit as emit
    import dmftgen.codegen.hashing as hashing

    pkg = tmp_path / "dmftgen"
    shutil.copytree(REPO / "dmftgen", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(hashing, "_PKG", pkg)
    monkeypatch.setattr(emit, "TEMPLATE_DIR", pkg / "codegen" / "templates")
    before = hashing.source_hash(linreg)
    with open(pkg / rel, "a") as fh:
        fh.write("\n# a change that may alter the generated code\n")
    assert hashing.source_hash(linreg) != before


def test_source_hash_of_the_repository_equals_the_copy(tmp_path, monkeypatch, linreg):
    import dmftgen.codegen.hashing as hashing

    real = hashing.source_hash(linreg)
    pkg = tmp_path / "dmftgen"
    shutil.copytree(REPO / "dmftgen", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(hashing, "_PKG", pkg)
    assert hashing.source_hash(linreg) == real  # the copy in the previous test is faithful


TWIN = '''"""Twin {which}."""
import sympy as sp
from dmftgen import Model, student, teacher
r = student(1)
s = teacher(1)
MODEL = Model(name="twin", student=r, teacher=s, loss=(r[0] - {c} * s[0]) ** 2 / 2)
'''


def test_two_model_files_with_one_name_are_refused(tmp_path, monkeypatch, capsys):
    from dmftgen.codegen import generated_path, load_kernels

    monkeypatch.delenv("DMFTGEN_GENERATED", raising=False)
    (tmp_path / "a.py").write_text(TWIN.format(which="a", c=1))
    (tmp_path / "b.py").write_text(TWIN.format(which="b", c=2))
    assert main(["generate", str(tmp_path / "a.py")]) == 0
    gen = tmp_path / "generated" / "twin.py"
    before = gen.read_bytes()
    rc = main(["generate", str(tmp_path / "b.py")])
    err = capsys.readouterr().err
    assert rc == 2 and "both declare model `twin`" in err and "was not overwritten" in err
    assert gen.read_bytes() == before  # a's kernels are kept
    b = load_model(str(tmp_path / "b.py"))
    assert generated_path(b) == gen
    with pytest.raises(StaleKernelsError, match="holds the kernels of a.py"):
        load_kernels(b)
    # once a.py is gone, b may take the name
    (tmp_path / "a.py").unlink()
    assert main(["generate", str(tmp_path / "b.py")]) == 0 and gen.read_bytes() != before


# ----------------------------------------------------------------------------------------------
# names: NFKC normalisation, collisions, builtins
# ----------------------------------------------------------------------------------------------
R, S = student(1), teacher(1)


def test_nfkc_collision_is_refused():
    fi, lig = sp.Symbol("fi", real=True), sp.Symbol("\ufb01", real=True)  # "ﬁ" is "fi" to Python
    with pytest.raises(ModelError, match="same Python identifier `fi`"):
        Model(name="lig", student=R, teacher=S, params={fi: 1.0, lig: 2.0}, loss=(R[0] - fi * S[0] - lig) ** 2 / 2)


def test_single_non_normalised_name_is_renamed_everywhere():
    lig = sp.Symbol("\ufb01", real=True)
    m = Model(name="lig", student=R, teacher=S, params={lig: 2.0}, loss=(R[0] - lig * S[0]) ** 2 / 2)
    assert m.param_names == ("fi",) and {x.name for x in m.loss.free_symbols} == {"r0", "s0", "fi"}
    assert m.param_vector({"fi": 3.0})[0] == 3.0 and m.param_vector({"\ufb01": 4.0})[0] == 4.0


@pytest.mark.parametrize("name", ["abs", "min", "max", "len", "lambda", "math"])
def test_builtins_keywords_and_reserved_names_are_refused(name):
    sym = sp.Symbol(name, real=True)
    with pytest.raises(ModelError, match=f"`{name}`"):
        Model(name="bad", student=R, teacher=S, params={sym: 1.0}, loss=(R[0] - sym * S[0]) ** 2 / 2)


def test_builtin_parameter_name_in_a_model_file_is_one_message(tmp_path, capsys):
    f = tmp_path / "absmodel.py"
    f.write_text(TWIN.replace('name="twin"', 'name="absmodel"').format(which="x", c=1)
                 .replace("loss=", "params={sp.Symbol('abs', real=True): 1.0}, loss="))
    assert main(["show", str(f)]) == 2
    err = capsys.readouterr().err
    assert "Python builtin" in err and "abs_" in err and "Traceback" not in err


def test_show_says_model_files_are_executed(capsys):
    assert main(["show", "linreg"]) == 0
    assert "executed when it is loaded" in capsys.readouterr().out
    assert "executed on load" in (REPO / "README.md").read_text()


def test_a_closed_pipe_is_no_traceback(monkeypatch):
    """`dmftgen show-result x.npz | head -1` ended in a BrokenPipeError traceback."""
    import io

    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["list"]) == 141


def test_show_prints_the_init_and_teacher_laws_as_numbers(tmp_path, capsys):
    """The default stds were printed as sympy Floats (`N(0, 1.00000000000000^2)`), 1/2 as `1/2^2`."""
    f = tmp_path / "stds.py"
    f.write_text(TWIN.replace('name="twin"', 'name="stds"').format(which="x", c=1))
    assert main(["show", str(f)]) == 0
    assert "theta0 ~ N(0, 0^2), theta* ~ N(0, 1^2)" in capsys.readouterr().out
    f = tmp_path / "half.py"
    f.write_text(TWIN.replace('name="twin"', 'name="half"').format(which="x", c=1)
                 .replace("loss=", "init_std=sp.Rational(1, 2), loss="))
    assert main(["show", str(f)]) == 0
    assert "theta0 ~ N(0, 0.5^2)" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# settings: NaN parameters, grids that do not end at T
# ----------------------------------------------------------------------------------------------
def test_nan_parameter_is_refused_like_nan_delta(capsys, monkeypatch):
    _no_compute(monkeypatch)
    with pytest.raises(SettingsError, match="parameter `beta` must be finite"):
        Settings(params={"beta": float("nan")})
    for bad in ("nan", "inf", "-inf"):
        assert main(["solve", "logistic", "--param", f"beta={bad}", "--out", "/tmp/never.json"]) == 2
        assert "must be finite" in capsys.readouterr().err
    with pytest.raises(SettingsError, match="must be finite"):
        Settings(delta=float("nan"))


def test_negative_standard_deviation_parameter_is_refused(capsys, monkeypatch):
    """committee's init_std is a parameter: a negative value given on the command line (the
    model file's own check covers only the defaults) is one clear error, exit 2, before any work;
    0 is a valid standard deviation."""
    from dmftgen.model import load_model

    _no_compute(monkeypatch)
    committee = load_model("committee")
    with pytest.raises(SettingsError, match=r"init_std = -0.3 .*init_std=-0.3.*>= 0"):
        committee.param_vector({"init_std": -0.3})
    assert committee.param_vector({"init_std": 0.0})[committee.param_names.index("init_std")] == 0.0
    assert main(["solve", "committee", "--param", "init_std=-0.3", "--out", "/tmp/never.json"]) == 2
    err = capsys.readouterr().err
    assert "init_std = -0.3" in err and "Traceback" not in err


def test_grid_must_end_at_T():
    with pytest.raises(SettingsError, match=r"not a whole number of steps.*--T 0.9 or --T 1.2, or --dt 0.25"):
        Settings(T=1.0, dt=0.3)
    s = Settings(T=0.3, dt=0.1)  # 0.3 / 0.1 = 2.9999999999999996: a whole number up to rounding
    assert s.n_steps == 3 and s.times[-1] == pytest.approx(0.3, rel=1e-12)
    assert Settings(T=5, dt=0.05).times[-1] == pytest.approx(5.0, rel=1e-12)


def test_grid_with_too_many_steps_is_refused(capsys):
    """A tiny dt or a huge T: one message (they raised numpy's "Maximum allowed size exceeded",
    an OverflowError in the memory estimate, or were killed for memory), exit 2."""
    from dmftgen.config import MAX_STEPS

    assert Settings(T=MAX_STEPS * 0.5, dt=0.5).n_steps == MAX_STEPS
    for T, dt in ((1.0, 1e-300), (1e300, 0.1), (1.0, 1e-9)):
        with pytest.raises(SettingsError, match="grid points"):
            Settings(T=T, dt=dt)
    for cmd in (["simulate", "linreg", "--method", "sgf", "--d", "64"], ["solve", "linreg"], ["solve-long", "linreg"]):
        assert main([*cmd, "--T", "1", "--dt", "1e-300", "--out", "/tmp/never.npz"]) == 2, cmd
        assert "larger --dt" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# --schedule: an arithmetic formula, never eval'd
# ----------------------------------------------------------------------------------------------
ATTACKS = [
    "__import__('os').system('touch {m}')",
    "(lambda: __import__('os').system('touch {m}'))()",
    "t.__class__.__mro__[-1].__subclasses__()",
    "exec('import os; os.system(\"touch {m}\")')",
    "open('{m}', 'w')",
    "Symbol('t').__init__.__globals__",
    "9**9**9**9",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_schedule_string_cannot_run_code(attack, tmp_path, capsys):
    marker = tmp_path / "pwned"
    text = attack.format(m=marker)
    # the reference: sympy's parser would really have executed the first attack
    if attack.startswith("__import__"):
        sp.sympify(text)
        assert marker.exists()
        marker.unlink()
    rc = main(["simulate", "linreg", *TINY_SIM, "--schedule", text, "--out", str(tmp_path / "s.json")])
    assert rc == 2 and not marker.exists() and not (tmp_path / "s.json").exists()
    assert "schedule" in capsys.readouterr().err


def test_schedule_formulas_still_work():
    from dmftgen.sim.schedule import Schedule

    t = np.array([0.0, 1.0, 3.0])
    np.testing.assert_allclose(Schedule("1/(1 + 4*t)")(t), 1 / (1 + 4 * t))
    np.testing.assert_allclose(Schedule("exp(-t/4)")(t), np.exp(-t / 4))
    np.testing.assert_allclose(Schedule("Piecewise((1, t < 2), (0.1, True))")(t), [1, 1, 0.1])
    np.testing.assert_allclose(Schedule("max(0.1, 1 - t)*sqrt(1 + pi)")(t),
                               np.maximum(0.1, 1 - t) * math.sqrt(1 + math.pi))


# ----------------------------------------------------------------------------------------------
# outputs: checked before computing, rescue path, failed runs beside good results
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", ["simulate", "solve", "solve-long"])
@pytest.mark.parametrize("where", ["/proc/dmftgen-out.json", "/sys/dmftgen/out.json", "FILE/out.json", "DIR"])
def test_unwritable_out_is_refused_before_computing(cmd, where, tmp_path, capsys, monkeypatch):
    _no_compute(monkeypatch)
    import dmftgen.dmft.longtime
    monkeypatch.setattr(dmftgen.dmft.longtime, "solve_long", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    (tmp_path / "FILE").write_text("not a directory")
    (tmp_path / "DIR").mkdir()
    out = where.replace("FILE", str(tmp_path / "FILE")).replace("DIR", str(tmp_path / "DIR"))
    rc = main([cmd, "linreg", "--out", out])
    err = capsys.readouterr().err
    assert rc == 2 and "--out" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["/proc/dmftgen-cmp", "FILE", "FILE/sub"])
def test_unwritable_compare_dir_is_refused_before_computing(where, tmp_path, capsys, monkeypatch):
    _no_compute(monkeypatch)
    (tmp_path / "FILE").write_text("x")
    out = where.replace("FILE", str(tmp_path / "FILE"))
    assert main(["compare", "linreg", "--out", out]) == 2
    assert "--out" in capsys.readouterr().err


def test_compare_refuses_a_directory_with_other_files(tmp_path, capsys, monkeypatch):
    _no_compute(monkeypatch)
    (tmp_path / "thesis.tex").write_text("precious")
    assert main(["compare", "linreg", "--out", str(tmp_path)]) == 2
    assert "thesis.tex" in capsys.readouterr().err and (tmp_path / "thesis.tex").read_text() == "precious"


def _fail_writes_into(monkeypatch, directory):
    import dmftgen.results as results

    real = results.atomic_write

    def atomic_write(path, payload):
        if Path(path).parent.resolve() == Path(directory).resolve():
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, payload)

    monkeypatch.setattr(results, "atomic_write", atomic_write)


def test_write_failure_at_the_end_saves_to_a_named_rescue_path(tmp_path, capsys, monkeypatch):
    out_dir, cwd = tmp_path / "full", tmp_path / "cwd"
    out_dir.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    _fail_writes_into(monkeypatch, out_dir)
    rc = main(["simulate", "linreg", *TINY_SIM, "--out", str(out_dir / "r.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "No space left on device" in err and "was saved to" in err
    rescued = list(cwd.glob("dmftgen-rescued-*-r.json"))
    assert len(rescued) == 1 and str(rescued[0].name) in err
    res = Result.load(rescued[0])
    assert res.status == "ok" and len(res.t) == 5
    assert not (out_dir / "r.json").exists()


def test_diverged_run_does_not_replace_a_good_result(tmp_path, capsys):
    out = tmp_path / "lr.json"
    assert main(["simulate", "linreg", "--d", "64", "--seeds", "2", "--out", str(out)]) == 0
    good = out.read_bytes()
    rc = main(["simulate", "linreg", "--d", "64", "--seeds", "2", "--tau", "5", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and out.read_bytes() == good
    failed = tmp_path / "lr.failed.json"
    assert f"was written beside it to {failed}" in err
    assert Result.load(failed).status == "unstable"
    # a failed earlier file is simply replaced by the next run (nothing good to keep)
    bad = tmp_path / "bad.json"
    Result.load(failed).save(bad)
    assert main(["simulate", "linreg", "--d", "64", "--seeds", "2", "--tau", "5", "--out", str(bad)]) == 1
    assert not (tmp_path / "bad.failed.json").exists()


# ----------------------------------------------------------------------------------------------
# instability: status unstable, non-zero exit
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cmd,extra", [("simulate", ["--d", "128", "--seeds", "2"]), ("solve", ["--paths", "400"])])
def test_linreg_beyond_tau_c_is_unstable(cmd, extra, tmp_path, capsys):
    """tau = 5 > tau_c(delta=2) = 2 (Euler grid: 1.92): the SGF grows like exp(c t); at T = 5 the
    loss has grown by ~1e8.  Both the exact criterion and the growth must fire."""
    from dmftgen.reference.volterra import critical_tau

    assert critical_tau(2.0, 0.0) == pytest.approx(2.0, rel=1e-6)
    out = tmp_path / "u.json"
    rc = main([cmd, "linreg", "--tau", "5", *extra, "--out", str(out)])
    err = capsys.readouterr().err
    res = Result.load(out)
    assert rc == 1 and res.status == "unstable" and "unstable" in err
    assert "Volterra criterion" in res.message and "grew by a factor" in res.message
    assert res.meta["stability"]["loss_growth"] > 1e6 and not res.meta["stability"]["criterion"]["stable"]
    # below the limit: ok
    assert main([cmd, "linreg", "--tau", "1.5", *extra, "--out", str(out)]) == 0
    assert Result.load(out).status == "ok"


def test_an_unstable_euler_grid_asks_for_a_smaller_dt(linreg):
    """dt = 0.8 is unstable for linreg at any tau (dt m_+ > 2): the advice was 'Lower --tau below 0'."""
    from dmftgen.codegen import load_kernels
    from dmftgen.stability import flag_instability

    t = np.linspace(0, 1.6, 3)
    res = Result({"t": t, "train_loss": 0.5 + 0 * t, "test_loss": 0.5 + 0 * t}, {})
    flag_instability(res, load_kernels(linreg), linreg, Settings(T=1.6, dt=0.8))
    assert res.status == "unstable" and "Lower --dt" in res.message and "below 0" not in res.message, res.message


def test_loss_growth_alone_flags_a_nonlinear_model(logistic):
    """No exact criterion for nonlinear ell: growth by >= 1e6 alone marks the run unstable."""
    from dmftgen.codegen import load_kernels
    from dmftgen.stability import GROWTH, flag_instability

    kern = load_kernels(logistic)
    t = np.linspace(0, 1, 11)
    for factor, status in ((0.5 * GROWTH, "ok"), (2 * GROWTH, "unstable")):
        res = Result({"t": t, "train_loss": 0.7 * factor ** t, "test_loss": 0.7 + 0 * t}, {})
        flag_instability(res, kern, logistic, Settings(T=1.0, dt=0.1))
        assert res.status == status and res.meta["stability"]["criterion"] is None


# ----------------------------------------------------------------------------------------------
# memory estimate before allocating
# ----------------------------------------------------------------------------------------------
def test_a_stored_x_too_large_names_a_fix_the_command_has(tmp_path, capsys, monkeypatch):
    """compare and w2 said "use --matrix-free (SGF)", an option only `simulate` has."""
    import dmftgen.sim.driver as driver

    monkeypatch.setattr(driver, "_physical_memory", lambda: 2.0**30)
    rc = main(["compare", "linreg", "--d", "20000", "--seeds", "2", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and "GiB" in err and "`dmftgen simulate --method sgf --matrix-free`" in err, err
    assert not (tmp_path / "c").exists()


def test_solve_refuses_too_many_paths_with_the_figure(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DMFTGEN_MEMORY_LIMIT", "4G")
    import dmftgen.dmft.solver as solver
    monkeypatch.setattr(solver, "Solve", lambda *a, **k: (_ for _ in ()).throw(AssertionError("allocated")))
    for args in (["--paths", "10000000"], ["--dt", "1e-4", "--paths", "20000"]):
        rc = main(["solve", "linreg", *args, "--out", str(tmp_path / "m.json")])
        err = capsys.readouterr().err
        assert rc == 2 and "GiB" in err and "4.00 GiB available (DMFTGEN_MEMORY_LIMIT)" in err
        assert "fewer --paths" in err and "Traceback" not in err


@pytest.mark.parametrize("name,paths,T,dt", [("linreg", 40000, 2.0, 0.05), ("logistic", 2000, 4.0, 0.05)])
def test_memory_estimate_matches_the_traced_peak(name, paths, T, dt):
    """Independent reference: the peak of numpy allocations traced by tracemalloc.  Measured
    ratios peak/estimate 0.82 (linreg, P-dominated) and 1.13 (logistic, tangents + N^2 terms);
    small fixed costs (~4 MiB: probes, QMC sample) are not modelled, so the band is [0.6, 1.5]."""
    import tracemalloc

    from dmftgen.dmft import solve
    from dmftgen.dmft.memory import estimate_bytes

    model = load_model(name)
    s = Settings(T=T, dt=dt)
    solve(model, Settings(T=0.2, dt=0.1), paths=200)  # compile and fill caches outside the trace
    tracemalloc.start()
    try:
        solve(model, s, paths=paths)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    ratio = peak / estimate_bytes(model, s, paths)
    assert 0.6 < ratio < 1.5, ratio


# ----------------------------------------------------------------------------------------------
# files: byte-identical for the same seed, atomic writes without umask, stale temporaries
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".npz", pytest.param(".nc", marks=pytest.mark.skipif(
    importlib.util.find_spec("h5netcdf") is None, reason="netCDF needs the dist extra"))])
def test_same_seed_same_settings_give_byte_identical_files(suffix, tmp_path):
    # .nc: the labelled file kept wall_s in its meta attribute, so two identical runs differed
    a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    for cmd, extra in (("simulate", TINY_SIM), ("solve", TINY_SOLVE)):
        assert main([cmd, "linreg", *extra, "--out", str(a)]) == 0
        assert main([cmd, "linreg", *extra, "--out", str(b)]) == 0
        assert a.read_bytes() == b.read_bytes(), cmd
        meta = Result.load(a).meta
        assert "wall_s" not in meta and "timings" not in meta  # documented: not written


def test_timings_stay_in_memory(linreg):
    from dmftgen.sim import simulate

    res = simulate(linreg, Settings(T=0.2, dt=0.1), d=16, seeds=1)
    assert res.meta["wall_s"] >= 0


def test_atomic_write_touches_no_umask(tmp_path, monkeypatch):
    from dmftgen._io import atomic_write

    old = os.umask(0o027)
    os.umask(old)
    monkeypatch.setattr(os, "umask", lambda *a: (_ for _ in ()).throw(AssertionError("umask touched")))
    try:
        real = os.open
        modes = []
        monkeypatch.setattr(os, "open", lambda p, f, m=0o777, **k: (modes.append(m), real(p, f, m, **k))[1])
        atomic_write(tmp_path / "f.json", b"{}")
    finally:
        monkeypatch.undo()
    assert (tmp_path / "f.json").read_bytes() == b"{}" and modes == [0o666]
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o666 & ~old


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_dead_writers_are_cleaned(tmp_path):
    from dmftgen._io import atomic_write, replace_dir

    dead = _dead_pid()
    stale = tmp_path / f".r.json.{dead}.0123abcd.tmp"
    live = tmp_path / f".r.json.{os.getppid()}.0123abcd.tmp"   # a concurrent writer: kept
    other = tmp_path / f".s.json.{dead}.0123abcd.tmp"          # another target, dead writer
    staledir = tmp_path / f".cmp.{dead}.0123abcd.tmpdir"
    for p in (stale, live, other):
        p.write_bytes(b"half")
    staledir.mkdir()
    (staledir / "figure.png").write_bytes(b"half")
    keep = tmp_path / ".hidden-user-file.tmp"                  # not ours: never touched
    keep.write_bytes(b"mine")
    atomic_write(tmp_path / "r.json", b"{}")
    assert not stale.exists() and not other.exists() and not staledir.exists()
    assert live.exists() and keep.exists()
    replace_dir(tmp_path / "cmp", {"a.txt": b"a"})
    assert (tmp_path / "cmp" / "a.txt").read_bytes() == b"a"


# ----------------------------------------------------------------------------------------------
# directories replaced as a unit
# ----------------------------------------------------------------------------------------------
def test_output_set_is_replaced_as_a_unit_when_the_disk_fills(tmp_path, monkeypatch):
    import builtins

    import dmftgen._io as io_

    out = tmp_path / "cmp"
    io_.replace_dir(out, {f"f{i}": b"old" for i in range(6)})
    calls = []

    def full_open(path, mode="r", *a, **k):
        if "w" in mode:
            calls.append(path)
            if len(calls) == 6:  # disk full at the last of six files
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return builtins.open(path, mode, *a, **k)

    monkeypatch.setattr(io_, "open", full_open, raising=False)
    with pytest.raises(OSError):
        io_.replace_dir(out, {f"f{i}": b"new" for i in range(6)})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {f"f{i}": b"old" for i in range(6)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp"]  # no temporary directory left
    monkeypatch.undo()
    io_.replace_dir(out, {"g": b"new"})  # success: exactly the new set (no stale member kept)
    assert [p.name for p in out.iterdir()] == ["g"]


def test_replace_dir_without_exchange_keeps_old_until_new_is_in(tmp_path, monkeypatch):
    import dmftgen._io as io_

    out = tmp_path / "d"
    io_.replace_dir(out, {"a": b"1"})
    monkeypatch.setattr(io_, "_exchange", lambda a, b: False)  # kernels without renameat2
    io_.replace_dir(out, {"b": b"2"})
    assert [p.name for p in out.iterdir()] == ["b"] and sorted(p.name for p in tmp_path.iterdir()) == ["d"]


# ----------------------------------------------------------------------------------------------
# sweep point keys cover every input of the kernels and the run
# ----------------------------------------------------------------------------------------------
def test_sweep_keys_change_with_regenerated_kernels_and_generator_code(tmp_path, gen_dir, monkeypatch, linreg):
    import dmftgen.sweep as sweep

    ident = sweep.model_identity(linreg)
    assert ident["kernels"] is None  # gen_dir is empty: no kernels yet
    gen_dir.mkdir()
    text = (GEN / "linreg.py").read_text()
    (gen_dir / "linreg.py").write_text(text)
    k1 = sweep.model_identity(linreg)["kernels"]
    from dmftgen.codegen.hashing import CONTENT_PREFIX, content_hash
    assert k1 == content_hash(text)
    # kernels regenerated from changed derivation code (same declaration): a new key
    (gen_dir / "linreg.py").write_text(text.replace(CONTENT_PREFIX + k1, CONTENT_PREFIX + "sha256:other"))
    assert sweep.model_identity(linreg)["kernels"] != k1
    # the run code includes the derivation, the model layer, the code generator
    pkg = tmp_path / "dmftgen"
    shutil.copytree(REPO / "dmftgen", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sweep, "__file__", str(pkg / "sweep.py"))
    base = sweep.code_hash()
    for rel in ("symbolic.py", "model.py", "functions.py", "codegen/printer.py", "stability.py"):
        with open(pkg / rel, "a") as fh:
            fh.write("\n# changed\n")
        assert sweep.code_hash() != base, rel
        base = sweep.code_hash()


def test_corrupted_sweep_parts_are_recomputed(tmp_path):
    """Truncated, empty or bit-flipped parts count as missing and are recomputed (kept behaviour)."""
    pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    from dmftgen.sweep import SweepSpec, part_path, run_sweep, sweep_meta

    out = tmp_path / "s.nc"
    spec = SweepSpec("linreg", "simulate", Settings(T=0.3, dt=0.1), {"delta": [1.0, 2.0, 3.0]},
                     {"d": 16, "seeds": 1})
    ref = run_sweep(spec, out, workers=0)
    pts = spec.points()
    paths = [part_path(out, p.key) for p in pts]
    data = paths[2].read_bytes()
    paths[0].write_bytes(paths[0].read_bytes()[:100])   # truncated
    paths[1].write_bytes(b"")                           # empty
    i = len(data) // 2
    paths[2].write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])  # one flipped byte
    ds = run_sweep(spec, out, workers=0)
    meta = sweep_meta(ds)
    assert meta["computed"] == 3, meta  # np.load checks the zip CRC: the flipped part is unreadable
    np.testing.assert_array_equal(ds["test_loss"].values, ref["test_loss"].values)
    assert (ds["status"].values == "ok").all()


# ----------------------------------------------------------------------------------------------
# kept behaviours: threads, concurrent generate
# ----------------------------------------------------------------------------------------------
def test_results_identical_at_1_and_2_threads(linreg, logistic):
    import numba

    from dmftgen.dmft import solve
    from dmftgen.sim import simulate

    old = numba.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            out.append((simulate(logistic, Settings(T=0.3, dt=0.1), d=64, seeds=2),
                        solve(logistic, Settings(T=0.3, dt=0.1), paths=1000)))
    finally:
        numba.set_num_threads(old)
    for a, b in zip(*out):
        assert a.keys() == b.keys()
        for k in a.keys():
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("env, policy", [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
                                         ({"GOMP_SPINCOUNT": "1000"}, None)])
def test_idle_openmp_workers_sleep_unless_the_user_chose(env, policy):
    """dmftgen/threads.py: spinning workers cost 3-6x the wall time of one thread on a busy 2-core
    machine; the user's own OMP_WAIT_POLICY / GOMP_SPINCOUNT is never overridden."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", "import os, dmftgen; print(os.environ.get('OMP_WAIT_POLICY'))"],
                         env={**base, **env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(policy)


def test_the_dmft_solvers_set_their_threads_for_the_call_only(monkeypatch, linreg):
    """dmftgen/threads.py: inside solve, BLAS runs on one thread (its threads only spun: CPU x1.9
    at the same wall) and the path groups are handed out one at a time; both are lifted after it."""
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    import dmftgen.dmft.solver as solver
    from dmftgen.threads import solver_threads

    def state():
        return ({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"},
                numba.get_parallel_chunksize())

    seen = []
    monkeypatch.setattr(solver, "_solve", lambda *a, **k: seen.append(state()) or "stub")
    old = numba.set_parallel_chunksize(0)  # a known state that every call must restore
    try:
        with threadpool_limits(limits=2, user_api="blas"):
            assert solver.solve(linreg, Settings(T=0.2, dt=0.1), paths=400) == "stub"
            assert seen == [({1}, 1)] and state() == ({2}, 0)

            # nested calls (a Richardson solve runs two solves) restore the outer state too:
            # numba.parallel_chunksize, one shared object with one saved value, left it at 1
            @solver_threads
            def outer():
                return solver.solve(linreg, Settings(T=0.2, dt=0.1), paths=400)

            assert outer() == "stub" and state() == ({2}, 0)
    finally:
        numba.set_parallel_chunksize(old)


def test_concurrent_generate_never_corrupts(tmp_path):
    """Four processes regenerate the same kernels at once: the file is whole and loads."""
    env = dict(os.environ, DMFTGEN_GENERATED=str(tmp_path / "g"), PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-m", "dmftgen", "generate", "linreg"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(4)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    assert (tmp_path / "g" / "linreg.py").read_bytes() == (GEN / "linreg.py").read_bytes()
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["linreg.py"]


def test_schedule_run_is_judged_by_growth_only(linreg):
    """With gamma(t) = 0.2 the effective temperature is 5 * 0.2 = 1 < tau_c: tau = 5 alone is not
    a reason to call the run unstable (the constant-tau criterion does not apply)."""
    from dmftgen.sim import simulate

    res = simulate(linreg, Settings(tau=5.0, T=2.0, dt=0.1), d=64, seeds=2, schedule="0.2")
    assert res.status == "ok" and res.meta["stability"]["criterion"] is None


# ----------------------------------------------------------------------------------------------
# w2 and solve-long: options checked before computing; a failed W2 scan keeps a good earlier one
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, flag", [(["--seeds", "-1"], "--seeds"), (["--seeds", "0"], "--seeds"),
                                       (["--times", ",,"], "--times"), (["--times", ""], "--times"),
                                       (["--times", "nan"], "--times"), (["--times", "9"], "--times"),
                                       (["--d", "64,64"], "--d"), (["--d", "64"], "--d"), (["--d", "1,64"], "--d"),
                                       (["--d", "a,64"], "--d"), (["--paths", "0"], "--paths"),
                                       (["--batch", "2"], "batch")])
def test_w2_bad_options_exit_2_before_computing(bad, flag, tmp_path, capsys, monkeypatch):
    _no_compute(monkeypatch)
    rc = main(["w2", "linreg", "--T", "1", "--d", "8,16", "--out", str(tmp_path / "w2")] + bad)
    err = capsys.readouterr().err
    assert rc == 2 and flag in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "w2").exists()


def test_w2_failed_runs_report_their_status_and_keep_a_good_earlier_output(tmp_path, capsys, monkeypatch):
    out = tmp_path / "w2"
    argv = ["w2", "linreg", "--d", "8,16", "--seeds", "2", "--T", "0.6", "--dt", "0.1", "--paths", "100",
            "--out", str(out)]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    # a diverging DMFT: its status and message, exit 1, nothing written
    assert main(argv + ["--tau", "1000"]) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "blew up" in err and "theta_samples" not in err and "nothing was written" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w2"]
    # a diverged simulation: the scan goes beside the earlier good one, said so
    import dmftgen.sim
    from dmftgen.results import Result

    real = dmftgen.sim.simulate

    def diverged(*a, **k):
        r = real(*a, **k)
        return Result(r.data, r.meta, status="diverged", message="every seed diverged (injected)")

    monkeypatch.setattr(dmftgen.sim, "simulate", diverged)
    assert main(argv) == 1
    err = capsys.readouterr().err
    failed = tmp_path / "w2.failed"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert json.loads((failed / "w2.json").read_text())["status"] == "diverged"
    assert f"written beside it to {failed}" in err and "injected" in err


@pytest.mark.parametrize("z", ["nan", "inf", "-1", "0"])
def test_solve_long_bad_z_exits_2_before_computing(z, tmp_path, capsys, monkeypatch):
    import dmftgen.dmft.longtime
    monkeypatch.setattr(dmftgen.dmft.longtime, "solve_long", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    rc = main(["solve-long", "linreg", "--z", z, "--out", str(tmp_path / "long.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "--z" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
