"""`dmftgen plot` and `dmftgen show-result` on bad input: one message naming the file or flag,
exit 2, no traceback, checked before drawing; show-result on a sweep file summarises its points.

One small simulate sweep (linreg, d = 32, 2 seeds, T = 0.3, a 2 x 2 grid over delta and tau:
about a second) serves every test of this module.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")
pytest.importorskip("matplotlib")

from dmftgen import Settings  # noqa: E402
from dmftgen.cli import main  # noqa: E402
from dmftgen.results import Result  # noqa: E402
from dmftgen.sweep import SweepSpec, run_sweep  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "lr.nc"
    spec = SweepSpec("linreg", "simulate", Settings(T=0.3, dt=0.1), {"delta": [1.0, 2.0], "tau": [0.1, 0.5]},
                     {"d": 32, "seeds": 2})
    run_sweep(spec, out, workers=0)
    return out


def _result(**extra):
    t = np.linspace(0, 0.3, 4)
    return Result({"t": t, "train_loss": 1 - t, "test_loss": 1 - t / 2, "test_loss_err": 0.01 + 0 * t},
                  {"model": "linreg", "settings": {"delta": 2.0}, **extra})


def _cli(capsys, *argv):
    capsys.readouterr()
    rc = main(list(map(str, argv)))
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return rc, cap.out, cap.err


# ----------------------------------------------------------------------------------------------
# plot
# ----------------------------------------------------------------------------------------------
def test_plot_refuses_a_file_that_is_not_a_sweep(sweep_file, tmp_path, capsys):
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"not netCDF at all\n")
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(sweep_file.read_bytes()[:3000])
    solve_json = _result().save(tmp_path / "s.json")
    single_nc = _result().save(tmp_path / "s.nc")
    png = tmp_path / "p.png"
    for bad in (garbage, truncated, solve_json, single_nc):
        rc, _, err = _cli(capsys, "plot", bad, "--x", "delta", "--y", "tau", "--out", png)
        assert rc == 2, (bad, err)
        assert str(bad) in err and "dmftgen sweep" in err, err
        assert not png.exists()
    rc, _, err = _cli(capsys, "plot", single_nc, "--x", "delta", "--y", "tau", "--out", png)
    assert "single-run result, not a sweep" in err


def test_plot_checks_the_output_before_drawing(sweep_file, tmp_path, capsys):
    a_file = tmp_path / "sim.json"
    a_file.write_text("{}")
    base = ["plot", sweep_file, "--x", "delta", "--y", "tau", "--out"]
    for out, what in ((tmp_path / "p.txt", "must end in .png"),
                      (a_file / "p.png", "is a file, not a directory"),
                      (tmp_path / "d.png", "is a directory")):
        if what == "is a directory":
            out.mkdir()
        rc, _, err = _cli(capsys, *base, out)
        assert rc == 2 and f"--out {out}" in err and what in err, err
    if os.path.isdir("/proc") and not os.access("/proc", os.W_OK):
        rc, _, err = _cli(capsys, *base, "/proc/p.png")
        assert rc == 2 and "--out /proc/p.png" in err and "cannot write" in err, err
    # the output is checked first: a bad --out is reported even before a bad sweep file is read
    rc, _, err = _cli(capsys, "plot", tmp_path / "missing.nc", "--x", "delta", "--out", tmp_path / "p.txt")
    assert rc == 2 and "--out" in err
    # a good run writes its figure through a new directory, other formats by suffix
    for name in ("sub/dir/p.png", "p.pdf", "p.svg"):
        rc, out, err = _cli(capsys, *base, tmp_path / name)
        assert rc == 0, err
        assert (tmp_path / name).stat().st_size > 1000
    assert (tmp_path / "sub/dir/p.png").read_bytes()[:8] == PNG
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("args, fragment", [
    (["--kind", "curves", "--x", "delta", "--sel", "tau=0.5", "--at-time", "nan"], "--at-time nan: give a finite"),
    (["--kind", "curves", "--x", "delta", "--sel", "tau=0.5", "--at-time", "inf"], "--at-time inf: give a finite"),
    (["--kind", "curves", "--x", "delta", "--sel", "tau=0.5", "--at-time", "-5"], "grid range 0..0.3"),
    (["--kind", "curves", "--x", "delta", "--sel", "tau=0.5", "--at-time", "7"], "grid range 0..0.3"),
    (["--kind", "curves", "--x", "delta", "--sel", "tau=0.5", "--time-to", "nan"], "--time-to nan: give a finite"),
    (["--kind", "curves", "--x", "delta", "--sel", "tau=0.5", "--time-to", "inf"], "--time-to inf: give a finite"),
    (["--kind", "curves", "--x", "delta", "--y", "delta", "--sel", "tau=0.5"], "--x and --y are both delta"),
    (["--x", "tau", "--y", "tau"], "--x and --y are both tau"),
    (["--kind", "curves", "--x", "t", "--y", "delta", "--sel", "tau=5"], "--sel tau=5: not a grid value of tau; "
                                                                        "the grid: 0.1, 0.5"),
    (["--kind", "curves", "--x", "delta", "--y", "tau", "--sel", "delta=2"], "--sel delta: delta is plotted"),
    (["--kind", "curves", "--x", "delta", "--y", "tau", "--mean", "delta"], "--mean delta: delta is plotted"),
    (["--kind", "curves", "--x", "delta", "--y", "tau", "--sel", "t=0.1"], "--sel t: choose the time with --at-time"),
    (["--kind", "curves", "--x", "t", "--y", "delta", "--sel", "tau=0.5", "--at-time", "0.1"],
     "the curves are over t already"),
    (["--kind", "curves", "--x", "delta", "--sel", "tau=0.5", "--sel", "tau=0.1"], "--sel tau: given twice"),
    (["--kind", "curves", "--x", "delta", "--sel", "tau=0.5", "--above"], "--above goes with --time-to"),
    (["--kind", "curves", "--x", "a", "--sel", "tau=0.5"], "--x a: `test_loss` has no dimension a"),
    (["--kind", "curves", "--x", "delta", "--sel", "tau"], "--sel expects DIM=VALUE"),
])
def test_plot_flags_out_of_range_are_refused_by_name(sweep_file, tmp_path, capsys, args, fragment):
    png = tmp_path / "p.png"
    rc, _, err = _cli(capsys, "plot", sweep_file, *args, "--out", png)
    assert rc == 2, err
    assert fragment in err, err
    assert not png.exists()


def test_plot_sel_on_the_grid_and_at_time_in_range_still_draw(sweep_file, tmp_path, capsys):
    png = tmp_path / "p.png"
    for args in (["--kind", "curves", "--x", "delta", "--sel", "tau=0.5", "--at-time", "0.14"],
                 ["--kind", "curves", "--x", "delta", "--sel", "tau=0.1000000001", "--time-to", "0.5"],
                 ["--x", "delta", "--y", "tau", "--at-time", "0"]):
        rc, _, err = _cli(capsys, "plot", sweep_file, *args, "--out", png)
        assert rc == 0, (args, err)
        assert png.read_bytes()[:8] == PNG
        png.unlink()


# ----------------------------------------------------------------------------------------------
# show-result
# ----------------------------------------------------------------------------------------------
def test_show_result_summarises_a_sweep_file(sweep_file, tmp_path, capsys):
    import xarray as xr

    from dmftgen.dataset import write_netcdf

    rc, out, err = _cli(capsys, "show-result", sweep_file)
    assert rc == 0, err
    assert "sweep of simulate over delta (2) x tau (2)" in out and "points     4: 4 ok" in out
    for line in ("delta=1, tau=0.1: ok", "delta=2, tau=0.5: ok"):
        assert line in out
    # one point failed: listed with its message, exit 1
    ds = xr.load_dataset(sweep_file, engine="h5netcdf")
    status, message = ds["status"].values.astype(object), ds["message"].values.astype(object)
    status[1, 0], message[1, 0] = "diverged", "the dynamics blew up"
    ds["status"] = (ds["status"].dims, status.astype(str))
    ds["message"] = (ds["message"].dims, message.astype(str))
    bad = write_netcdf(ds, tmp_path / "bad.nc")
    rc, out, err = _cli(capsys, "show-result", bad)
    assert rc == 1, err
    assert "1 diverged, 3 ok" in out and "delta=2, tau=0.1: diverged: the dynamics blew up" in out


def test_show_result_refuses_files_that_are_not_dmftgen_results(sweep_file, tmp_path, capsys):
    files = {
        "empty.json": "{}",
        "crafted.json": json.dumps({"status": 5, "t": "x"}),
        "w2.json": json.dumps({"model": "linreg", "settings": {}, "d": [8, 16], "t": [0.5]}),
        "list.json": "[1, 2]",
        "no_status.json": json.dumps({"meta": {"model": "linreg"}, "t": [0, 1]}),
        "bad_t.json": json.dumps({"meta": {"model": "linreg"}, "status": "ok", "t": "x"}),
        "truncated.json": '{"status": "ok", "meta": {"mo',
        "garbage.nc": "not netCDF",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    np.savez(tmp_path / "foreign.npz", a=np.arange(3))
    (tmp_path / "truncated.nc").write_bytes(sweep_file.read_bytes()[:3000])
    (tmp_path / "truncated.npz").write_bytes(_result().to_bytes(".npz")[:100])
    (tmp_path / "no_model.json").write_text(json.dumps({"meta": {}, "status": "ok", "t": [0, 1]}))
    unreadable = {"truncated.json", "garbage.nc", "truncated.nc", "truncated.npz"}
    for name in [*files, "no_model.json", "foreign.npz", "truncated.nc", "truncated.npz"]:
        rc, out, err = _cli(capsys, "show-result", tmp_path / name)
        assert rc == 2, (name, out, err)
        assert str(tmp_path / name) in err, err
        expected = "cannot be read as a dmftgen result" if name in unreadable else "not a dmftgen result file"
        assert expected in err, (name, err)
        assert "status ok" not in out


def test_show_result_reads_real_results_and_tolerates_odd_metadata(tmp_path, capsys):
    for suffix in (".json", ".npz", ".nc"):
        path = _result().save(tmp_path / f"r{suffix}")
        rc, out, err = _cli(capsys, "show-result", path)
        assert rc == 0, err
        assert "status ok" in out and "test_loss  0.85 ± 0.01 at t = 0.3" in out
    # damaged self-check entries and settings: printed as they are, no traceback
    odd = _result(checks=[1, {"ok": True, "worst_z": "x"}], settings=5)
    rc, out, err = _cli(capsys, "show-result", odd.save(tmp_path / "odd.json"))
    assert rc == 0, err
    assert "worst x" in out


def test_show_result_says_when_the_statistical_self_checks_were_not_run(tmp_path, capsys):
    """Below 32 paths per path group a solve runs only the two round-off checks; show-result listed
    those as if they were all of them, under an 'ok' status."""
    det = [{"name": "kernel consistency", "what": "rows", "n": 3, "worst_z": 1e-16, "threshold": 1e-9,
            "t_worst": 0.1, "ok": True},
           {"name": "sampler factor", "what": "L L^T", "n": 1, "worst_z": 1e-16, "threshold": 1e-8, "ok": True}]
    few = _result(checks=det, paths=2000, groups=20, replicas=8)
    rc, out, err = _cli(capsys, "show-result", few.save(tmp_path / "few.json"))
    assert rc == 0, err
    assert "not run" in out and "12.5 paths per path group" in out and "--paths >= 5120" in out
    stat = det + [{"name": "Q balance", "what": "Q", "n": 3, "worst_z": 1.0, "threshold": 5.0, "dof": 19,
                   "t_worst": 0.2, "ok": True}]
    many = _result(checks=stat, paths=8000, groups=20, replicas=8)
    rc, out, err = _cli(capsys, "show-result", many.save(tmp_path / "many.json"))
    assert rc == 0 and "not run" not in out


def test_plot_refuses_times_on_a_stationary_sweep(tmp_path, capsys):
    """A `--what stationary` sweep has t = [inf]: --time-to drew an empty figure with exit 0."""
    out = tmp_path / "st.nc"
    spec = SweepSpec("linreg", "stationary", Settings(tau=0.0, T=0.2, dt=0.2), {"lam": [0.1, 0.2]},
                     {"samples": 1000, "replicas": 2, "starts": 1, "window": 5.0})
    run_sweep(spec, out, workers=0)
    for flag in (["--time-to", "0.5"], ["--at-time", "1"]):
        rc, _, err = _cli(capsys, "plot", out, "--kind", "curves", "--x", "lam", *flag, "--out", tmp_path / "p.png")
        assert rc == 2 and "no time axis" in err, err
        assert not (tmp_path / "p.png").exists()
    rc, _, err = _cli(capsys, "plot", out, "--kind", "curves", "--x", "lam", "--out", tmp_path / "p.png")
    assert rc == 0, err


def test_show_result_reads_a_richardson_solve(tmp_path, capsys):
    """`dmftgen solve --richardson` wrote a meta without the model's name, and show-result refused
    its own file as "not a dmftgen result file"."""
    out = tmp_path / "rich.json"
    rc, _, err = _cli(capsys, "solve", "linreg", "--T", "0.2", "--dt", "0.1", "--paths", "400", "--richardson",
                      "--out", out)
    assert rc == 0, err
    rc, text, err = _cli(capsys, "show-result", out)
    assert rc == 0 and "model      linreg   status ok" in text, err


def test_show_result_lists_the_loss_of_a_compare_sweep(tmp_path, capsys):
    """A `--what compare` sweep stores test_loss_dmft; show-result listed its points without a loss."""
    out = tmp_path / "c.nc"
    spec = SweepSpec("linreg", "compare", Settings(T=0.2, dt=0.1), {"tau": [0.5]},
                     {"d": 32, "seeds": 2, "paths": 400})
    run_sweep(spec, out, workers=0)
    rc, text, err = _cli(capsys, "show-result", out)
    assert rc == 0 and "tau=0.5: ok   test_loss_dmft " in text, text + err
