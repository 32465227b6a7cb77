"""Atomic writes keep the previous file on failure and create files with ordinary permissions."""
import os

import pytest

from dmftgen._io import atomic_path, atomic_write


def test_atomic_write_replaces_and_keeps_on_failure(tmp_path):
    f = tmp_path / "out" / "a.json"
    atomic_write(f, b"first")
    assert f.read_bytes() == b"first"
    with pytest.raises(RuntimeError):
        with atomic_path(f) as tmp:
            open(tmp, "wb").write(b"half-writ")
            raise RuntimeError("crash mid-write")
    assert f.read_bytes() == b"first"  # the earlier result survives
    assert [p.name for p in f.parent.iterdir()] == ["a.json"]  # no temp file left behind


def test_atomic_write_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "b", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o644


# -- what a failed run may replace (dmftgen.results.save_result) ---------------------------------
import json  # noqa: E402

import numpy as np  # noqa: E402

from dmftgen.results import NotAResultError, Result, save_result  # noqa: E402


def _res(status):
    return Result({"t": np.arange(3.0), "test_loss": np.ones(3)}, {"model": "linreg"}, status)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_a_file_without_status_is_not_a_result(tmp_path, suffix):
    # every saved Result records its status; a file without one used to load as status "ok"
    f = tmp_path / f"foreign{suffix}"
    if suffix == ".json":
        f.write_text(json.dumps({"t": [0, 1], "test_loss": [1.0, 2.0]}))
    else:
        np.savez(f, t=np.arange(3.0))
    with pytest.raises(NotAResultError, match="records no `status`"):
        Result.load(f)


@pytest.mark.parametrize("suffix", [".json", ".npz", ".nc"])
def test_failed_run_never_replaces_a_good_result(tmp_path, suffix):
    # .nc: Result.load could not read it, so a diverged run overwrote a finished .nc result
    f = tmp_path / f"run{suffix}"
    _res("ok").save(f)
    good = f.read_bytes()
    written, note = save_result(_res("diverged"), f)
    assert f.read_bytes() == good
    assert written == tmp_path / f"run.failed{suffix}"
    assert Result.load(written).status == "diverged" and "earlier finished result" in note


def test_failed_run_keeps_a_foreign_file_and_replaces_a_failed_one(tmp_path):
    f = tmp_path / "data.npz"
    np.savez(f, x=np.arange(4.0))  # the user's own data, not a dmftgen result
    before = f.read_bytes()
    written, note = save_result(_res("diverged"), f)
    assert f.read_bytes() == before and written.name == "data.failed.npz"
    assert "not a dmftgen result" in note
    g = tmp_path / "run.npz"
    _res("diverged").save(g)
    written, note = save_result(_res("unstable"), g)  # a failed run replaces only a failed run
    assert written == g and note == "" and Result.load(g).status == "unstable"


def test_json_keeps_infinities(tmp_path):
    """A stationary result's t = [inf] came back from .json as NaN (show-result: 'at t = nan')."""
    import numpy as np

    from dmftgen.results import Result

    res = Result({"t": np.array([np.inf]), "x": np.array([1.0, -np.inf, np.nan])}, {"model": "m"})
    back = Result.load(res.save(tmp_path / "r.json"))
    assert back["t"][0] == np.inf
    assert back["x"][0] == 1.0 and back["x"][1] == -np.inf and np.isnan(back["x"][2])
