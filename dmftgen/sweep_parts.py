"""The sweep's part files (``FILE.parts/<key>.npz``, one per finished point) and their combination
into one labelled xarray Dataset (see :mod:`dmftgen.sweep`)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .dataset import meta_of as sweep_meta  # the sweep's metadata: its `meta` attribute, a JSON object
from .errors import SettingsError
from .sweep_task import _time_axis

if TYPE_CHECKING:  # annotations only: dmftgen.sweep imports this module
    from .sweep import Point, SweepSpec

PART_SUFFIX = ".npz"


# ----------------------------------------------------------------------------------------------
# Parts
# ----------------------------------------------------------------------------------------------
def parts_dir(out) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def part_path(out, key: str) -> Path:
    return parts_dir(out) / f"{key}{PART_SUFFIX}"


def save_part(out, point: Point, payload: dict, run_id: str) -> Path:
    """Write one finished point atomically as a Result file with ``meta["sweep_point"]``."""
    from .results import Result

    meta = dict(payload["meta"])
    meta["sweep_point"] = {"key": point.key, "coords": point.coords, "settings": point.settings,
                           "options": point.options, "run_id": run_id, "written": time.time()}
    res = Result(payload["data"], meta, payload["status"], payload["message"])
    return res.save(part_path(out, point.key))


def load_part(out, point: Point):
    """The Result of a finished point, or None if absent/unreadable/of another key."""
    from .results import Result

    path = part_path(out, point.key)
    if not path.is_file():
        return None
    try:
        res = Result.load(path)
    except Exception:  # a damaged part (e.g. disk full) is recomputed, never trusted
        return None
    if res.meta.get("sweep_point", {}).get("key") != point.key:
        return None
    if res.status == "interrupted":  # Ctrl-C stopped it: not finished, computed again on resume
        return None
    return res


# ----------------------------------------------------------------------------------------------
# Combine
# ----------------------------------------------------------------------------------------------
def point_dataset(res, t: np.ndarray, two_time: bool = False):
    """The labelled Dataset of one finished point on the sweep's full grid.

    Dimensions come from the result schema (``Result.to_dataset``, dmftgen/dataset.py), never
    from array shapes.  A point that stopped early (blow-up) is padded with NaN up to the full
    time grid ``t``.  Without ``two_time`` only the one-time series (dims with ``t``, without
    ``s``) are kept; with it also the two-time kernels and the arrays without a time axis
    (rho, S_U).
    """
    nt = len(t)
    ds = res.to_dataset()
    if not two_time:
        ds = ds[[k for k, v in ds.data_vars.items() if "t" in v.dims and "s" not in v.dims]]
    pad = {}
    for dim, full in (("t", t), ("s", t)):
        if dim in ds.dims:
            n = min(ds.sizes[dim], nt)
            ds = ds.isel({dim: slice(0, n)}).assign_coords({dim: full[:n]})
            pad[dim] = full
    for dim in ("step", "step_s"):
        if dim in ds.dims:
            pad[dim] = np.arange(max(nt - 1, ds.sizes[dim]))
    return ds.reindex(pad) if pad else ds


def _nan_like(var):
    """``var`` (a DataArray) with every value NaN: a variable a point does not have."""
    return var.copy(data=np.full(var.shape, np.nan))


def combine(spec: SweepSpec, out, points: list[Point] | None = None, *, run_meta: dict | None = None,
            two_time: bool = False):
    """Concatenate the point Datasets of the current grid from ``FILE.parts/`` (missing points: NaN).

    Returns
    -------
    xarray.Dataset
        Dims ``(*grid, t, ...)`` with the component dims of the single runs (dmftgen/dataset.py);
        coordinates the grid values and t; data variables the float one-time arrays of the
        single runs (padded with NaN after a blow-up; with ``two_time`` also the two-time kernels
        and static arrays), ``status`` ("missing" for points without a part), ``message``,
        ``key`` and ``point_meta`` (JSON).
    """
    import xarray as xr

    from .sweep import model_identity

    points = spec.points() if points is None else points
    names = list(spec.grid)
    gshape = tuple(len(spec.grid[n]) for n in names)
    t = _time_axis(spec, points)
    results = {p.key: load_part(out, p) for p in points}
    pieces = {p.key: point_dataset(results[p.key], t, two_time) for p in points if results[p.key] is not None}
    template = {}  # union of the variables, first appearance wins
    for ds in pieces.values():
        for k, v in ds.data_vars.items():
            template.setdefault(k, v)
    first_meta = next((r.meta for r in results.values() if r is not None), None)
    nested = np.empty(gshape, dtype=object)
    for p in points:
        res = results[p.key]
        ds = pieces.get(p.key)
        variables = {k: (ds[k] if ds is not None and k in ds.data_vars else _nan_like(v)) for k, v in template.items()}
        variables.update(
            status=xr.DataArray(res.status if res is not None else "missing"),
            message=xr.DataArray(res.message if res is not None else ""),
            key=xr.DataArray(p.key),
            point_meta=xr.DataArray(json.dumps(res.meta, allow_nan=False, default=str) if res is not None else ""))
        nested[p.index] = xr.Dataset(variables)
    ds = xr.combine_nested(nested.tolist(), concat_dim=names, combine_attrs="drop_conflicts") if names \
        else nested[()]
    ds = ds.assign_coords({n: np.asarray(spec.grid[n], dtype=float) for n in names}).transpose(*names, ...)
    for k in ("status", "message", "key", "point_meta"):
        ds[k] = ds[k].astype(str)
    model = spec.model()
    meta = {"kind": "sweep", "what": spec.what, "model": model.name, "model_ref": spec.model_ref,
            "source_hash": model_identity(model)["source_hash"], "settings": spec.base.as_dict(),
            "grid": {n: list(map(float, v)) for n, v in spec.grid.items()}, "options": dict(spec.options),
            "points": len(points), "done": int(sum(r is not None for r in results.values())),
            "parts": str(parts_dir(out).name)}
    if first_meta is not None:
        for k in ("kind", "method", "versions", "d", "seeds", "paths"):
            if k in first_meta:
                meta[f"run_{k}" if k == "kind" else k] = first_meta[k]
    meta.update(run_meta or {})
    ds.attrs = {"dmftgen": "sweep", "what": spec.what, "model": model.name,
                "meta": json.dumps(meta, allow_nan=False, default=str)}
    return ds


def write_dataset(ds, out) -> Path:
    """Write ``ds`` to ``out`` (netCDF, h5netcdf engine) atomically: temp file + os.replace."""
    from .dataset import write_netcdf

    return write_netcdf(ds, out)


def load_sweep(path):
    """Open a sweep file as an (in-memory) xarray Dataset; ``sweep_meta(ds)`` gives its metadata."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"sweep file {path} does not exist (make it with `dmftgen sweep ... --out {path}`).")
    need = "give the .nc file written by `dmftgen sweep --out FILE.nc`"
    if path.suffix in (".json", ".npz"):
        raise SettingsError(f"sweep file {path}: a {path.suffix} file holds a single run, not a sweep; {need}.")
    try:
        ds = xr.load_dataset(path, engine="h5netcdf")
    except Exception as exc:  # garbage, truncated, a .json/.npz result: one message, no traceback
        raise SettingsError(f"sweep file {path}: cannot be read as a netCDF sweep file "
                            f"({type(exc).__name__}: {exc}); {need}.") from None
    kind = ds.attrs.get("dmftgen")
    if kind != "sweep":
        what = "a single-run result, not a sweep" if kind == "result" else "not a dmftgen sweep file"
        raise SettingsError(f"sweep file {path}: {what} (no attribute dmftgen='sweep'); {need}.")
    try:
        meta = sweep_meta(ds) if "meta" in ds.attrs else None
    except (TypeError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise SettingsError(f"sweep file {path}: its `meta` attribute is missing or not a JSON object "
                            f"(damaged file); {need}.")
    return ds


def point_meta(ds, **coords) -> dict:
    """The full single-run metadata of one point, e.g. ``point_meta(ds, delta=1, tau=0.5)``."""
    s = ds["point_meta"].sel(coords).values
    return json.loads(str(s)) if str(s) else {}
