"""Sweeps: Dask LocalCluster runs, kill + resume without recomputation, labelled dataset, plots.

References: every sweep value is checked against the single run of the same settings in this
process (same seeds -> bit-identical numbers); resume is checked through the part files (their
run ids, mtimes and count); time-to-level against a closed form.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")

from dmftgen import Settings, load_model  # noqa: E402
from dmftgen.errors import SettingsError  # noqa: E402
from dmftgen.results import Result  # noqa: E402
from dmftgen.sweep import (SweepSpec, combine, load_sweep, parse_grid_item, part_path,  # noqa: E402
                           parts_dir, plot_phase, run_sweep, sweep_meta, time_to_level)

REPO = Path(__file__).resolve().parent.parent
# Small DMFT problems: 11 time points, 1000 paths: about 0.3-1 s per point on one thread.
BASE = Settings(T=1.0, dt=0.1)
PATHS = 1000


@pytest.fixture(scope="module")
def client():
    """A real LocalCluster with 2 worker processes (1 thread each), shared by this module."""
    from distributed import Client

    from dmftgen.sweep import local_cluster

    cluster = local_cluster(2)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_local_cluster_leaves_this_process_environment_alone():
    """distributed applies the workers' pre-spawn environment (one numba / BLAS thread each) to
    the process its nannies live in -- this one. local_cluster must put it back: otherwise every
    later numba compilation in this process raises ("Cannot set NUMBA_NUM_THREADS to a different
    value once the threads have been launched"; seen in CI after the sweep tests) and its BLAS is
    told to use one thread."""
    from dmftgen.sweep import local_cluster

    keys = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    before = {k: os.environ.get(k) for k in keys}
    cluster = local_cluster(1, threads_per_task=1)
    try:
        assert {k: os.environ.get(k) for k in keys} == before
    finally:
        cluster.close()


def test_two_local_clusters_at_once_do_not_fight_over_a_port():
    """Two sweeps on one machine (or a sweep beside a notebook's cluster): the scheduler's HTTP
    server, started even without a dashboard, took port 8787 and the second one warned "Port 8787
    is already in use. Perhaps you already have a cluster running?" (seen with pytest -n 2)."""
    from dmftgen.sweep import local_cluster

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        first = local_cluster(1)
        try:
            second = local_cluster(1)
            second.close()
        finally:
            first.close()
    assert not [w for w in seen if "already in use" in str(w.message)]


def _parts(out):
    return sorted(p for p in parts_dir(out).glob("*.npz") if not p.name.startswith("."))


def _assert_equal_to_single_run(ds, model, what, options, coords):
    """The sweep's arrays at ``coords`` are bit-identical to the single run of those settings."""
    from dmftgen.dmft import solve
    from dmftgen.sim import simulate

    settings = BASE.replace(**coords)
    ref = (solve(model, settings, **options) if what == "solve"
           else simulate(model, settings, **options))
    point = ds.sel(coords)
    for k in ("train_loss", "test_loss", "Q", "M"):
        # same seeds, same code path -> exactly the same floating-point numbers (the DMFT solver
        # and the simulator are deterministic; measured: identical with 1 and 2 numba threads)
        np.testing.assert_array_equal(point[k].values.reshape(ref[k].shape), ref[k], err_msg=k)


def test_sweep_solve_2x2_on_local_cluster(client, tmp_path):
    model = load_model("logistic")
    spec = SweepSpec("logistic", "solve", BASE, {"delta": [1.0, 2.0], "tau": [0.2, 0.5]}, {"paths": PATHS})
    out = tmp_path / "phase.nc"
    ds = run_sweep(spec, out, client=client)
    # the file holds the same dataset
    ds2 = load_sweep(out)
    # replica: each solve's replicas' curves (*_reps, for the plateau test's drift error)
    assert dict(ds2.sizes) == {"delta": 2, "tau": 2, "t": 11, "a": 1, "b": 1, "j": 1, "replica": 8}
    assert ds2["test_loss"].dims == ("delta", "tau", "t")
    assert ds2["test_loss_reps"].dims == ("delta", "tau", "replica", "t")
    assert ds2["Q"].dims == ("delta", "tau", "t", "a", "b")
    assert "test_loss_err" in ds2 and "train_error" in ds2 and "test_error_err" in ds2
    assert (ds2["status"].values == "ok").all()
    meta = sweep_meta(ds2)
    assert meta["what"] == "solve" and meta["model"] == "logistic" and meta["done"] == 4
    assert meta["computed"] == 4 and meta["reused"] == 0
    assert meta["grid"] == {"delta": [1.0, 2.0], "tau": [0.2, 0.5]}
    assert meta["source_hash"].startswith("sha256:") and "numba" in meta["versions"]
    np.testing.assert_array_equal(ds2["test_loss"].values, ds["test_loss"].values)
    for coords in ({"delta": 1.0, "tau": 0.2}, {"delta": 2.0, "tau": 0.5}):
        _assert_equal_to_single_run(ds2, model, "solve", {"paths": PATHS}, coords)
    # per point: the single-run metadata, plus where it ran
    workers = [json.loads(s)["worker"] for s in ds2["point_meta"].values.ravel()]
    assert all(w["numba_threads"] == 1 for w in workers)
    by_pid = {}
    for w in workers:
        by_pid.setdefault(w["pid"], []).append(w)
    # kernels compiled once per worker: only a task that imported the generated module added
    # numba specialisations; every later task on the same worker process reused them.
    for tasks in by_pid.values():
        assert sum(w["kernels_imported"] for w in tasks) <= 1
        assert all(w["new_overloads"] == 0 for w in tasks if not w["kernels_imported"])
    assert any(not w["kernels_imported"] for w in workers)  # 4 tasks on 2 workers: some reuse
    # a rerun of the finished sweep computes nothing
    ds3 = run_sweep(spec, out, client=client)
    assert sweep_meta(ds3)["computed"] == 0 and sweep_meta(ds3)["reused"] == 4


def test_sweep_killed_midway_resumes_without_recomputing(client, tmp_path):
    model = load_model("logistic")
    out = tmp_path / "kill.nc"
    grid = {"delta": [1.0, 2.0], "tau": [0.2, 0.35, 0.5]}
    cmd = [sys.executable, "-m", "dmftgen", "sweep", "logistic", "--what", "solve",
           "--grid", "delta=1,2", "--grid", "tau=0.2,0.35,0.5", "--T", "1", "--dt", "0.1",
           "--paths", str(3 * PATHS), "--scheduler", client.scheduler.address, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not _parts(out):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no point finished in 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # abrupt: no cleanup, no final combine
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    first = {p.name: p.stat().st_mtime_ns for p in _parts(out)}
    k = len(first)
    # 6 points of ~1 s on 2 workers, killed within ~20 ms of the first part: at most 2-3 finished
    assert 1 <= k < 6, k
    run1 = {Result.load(parts_dir(out) / n).meta["sweep_point"]["run_id"] for n in first}
    assert len(run1) == 1

    # resume: the same settings (as the CLI built them) -> the same keys
    spec = SweepSpec("logistic", "solve", BASE, grid, {"paths": 3 * PATHS})
    ds = run_sweep(spec, out, client=client)
    meta = sweep_meta(ds)
    assert meta["computed"] == 6 - k and meta["reused"] == k and not meta["failed"], meta
    after = _parts(out)
    assert len(after) == 6  # nothing lost, nothing duplicated
    for name, mtime in first.items():  # the parts of the killed run were not rewritten
        assert (parts_dir(out) / name).stat().st_mtime_ns == mtime
    run_ids = [Result.load(p).meta["sweep_point"]["run_id"] for p in after]
    assert sum(r in run1 for r in run_ids) == k
    assert len(set(run_ids) - run1) == 1 and sum(r == meta["run_id"] for r in run_ids) == 6 - k
    assert (ds["status"].values == "ok").all() and np.isfinite(ds["test_loss"].values).all()
    # one point from each run equals its single run
    coords_of = {Result.load(p).meta["sweep_point"]["run_id"]: Result.load(p).meta["sweep_point"]["coords"]
                 for p in after}
    for coords in coords_of.values():
        _assert_equal_to_single_run(ds, model, "solve", {"paths": 3 * PATHS}, coords)


# ---- no cluster: serial runs (workers=0) of tiny simulations ---------------------------------
SIM = {"d": 32, "seeds": 2}
SIM_BASE = Settings(T=0.3, dt=0.1)


def test_parse_grid_item():
    assert parse_grid_item("delta=1,2,4") == ("delta", [1.0, 2.0, 4.0])
    assert parse_grid_item("tau=0:1:5") == ("tau", [0.0, 0.25, 0.5, 0.75, 1.0])
    for bad in ("delta", "delta=", "delta=a,b", "delta=1,1", "tau=0:1:0"):
        with pytest.raises(SettingsError, match="--grid"):
            parse_grid_item(bad)


def test_grid_names_are_validated():
    with pytest.raises(SettingsError, match="cannot be swept"):
        SweepSpec("linreg", "simulate", SIM_BASE, {"T": [1, 2]}, SIM).points()
    with pytest.raises(SettingsError, match="sigma"):  # the message lists the model parameters
        SweepSpec("linreg", "simulate", SIM_BASE, {"bogus": [1, 2]}, SIM).points()
    with pytest.raises(SettingsError, match="delta"):
        SweepSpec("linreg", "simulate", SIM_BASE, {"delta": [1, -1]}, SIM).points()
    with pytest.raises(SettingsError, match="integers"):
        SweepSpec("linreg", "simulate", SIM_BASE, {"d": [16, 32.5]}, SIM).points()


def test_serial_sweep_keys_resume_and_changed_settings(tmp_path):
    model = load_model("linreg")
    out = tmp_path / "lr.nc"
    spec = SweepSpec("linreg", "simulate", SIM_BASE, {"delta": [1.0, 2.0], "sigma": [0.0, 1.0]}, SIM)
    ds = run_sweep(spec, out, workers=0)
    assert sweep_meta(ds)["computed"] == 4 and (ds["status"].values == "ok").all()
    # a model parameter on the grid reaches the run: sigma is the label noise of linreg
    for sigma in (0.0, 1.0):
        settings = SIM_BASE.replace(delta=2.0, params={"sigma": sigma})
        from dmftgen.sim import simulate
        ref = simulate(model, settings, **SIM)
        np.testing.assert_array_equal(ds["test_loss"].sel(delta=2.0, sigma=sigma).values, ref["test_loss"])
    mt = {p.name: p.stat().st_mtime_ns for p in _parts(out)}
    # same grid again: nothing recomputed
    assert sweep_meta(run_sweep(spec, out, workers=0))["computed"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in _parts(out)} == mt
    # extending the grid computes only the new points
    spec2 = SweepSpec("linreg", "simulate", SIM_BASE, {"delta": [1.0, 2.0, 3.0], "sigma": [0.0, 1.0]}, SIM)
    m2 = sweep_meta(run_sweep(spec2, out, workers=0))
    assert (m2["computed"], m2["reused"]) == (2, 4)
    # a changed setting (seed) or option (d) changes every key -> recomputed
    spec3 = SweepSpec("linreg", "simulate", SIM_BASE.replace(seed=1), spec.grid, SIM)
    spec4 = SweepSpec("linreg", "simulate", SIM_BASE, spec.grid, {**SIM, "d": 48})
    keys = {p.key for p in spec.points()}
    assert not keys & {p.key for p in spec3.points()} and not keys & {p.key for p in spec4.points()}
    assert sweep_meta(run_sweep(spec3, out, workers=0))["computed"] == 4
    # a lost part is a missing point (NaN, status "missing") until the next run recomputes it
    points = spec.points()
    part_path(out, points[0].key).unlink()
    ds = combine(spec, out, points)
    assert ds["status"].values[points[0].index] == "missing"
    assert np.isnan(ds["test_loss"].values[points[0].index]).all()
    assert sweep_meta(run_sweep(spec, out, workers=0))["computed"] == 1


def test_time_to_level_closed_form():
    import xarray as xr

    t = np.linspace(0, 2, 21)
    # v = 1 - a t is linear, so the interpolated crossing is exact: t_hit = (1 - level) / a;
    # a = 0.1 never reaches 0.5 by t = 2 (v(2) = 0.8); v(0) = 1 <= 1.5 already at t = 0.
    a = np.array([0.5, 1.0, 0.1])
    da = xr.DataArray(1 - a[:, None] * t[None, :], dims=("a_", "t"), coords={"t": t})
    got = time_to_level(da, 0.5).values
    np.testing.assert_allclose(got[:2], 0.5 / a[:2], rtol=1e-12)
    assert np.isnan(got[2])
    assert (time_to_level(da, 1.5).values == 0).all()
    np.testing.assert_allclose(time_to_level(-da, -0.5, below=False).values[:2], 0.5 / a[:2], rtol=1e-12)


def test_phase_plots_from_sweep_file(tmp_path):
    out = tmp_path / "lr.nc"
    spec = SweepSpec("linreg", "simulate", SIM_BASE, {"delta": [1.0, 2.0], "tau": [0.1, 0.5]}, SIM)
    run_sweep(spec, out, workers=0)
    from dmftgen.cli import main

    for args in (["--x", "delta", "--y", "tau"],
                 ["--x", "delta", "--y", "tau", "--time-to", "0.5"],
                 ["--kind", "curves", "--x", "t", "--y", "delta", "--sel", "tau=0.5"],
                 ["--kind", "curves", "--x", "delta", "--y", "tau", "--value", "Q", "--sel", "a=0", "--sel", "b=0"]):
        png = tmp_path / "p.png"
        assert main(["plot", str(out), *args, "--out", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        png.unlink()
    # a third grid dimension must be fixed or averaged: a clear error, not a wrong picture
    ds = load_sweep(out)
    with pytest.raises(SettingsError, match="--sel tau"):
        plot_phase(ds, tmp_path / "x.png", kind="curves", x="delta", value="Q")
    assert main(["plot", str(out), "--x", "delta", "--y", "bogus", "--out", str(tmp_path / "x.png")]) == 2


# ----------------------------------------------------------------------------------------------
# Bad input: checked before any point runs; a failed sweep never replaces a good OUT
# ----------------------------------------------------------------------------------------------
TINY = ["--T", "0.2", "--dt", "0.1", "--grid", "delta=2,3", "--workers", "0"]


def _no_runs(monkeypatch):
    """Any point run or cluster start fails the test at once (a regression must not hang)."""
    import dmftgen.sweep_driver as drv

    def boom(*a, **k):
        raise AssertionError("a point ran / a cluster started before the options were checked")

    monkeypatch.setattr(drv, "run_point", boom)
    monkeypatch.setattr(drv, "local_cluster", boom)


@pytest.mark.parametrize("extra, named", [
    (["--paths", "0"], "paths=0"), (["--paths", "-1"], "paths=-1"), (["--grid", "paths=1,2"], "paths=1"),
    (["--what", "simulate", "--d", "-1"], "`d`"), (["--what", "simulate", "--seeds", "-1"], "`seeds`"),
    (["--what", "simulate", "--method", "sgd", "--eta", "-1"], "`eta`"),
    (["--what", "solve", "--replicas", "-1"], "replicas=-1"),
    (["--what", "stationary", "--paths", "0"], "paths = 0"),
    (["--what", "stationary", "--replicas", "1"], "replicas = 1"),
    (["--what", "stationary", "--scheme", "sweep"], "--scheme does not apply"),
    (["--workers", "-1"], "--workers -1"), (["--threads-per-task", "0"], "--threads-per-task 0"),
])
def test_sweep_options_are_checked_before_any_point_runs(tmp_path, monkeypatch, capsys, extra, named):
    """Each bad option or grid value: exit 2 with one message naming it, nothing run or written
    (was: every point failed at run time, exit 1; --workers -1 hung)."""
    from dmftgen.cli import main

    _no_runs(monkeypatch)
    out = tmp_path / "x.nc"
    assert main(["sweep", "linreg", *TINY, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and named in err and "Traceback" not in err
    assert not out.exists() and not parts_dir(out).exists()


def test_sweep_stationary_and_replicas_options_are_forwarded(tmp_path):
    """--what stationary builds its options (was KeyError: 'stationary'); --replicas reaches
    stationary and solve."""
    from dmftgen.cli import build_parser
    from dmftgen.commands.sweep import spec_from_args

    def spec(*extra):
        args = build_parser().parse_args(["sweep", "linreg", *TINY, *extra, "--out", str(tmp_path / "x.nc")])
        return spec_from_args(args)

    assert spec("--what", "stationary", "--paths", "2000", "--replicas", "3").options == {"paths": 2000, "replicas": 3}
    assert spec("--what", "stationary").options == {}
    assert spec("--what", "solve", "--replicas", "2").options == {"replicas": 2}
    with pytest.raises(SettingsError, match="--replicas does not apply to --what simulate"):
        spec("--what", "simulate", "--replicas", "2")


def test_sweep_simulate_defaults_to_the_simulate_command_dynamics(tmp_path, capsys):
    """--what simulate without --method runs what `dmftgen simulate` runs: SGD at tau > 0, SGF at
    tau = 0 (was: the Python function's SGF everywhere, so a sweep point and the same command
    differed); a tau grid across 0 has no one default and is refused, naming --method."""
    from dmftgen.cli import build_parser, main
    from dmftgen.commands._common import default_dynamics
    from dmftgen.commands.sweep import spec_from_args

    def spec(*extra):
        args = build_parser().parse_args(["sweep", "linreg", *TINY, *extra, "--out", str(tmp_path / "x.nc")])
        return spec_from_args(args)

    sim = build_parser().parse_args(["simulate", "linreg", "--T", "0.2", "--dt", "0.1", "--out", "x.nc"])
    assert spec("--what", "simulate").options["method"] == default_dynamics(sim.method, sim.tau) == "sgd"
    assert spec("--what", "simulate", "--grid", "tau=0.1,0.5").options["method"] == "sgd"
    assert spec("--what", "simulate", "--grid", "tau=0").options["method"] == "sgf"
    assert spec("--what", "simulate", "--method", "sgf").options["method"] == "sgf"
    assert spec("--what", "simulate", "--grid", "tau=0,0.5", "--method", "sgf").options["method"] == "sgf"
    with pytest.raises(SettingsError, match="give --method sgf"):
        spec("--what", "simulate", "--grid", "tau=0,0.5")
    out = tmp_path / "y.nc"
    assert main(["sweep", "linreg", *TINY, "--what", "simulate", "--grid", "tau=0,0.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--method sgf" in err and "Traceback" not in err and not out.exists()
    # a sweep begun with the earlier default (no method: the Python function's SGF) resumes as SGF
    old = tmp_path / "old.nc"
    cmd = ["sweep", "linreg", *TINY, "--what", "simulate", "--d", "32", "--seeds", "1"]
    begun = spec_from_args(build_parser().parse_args([*cmd, "--out", str(old)]))
    begun.options.pop("method")
    run_sweep(SweepSpec(begun.model_ref, "simulate", begun.base, {"delta": [2.0]}, begun.options), old, workers=0)
    resumed = spec_from_args(build_parser().parse_args([*cmd, "--out", str(old)]))
    assert "method" not in resumed.options
    capsys.readouterr()
    assert main([*cmd, "--out", str(old)]) == 0
    err = capsys.readouterr().err
    assert "resuming with SGF" in err and "1 already done" in err
    assert json.loads(load_sweep(old).attrs["meta"])["options"] == begun.options


def test_failed_sweep_never_replaces_a_good_out(tmp_path, monkeypatch, capsys):
    """A sweep that is not all ok goes beside a good OUT (<stem>.failed.nc); one where no point
    finished writes nothing; the summary names the file written (was: OUT overwritten with
    diverged / all-missing points, the summary naming OUT)."""
    import dmftgen.sweep_driver as drv
    from dmftgen.cli import main

    out = tmp_path / "sw.nc"
    failed = tmp_path / "sw.failed.nc"
    cmd = ["sweep", "linreg", *TINY, "--paths", "400", "--out", str(out)]
    assert main(cmd) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"-> {out}")
    good = out.read_bytes()
    assert main(cmd + ["--tau", "1000"]) == 1  # no point ok (unstable / diverged)
    cap = capsys.readouterr()
    assert out.read_bytes() == good and "was kept" in cap.err and str(failed) in cap.err
    assert cap.out.rstrip().endswith(f"-> {failed}")
    assert "ok" not in set(load_sweep(failed)["status"].values.ravel())
    assert sweep_meta(load_sweep(failed))["written"] == str(failed)

    def raises(*a, **k):
        raise RuntimeError("point failed")

    monkeypatch.setattr(drv, "run_point", raises)  # no point finishes
    failed.unlink()
    assert main(cmd + ["--seed", "7"]) == 1
    cap = capsys.readouterr()
    assert out.read_bytes() == good and not failed.exists()
    assert "no dataset was written" in cap.err and cap.out.rstrip().endswith("-> nothing written")
    other = tmp_path / "new.nc"  # nor is an all-missing file left where there was none
    assert main(cmd[:-1] + [str(other)]) == 1
    assert not other.exists()


def test_a_point_stopped_by_ctrl_c_is_not_kept_as_finished(tmp_path, monkeypatch):
    """Ctrl-C during a serial sweep reached the point's solve, which returned status
    'interrupted': the sweep saved it as a finished part, ran on, and every resume reused it."""
    import dmftgen.sweep_driver as drv
    from dmftgen.sweep_parts import load_part, save_part

    real = drv.run_point
    calls = []

    def second_interrupted(model_ref, settings, what, options):
        payload = real(model_ref, settings, what, options)
        calls.append(settings)
        return {**payload, "status": "interrupted"} if len(calls) == 2 else payload

    monkeypatch.setattr(drv, "run_point", second_interrupted)
    spec = SweepSpec("linreg", "solve", Settings(T=0.2, dt=0.1), {"delta": [1.0, 2.0, 3.0]}, {"paths": 400})
    out = tmp_path / "s.nc"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, workers=0)
    assert len(calls) == 2  # the sweep stops there
    assert sorted(map(str, load_sweep(out)["status"].values)) == ["missing", "missing", "ok"]
    # an interrupted part (written by an earlier version) is not a finished point either
    p = spec.points()[1]
    save_part(out, p, {**real(spec.model_ref, calls[1], "solve", p.options), "status": "interrupted"}, "old")
    assert load_part(out, p) is None
    monkeypatch.setattr(drv, "run_point", real)
    ds = run_sweep(spec, out, workers=0)
    assert sweep_meta(ds)["computed"] == 2 and set(map(str, ds["status"].values)) == {"ok"}
