"""Ctrl-C (SIGINT), SIGTERM and SIGKILL on real subprocesses (issue 14).

Each child runs the ordinary CLI (``dmftgen.cli.main``) with one hook that prints READY at a known
point of the computation (a DMFT sweep row, an SGF step, inside an atomic write) and then waits;
the test sends the signal only after READY, so the interrupt always lands mid-computation.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dmftgen import Settings, load_model
from dmftgen.cli import main
from dmftgen.results import Result

REPO = Path(__file__).resolve().parent.parent

HOOK_SOLVE = """
import dmftgen.dmft.rside as rside
import dmftgen.dmft.solver as solver
_orig = rside.RSide.run
def _hook(self, k0, k1, *a):
    if k0 == 5:
        wait()
    return _orig(self, k0, k1, *a)
rside.RSide.run = _hook
"""

HOOK_SIM = """
import dmftgen.sim.driver as driver
import dmftgen.dmft
_orig = driver.run_sgf
def _hook(*a, tick=None, **k):
    def t(step):
        if step == 3:
            wait()
    return _orig(*a, tick=t, **k)
driver.run_sgf = _hook
_solve = dmftgen.dmft.solve
def _solve_hook(*a, **k):
    print("DMFT STARTED", flush=True)
    return _solve(*a, **k)
dmftgen.dmft.solve = _solve_hook
"""

PRELUDE = """
import signal, sys, time
# Python keeps SIGINT ignored when it starts with it ignored (a background job of a shell without
# job control, nohup): restore the interactive default so that the test does not depend on how
# pytest itself was started
signal.signal(signal.SIGINT, signal.default_int_handler)
def wait():
    print("READY", flush=True)
    for _ in range(1200):
        time.sleep(0.05)
    print("NOT INTERRUPTED", flush=True)
"""


def run_until_ready(tmp_path, hook, argv, sig):
    """Start the CLI with ``hook`` in a subprocess, send ``sig`` at READY; (rc, stdout, stderr)."""
    script = tmp_path / "child.py"
    script.write_text(PRELUDE + textwrap.dedent(hook)
                      + f"\nfrom dmftgen.cli import main\nsys.exit(main({argv!r}))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "READY":
                proc.send_signal(sig)
                break
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines) + out, err


SOLVE = ["solve", "linreg", "--T", "2", "--dt", "0.1", "--paths", "400", "--replicas", "1"]


def test_sigint_on_solve_writes_the_finished_part(tmp_path):
    out = tmp_path / "s.json"
    rc, stdout, err = run_until_ready(tmp_path, HOOK_SOLVE, SOLVE + ["--out", str(out)], signal.SIGINT)
    assert rc == 130, err
    assert "READY" in stdout and "NOT INTERRUPTED" not in stdout
    res = Result.load(out)
    assert res.status == "interrupted" and "results are kept up to t = 0.4" in res.message
    assert f"interrupted: {res.message} -> {out}" in err
    # rows 0..4 finished before the interrupt at row 5; the sweep is causal, so they equal the
    # first five rows of the uninterrupted solve (same seed, same random numbers)
    from dmftgen.dmft import solve
    full = solve(load_model("linreg"), Settings(T=2, dt=0.1), paths=400, replicas=1)
    assert len(res.t) == 5
    for key in ("train_loss", "test_loss", "Q", "M"):
        np.testing.assert_allclose(res[key], full[key][:5], rtol=1e-12, atol=1e-14, err_msg=key)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signals_on_solve_leave_an_earlier_file_intact(sig, tmp_path):
    out = tmp_path / "s.npz"
    assert main(SOLVE + ["--out", str(out)]) == 0
    before = out.read_bytes()
    rc, stdout, err = run_until_ready(tmp_path, HOOK_SOLVE, SOLVE + ["--out", str(out)], sig)
    assert rc == (130 if sig == signal.SIGINT else -sig), err
    assert out.read_bytes() == before
    failed = tmp_path / "s.failed.npz"
    if sig == signal.SIGINT:  # the finished part goes beside the earlier result, said so
        assert Result.load(failed).status == "interrupted" and f"written beside it to {failed}" in err
    else:
        assert not failed.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_sigint_on_simulate_keeps_a_complete_earlier_file(tmp_path):
    out = tmp_path / "sim.json"
    argv = ["simulate", "linreg", "--method", "sgf", "--d", "64", "--seeds", "2", "--T", "1", "--dt", "0.1", "--out", str(out)]
    assert main(argv) == 0
    before = out.read_bytes()
    rc, stdout, err = run_until_ready(tmp_path, HOOK_SIM, argv, signal.SIGINT)
    assert rc == 130, err
    assert out.read_bytes() == before
    part = Result.load(tmp_path / "sim.failed.json")
    # interrupted after step 3 of the first seed: records t_0..t_3 are finished
    assert part.status == "interrupted" and len(part.t) == 4, (part.status, len(part.t))
    assert "holds an earlier finished result and was kept" in err


def test_sigint_on_compare_during_its_simulation_stops_at_once(tmp_path):
    out = tmp_path / "cmp"
    argv = ["compare", "linreg", "--method", "sgf", "--d", "64", "--seeds", "2", "--T", "0.6", "--dt", "0.1",
            "--paths", "400", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc, stdout, err = run_until_ready(tmp_path, HOOK_SIM, argv, signal.SIGINT)
    assert rc == 130, err
    assert "DMFT STARTED" not in stdout  # stopped promptly: the solver never ran
    assert "nothing was written" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_sigkill_during_the_final_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    from dmftgen._io import atomic_write

    target = tmp_path / "r.json"
    target.write_bytes(b"earlier")
    hook = f"""
from dmftgen._io import atomic_path
with atomic_path({str(target)!r}) as tmp:
    with open(tmp, "wb") as fh:
        fh.write(b"half a result")
        fh.flush()
        wait()
"""
    rc, stdout, err = run_until_ready(tmp_path, hook, ["list"], signal.SIGKILL)
    assert rc == -signal.SIGKILL
    temps = [p for p in tmp_path.iterdir() if p.name.startswith(".r.json.")]
    assert len(temps) == 1 and target.read_bytes() == b"earlier"  # the earlier file is whole
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and not temps[0].exists()


def test_sigint_on_solve_long_stops_before_the_fine_solve(tmp_path):
    """Richardson: an interrupted coarse solve stops the command (no fine solve), nothing written."""
    out = tmp_path / "long.json"
    hook = HOOK_SOLVE + """
_n = [0]
_init = solver.Solve.__init__
def _count(self, *a, **k):
    _n[0] += 1
    print(f"SOLVE {_n[0]}", flush=True)
    _init(self, *a, **k)
solver.Solve.__init__ = _count
"""
    argv = ["solve-long", "linreg", "--T", "2", "--dt", "0.2", "--paths", "400", "--out", str(out)]
    rc, stdout, err = run_until_ready(tmp_path, hook, argv, signal.SIGINT)
    assert rc == 130 and "SOLVE 2" not in stdout and "nothing was written" in err
    assert not out.exists()


def test_sigint_on_w2_stops_at_once_and_keeps_the_earlier_directory(tmp_path):
    """Ctrl-C in w2's first simulation stops the whole scan (no further sizes), exit 130, and the
    earlier output directory stays whole (the partial scan is not written)."""
    out = tmp_path / "w2"
    argv = ["w2", "linreg", "--d", "8,16", "--seeds", "2", "--T", "0.4", "--dt", "0.1", "--paths", "100",
            "--out", str(out)]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    hook = HOOK_SIM + """
import dmftgen.sim
_sim = dmftgen.sim.simulate
def _sim_hook(*a, **k):
    print(f"SIMULATE d={k.get('d')}", flush=True)
    return _sim(*a, **k)
dmftgen.sim.simulate = _sim_hook
"""
    rc, stdout, err = run_until_ready(tmp_path, hook, argv, signal.SIGINT)
    assert rc == 130, err
    assert "SIMULATE d=8" in stdout and "SIMULATE d=16" not in stdout  # stopped at once
    assert "NOT INTERRUPTED" not in stdout and "nothing was written" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["child.py", "w2"]
