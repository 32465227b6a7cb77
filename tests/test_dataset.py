"""The labelled result type: named dimensions from the schema, one error convention, any file back.

The arrays are synthetic (no solve): what is under test is the labelling, which must not depend
on shapes -- the cases below have as many seeds, samples and units as times on purpose.
"""
import numpy as np
import pytest
import xarray as xr

import dmftgen
from dmftgen.config import Settings
from dmftgen.dataset import SEM, MC, to_result
from dmftgen.errors import SettingsError
from dmftgen.results import Result
from dmftgen.sweep import SweepSpec, combine, save_part

NT, M, K = 3, 3, 3          # as many times as units as teacher columns: shapes cannot tell them apart
RNG = np.random.default_rng(0)


def _dmft(nt=NT):
    a = lambda *shape: RNG.standard_normal(shape)  # noqa: E731
    return Result({"t": 0.5 * np.arange(nt), "train_loss": a(nt), "train_loss_err": a(nt), "test_error": a(nt),
                   "Q": a(nt, M, M), "Q_err": a(nt, M, M), "M": a(nt, M, K), "nu": a(nt, M, K),
                   "C_theta": a(nt, nt, M, M), "S_U": a(nt - 1, nt - 1, M, M), "rho": a(K, K),
                   "theta_samples": a(nt, NT, M), "theta_star_samples": a(NT, K)},
                  {"model": "fake", "paths": 10}, status="ok")


def _sim(nt=NT, seeds=NT):
    a = lambda *shape: RNG.standard_normal(shape)  # noqa: E731
    return Result({"t": 0.5 * np.arange(nt), "test_loss": a(nt), "test_loss_sem": a(nt), "Q": a(nt, M, M),
                   "Q_sem": a(nt, M, M), "theta_rows": a(seeds, nt, 2, M)},
                  {"model": "fake", "kind": "simulation", "seeds": seeds}, status="diverged", message="boom")


def test_dims_come_from_the_schema_not_the_shapes():
    ds = _dmft().to_dataset()
    assert ds["train_loss"].dims == ("t",) and ds["test_error"].dims == ("t",)
    assert ds["Q"].dims == ("t", "a", "b") and ds["M"].dims == ("t", "a", "j") and ds["nu"].dims == ("t", "a", "j")
    assert ds["C_theta"].dims == ("t", "s", "a", "b") and ds["S_U"].dims == ("step", "step_s", "a", "b")
    assert ds["rho"].dims == ("j", "j2")
    assert ds["theta_samples"].dims == ("t", "sample", "a") and ds["theta_star_samples"].dims == ("sample", "j")
    np.testing.assert_array_equal(ds["t"].values, 0.5 * np.arange(NT))
    np.testing.assert_array_equal(ds["s"].values, ds["t"].values)
    sim = _sim().to_dataset()
    assert sim["theta_rows"].dims == ("seed", "t", "row", "a")   # seeds == times: still the seed axis first
    assert sim.attrs["status"] == "diverged" and sim.attrs["message"] == "boom"
    assert dmftgen.dataset.meta_of(sim)["seeds"] == NT


def test_a_rank_that_contradicts_the_schema_is_an_error():
    with pytest.raises(SettingsError, match="`Q` has 2 dimensions"):
        Result({"t": np.arange(2.0), "Q": np.zeros((2, 1))}).to_dataset()


def test_one_error_convention():
    """Simulation `x_sem` and DMFT `x_err` are both `x_err` (1 sigma) in the Dataset, tagged by estimator."""
    sim, dm = _sim(), _dmft()
    ds = sim.to_dataset()
    assert "test_loss_sem" not in ds and ds["test_loss_err"].attrs["estimator"] == SEM
    assert ds["Q_err"].attrs["error_of"] == "Q"
    np.testing.assert_array_equal(ds["Q_err"].values, sim["Q_sem"])
    assert dm.to_dataset()["Q_err"].attrs["estimator"] == MC
    # the Result accepts either name; err() is the one spelling
    np.testing.assert_array_equal(sim["Q_err"], sim["Q_sem"])
    np.testing.assert_array_equal(sim.err("test_loss"), sim["test_loss_sem"])
    np.testing.assert_array_equal(dm.err("Q"), dm["Q_err"])
    with pytest.raises(KeyError):
        sim["M_err"]


@pytest.mark.parametrize("suffix", [".nc", ".json", ".npz"])
def test_every_file_loads_into_the_dataset(tmp_path, suffix):
    res = _dmft()
    path = res.save(tmp_path / f"r{suffix}")
    ds = dmftgen.load(path)
    assert ds["Q"].dims == ("t", "a", "b") and ds.attrs["dmftgen"] == "result"
    for k in res.keys():
        np.testing.assert_array_equal(ds[k].values, res[k], err_msg=k)
    back = to_result(ds)
    assert set(back.keys()) == set(res.keys()) and back.meta == res.meta and back.status == res.status
    if suffix == ".nc":  # plain xarray opens it too, with the same names
        with xr.open_dataset(path, engine="h5netcdf") as raw:
            assert raw["C_theta"].dims == ("t", "s", "a", "b")


def test_load_names_a_bad_file(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        dmftgen.load(tmp_path / "nope.nc")
    (tmp_path / "x.csv").write_text("1")
    with pytest.raises(SettingsError, match=r"\.nc, \.json or \.npz"):
        dmftgen.load(tmp_path / "x.csv")


def test_sweep_concatenates_point_datasets(tmp_path):
    """Grid of synthetic parts: one full, one that stopped after 2 times, one missing."""
    spec = SweepSpec("linreg", "simulate", Settings(T=1.0, dt=0.5), {"delta": [1.0, 2.0, 3.0]}, {"seeds": NT})
    out = tmp_path / "g.nc"
    pts = spec.points()
    full, short = _sim(), _sim(nt=2)
    for p, r in zip(pts[:2], (full, short)):
        save_part(out, p, {"data": r.data, "meta": r.meta, "status": r.status, "message": r.message}, "run")
    ds = combine(spec, out)
    assert ds["theta_rows"].dims == ("delta", "seed", "t", "row", "a")
    assert ds["Q_err"].dims == ("delta", "t", "a", "b") and "Q_sem" not in ds
    np.testing.assert_array_equal(ds["Q"].sel(delta=1.0).values, full["Q"])
    np.testing.assert_array_equal(ds["theta_rows"].sel(delta=2.0).values[:, :2], short["theta_rows"])
    assert np.isnan(ds["theta_rows"].sel(delta=2.0).values[:, 2:]).all()      # padded after the blow-up
    assert np.isnan(ds["test_loss"].sel(delta=3.0).values).all()
    assert list(ds["status"].values) == ["diverged", "diverged", "missing"]
    # a grid whose only finished point stopped early still spans the full time grid
    out2 = tmp_path / "h.nc"
    save_part(out2, pts[0], {"data": short.data, "meta": short.meta, "status": "diverged", "message": ""}, "run")
    ds2 = combine(spec, out2)
    assert ds2.sizes["t"] == NT and np.isnan(ds2["Q"].sel(delta=1.0).values[2:]).all()


def test_w2_scan_is_a_labelled_result(tmp_path):
    """w2_scan gives the Result every command gives: W2 and its floor on (t, d), the d values as
    the coordinate, and the same arrays back from a .nc file. As many times as dimensions, so the
    shapes cannot tell t from d."""
    from dmftgen import load_model
    from dmftgen.w2 import w2_scan

    st = Settings(delta=2.0, tau=0.5, T=0.2, dt=0.1, seed=4)
    fake = Result({"t": st.times, "theta_samples": RNG.standard_normal((3, 64, 1))}, {}, status="ok")
    scan = w2_scan(load_model("linreg"), st, dims=(8, 16, 32), times=(0.0, 0.1, 0.2), seeds=2, dmft=fake)
    assert isinstance(scan, Result) and scan.ok and scan.meta["seeds"] == 2
    ds = scan.to_dataset()
    for key in ("w2", "floor", "excess"):
        assert ds[key].dims == ("t", "d"), key
    assert ds["w2_err"].dims == ("t", "d") and ds["w2_err"].attrs["estimator"] == SEM
    assert ds["slope"].dims == ("t",) and list(ds["d"].values) == [8, 16, 32]
    np.testing.assert_array_equal(ds["w2"].sel(d=16).values, scan["w2"][:, 1])
    path = scan.save(tmp_path / "w2.nc")
    back = to_result(dmftgen.load(path))
    assert list(back.keys()) == list(scan.keys())
    for key in scan.keys():
        np.testing.assert_array_equal(back[key], scan[key])


def test_compare_is_a_labelled_result():
    """compare gives a Result too: the table's columns on t, meta kind "comparison", the status of
    its runs (here a diverged simulation)."""
    from dmftgen import load_model
    from dmftgen.comparison import Comparison, compare, table_columns

    t = 0.1 * np.arange(4)
    sim = Result({"t": t, "train_loss": 1 + t, "train_loss_sem": 0.01 + 0 * t, "test_loss": 2 + t,
                  "test_loss_sem": 0.01 + 0 * t}, {}, status="diverged", message="blew up")
    dm = Result({"t": t, "train_loss": 1 + t, "train_loss_err": 0.01 + 0 * t, "test_loss": 2 + t,
                 "test_loss_err": 0.01 + 0 * t}, {}, status="ok")
    cmp = compare(load_model("linreg"), Settings(T=0.3, dt=0.1), sims={"sgf": sim}, dmft=dm, methods=("sgf",))
    assert isinstance(cmp, Comparison) and isinstance(cmp, Result)
    assert cmp.status == "diverged" and "sgf: blew up" in cmp.message
    assert cmp.meta["kind"] == "comparison" and cmp.meta["summary"] == cmp.summary != ""
    head, cols = table_columns(cmp.table)
    ds = cmp.to_dataset()
    assert set(ds.data_vars) >= {"train_loss_dmft", "train_loss_sgf", "train_loss_sgf_z", "test_loss_sgf_err"}
    for h, c in zip(head, cols):
        name = h[:-4] + "_err" if h.endswith("_sem") else h
        if h != "t":
            assert ds[name].dims == ("t",), h
            np.testing.assert_array_equal(ds[name].values, np.asarray(c, float))
    np.testing.assert_array_equal(ds["t"].values, t)
