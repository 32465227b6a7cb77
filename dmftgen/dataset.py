r"""The one labelled result type: an ``xarray.Dataset`` with named dimensions.

Every producer (simulate, solve, solve-long, compare, w2, sweep) returns a
:class:`dmftgen.results.Result`; ``Result.to_dataset()`` turns it into a Dataset whose
dimensions are named by the schema below -- never guessed from array shapes -- and
:func:`load` reads any result file (``.nc``, ``.json``, ``.npz``) back into that Dataset.

Dimensions
----------
==========  ===============================================================================
``t``       the time grid t_k = k dt of the run (coordinate ``t``)
``s``       the second time of two-time kernels C_theta(t, s), R_theta, K_ell, R_ell (= t)
``step``    Euler steps k = 0..N-1 of the noise covariance S_U (two of them: ``step``,
            ``step_s``)
``a``, ``b``  student units 0..m-1 (m x m arrays: Q, Gamma, C_theta, ...)
``j``       teacher columns 0..k-1 (m x k arrays: M, nu, Phi_star; ``j``, ``j2`` for rho)
``seed``    independent simulation seeds (theta_rows)
``row``     recorded rows of theta (theta_rows), ``sample`` draws of the DMFT law of a row
``d``       the dimensions of the simulations of a W2 scan (coordinate: the values of d)
==========  ===============================================================================

plus, in a sweep, one dimension per grid parameter (``delta``, ``tau``, ...).  Variables not
in the schema (none today) keep their own dimensions ``<name>_dim<i>``.

Error bars (one convention)
---------------------------
``<name>_err`` is one standard error (1 sigma) of ``<name>``, whatever produced it; its
``estimator`` attribute says how: ``"standard error over seeds"`` for simulations (the files
and ``Result`` keys of simulations call it ``<name>_sem``; ``Result`` accepts either name),
``"Monte Carlo"`` for the DMFT (batch means over path groups, group jackknife, or between
replicas; ``meta["errors"]`` has the details).  ``<name>_disc``, ``<name>_coarse`` and
``<name>_fine`` (Richardson) have the dimensions of ``<name>``.

Attributes: ``dmftgen`` ("result" or "sweep"), ``model``, ``status``, ``message`` and ``meta``
(the full metadata as a JSON string: netCDF attributes cannot hold nested dicts).  Each data
variable keeps its ``Result`` key in the attribute ``key``, so :func:`to_result` inverts
``to_dataset``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import SettingsError

#: Dimensions of each named array of a single run (docs/theory.md, "Observables").
SCHEMA = {
    "t": ("t",),
    "epochs": ("t",),
    "Q": ("t", "a", "b"), "Gamma": ("t", "a", "b"), "Phi0": ("t", "a", "b"),
    "E_r_ell": ("t", "a", "b"), "E_ell_ell": ("t", "a", "b"), "Q_balance": ("t", "a", "b"),
    "M": ("t", "a", "j"), "nu": ("t", "a", "j"), "Phi_star": ("t", "a", "j"),
    "C_theta": ("t", "s", "a", "b"), "R_theta": ("t", "s", "a", "b"),
    "K_ell": ("t", "s", "a", "b"), "R_ell": ("t", "s", "a", "b"),
    "S_U": ("step", "step_s", "a", "b"),
    # self-check residuals (dmftgen/dmft/checks.py): per increment k < N
    "check_Q_balance": ("step", "a", "b"), "check_M_balance": ("step", "a", "j"),
    "check_descent": ("step",),
    "rho": ("j", "j2"),
    "theta_rows": ("seed", "t", "row", "a"),
    "theta_samples": ("t", "sample", "a"),
    "theta_star_samples": ("sample", "j"),
    "theta0_samples": ("sample", "a"),
    # w2_scan (dmftgen/w2.py): W2 at chosen times t against the dimension d of the simulation
    "d": ("d",),
    "w2": ("t", "d"), "floor": ("t", "d"), "excess": ("t", "d"),
    "slope": ("t",), "floor_slope": ("t",), "excess_slope": ("t",),
}
#: Suffixes whose variable has the dimensions of its base array.
#: Suffixes of per-replica curves: a leading ``replica`` dimension before those of the base array.
REPLICA_SUFFIXES = ("_coarse_reps", "_fine_reps", "_reps")
SUFFIXES = REPLICA_SUFFIXES + ("_coarse_err", "_fine_err", "_coarse", "_fine", "_disc", "_err", "_sem")
ERROR_SUFFIXES = ("_err", "_sem")
SEM = "standard error over seeds"
MC = "Monte Carlo"


def split_name(key: str) -> tuple[str, str]:
    """``"Q_coarse_err"`` -> ("Q", "_coarse_err"); names without a known suffix -> (key, "")."""
    for suf in SUFFIXES:
        if key.endswith(suf) and len(key) > len(suf):
            return key[: -len(suf)], suf
    return key, ""


def dims_of(key: str, ndim: int, *, series: bool = False) -> tuple:
    """The named dimensions of the array ``key`` (rank ``ndim``) of a single run.

    Train/test observables ``train_<x>``, ``test_<x>`` are time series; with ``series`` (the
    flattened comparison table) every array is.  Raises SettingsError if the rank disagrees
    with the schema (a producer broke the contract).
    """
    base, suffix = split_name(key)
    if base in SCHEMA:
        dims = SCHEMA[base]
    elif series or base.startswith(("train_", "test_")):
        dims = ("t",)
    else:
        return tuple(f"{key}_dim{i}" for i in range(ndim))
    if suffix in REPLICA_SUFFIXES:
        dims = ("replica",) + tuple(dims)
    if len(dims) != ndim:
        raise SettingsError(f"result array `{key}` has {ndim} dimensions, the schema says {dims} "
                            "(dmftgen/dataset.py SCHEMA).")
    return dims


def dataset_name(key: str) -> str:
    """The Dataset variable of a Result key: ``*_sem`` becomes ``*_err`` (one error convention)."""
    return key[: -len("_sem")] + "_err" if key.endswith("_sem") else key


def to_dataset(result):
    """The labelled Dataset of a :class:`~dmftgen.results.Result` (see the module docstring)."""
    import xarray as xr

    series = result.meta.get("kind") == "comparison"
    t = np.asarray(result.data.get("t", np.zeros(0)), dtype=float)
    data_vars = {}
    for key, value in result.data.items():
        if key == "t":
            continue
        v = np.asarray(value)
        if not np.issubdtype(v.dtype, np.number):
            continue
        name = dataset_name(key)
        attrs = {"key": key}
        if key.endswith(ERROR_SUFFIXES):
            attrs["error_of"] = key[:-4]
            attrs["estimator"] = SEM if key.endswith("_sem") else MC
        data_vars[name] = (dims_of(key, v.ndim, series=series), v, attrs)
    coords = {"t": ("t", t)}
    # a variable named after its only dimension (w2's ``d``) is that dimension's coordinate
    for name in [k for k, (dims, _, _) in data_vars.items() if dims == (k,)]:
        coords[name] = data_vars.pop(name)
    used = {d for dims, _, _ in data_vars.values() for d in dims}
    if "s" in used:
        coords["s"] = ("s", t)
    for name, (dims, v, _) in data_vars.items():
        for d, n in zip(dims, v.shape):
            if d in ("a", "b", "j", "j2", "seed", "row", "sample", "step", "step_s") and d not in coords:
                coords[d] = (d, np.arange(n))
    ds = xr.Dataset({k: (d, v, a) for k, (d, v, a) in data_vars.items()}, coords=coords)
    ds.attrs = {"dmftgen": "result", "model": str(result.meta.get("model", "")), "status": result.status,
                "message": result.message, "meta": json.dumps(_jsonable(result.meta), allow_nan=False)}
    return ds


def to_result(ds):
    """Back from a single-run Dataset to a :class:`~dmftgen.results.Result` (original keys)."""
    from .results import Result

    data = {"t": np.asarray(ds["t"].values)}
    for name, var in ds.coords.items():
        if "key" in var.attrs:  # a Result array that is a coordinate (w2's ``d``)
            data[var.attrs["key"]] = np.asarray(var.values)
    for name, var in ds.data_vars.items():
        data[var.attrs.get("key", name)] = np.asarray(var.values)
    meta = meta_of(ds)
    status = ds.attrs.get("status")
    if not isinstance(status, str):  # every saved result records one (Result.load: the same rule)
        from .results import NOT_RESULT, NotAResultError

        raise NotAResultError(f"{NOT_RESULT}: the Dataset records no `status` attribute.")
    return Result(data, meta, status, ds.attrs.get("message", ""))


def meta_of(ds) -> dict:
    """The metadata dict stored in a Dataset's ``meta`` attribute."""
    return json.loads(ds.attrs.get("meta", "{}"))


def write_netcdf(ds, path) -> Path:
    """Write ``ds`` to ``path`` (netCDF4 via h5netcdf) atomically: temp file + os.replace."""
    from ._io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return path


NETCDF_SUFFIXES = (".nc", ".nc4", ".h5")


def load(path):
    """Read any dmftgen result file into its labelled ``xarray.Dataset``.

    ``.nc`` (single runs and sweeps) is opened as it is; ``.json`` and ``.npz`` (the export
    formats) are read as a Result and converted with :func:`to_dataset`.

    Raises
    ------
    SettingsError
        The file does not exist or has another suffix.
    """
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"result file {path} does not exist.")
    if path.suffix in NETCDF_SUFFIXES:
        import xarray as xr

        return xr.load_dataset(path, engine="h5netcdf")
    if path.suffix in (".json", ".npz"):
        from .results import Result

        return to_dataset(Result.load(path))
    raise SettingsError(f"{path}: a dmftgen result file ends in .nc, .json or .npz.")


def _jsonable(v):
    from .results import jsonable

    return jsonable(v)
