r"""Parameter sweeps on Dask: one independent task per grid point, one labelled dataset.

    spec = SweepSpec("logistic", "solve", Settings(T=2, dt=0.1),
                     grid={"delta": [1, 2], "tau": [0.1, 0.5]}, options={"paths": 2000})
    ds = run_sweep(spec, "phase.nc")            # LocalCluster; scheduler="tcp://..." for a cluster

Every grid point is a pure task :func:`run_point` ``(model_ref, settings_dict, what, options) ->
dict`` that loads the model and its generated kernels **by name/path inside the worker** (numba
dispatchers are never pickled: unpickling one recompiles it and bypasses the disk cache).
``load_kernels`` keeps the imported module in
``sys.modules``, so each worker process imports (and numba compiles or loads from its disk cache)
the kernels once; later tasks on the same worker reuse the compiled dispatchers.  Each result
records ``meta["worker"]["new_overloads"]``, the number of dispatcher specialisations the task
added, which is the evidence (0 for every task but the first on a worker).

Storage and resume
------------------
A finished point is written at once, atomically, to ``FILE.parts/<key>.npz`` (a regular
:class:`dmftgen.results.Result` file: arrays, meta, status).  ``key`` is a hash of everything that
determines the numbers: the model's source hash and resolved parameter values, the full settings,
``what`` and the options (see :func:`point_key`).  A re-run of the same command skips every point
whose part exists and computes the rest; a point whose settings changed gets a new key and is
recomputed.  At the end (and on Ctrl-C, and on every resume) the parts of the current grid are
combined into ``FILE``: an xarray Dataset (netCDF, h5netcdf engine) with dims
``(*grid parameters, t, component dims)``, the variables of the single-run results, per-point
``status``/``message``/``point_meta`` (JSON) strings, and the run metadata as a JSON string
attribute ``meta`` (netCDF attributes cannot hold nested dicts or booleans).  The point
Datasets are concatenated (:func:`point_dataset`, :func:`combine`); their dimensions come from
the result schema of :mod:`dmftgen.dataset`, never from array shapes.

Size: above 400 lines because it holds four jobs that several branches are editing at once
(grid and keys, the Dask driver and parts, combine, the phase-diagram plots); the plots
(``_select`` .. ``plot_phase``) are the first to move out once those branches are merged.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .config import Settings
from .errors import SettingsError

WHATS = ("solve", "simulate", "compare", "stationary")
#: Settings fields that may be swept.  T and dt are not: they change the time axis.
SETTINGS_GRID = ("delta", "tau", "lam", "seed")
#: Integer options that may be swept, per task kind (finite-size / Monte Carlo studies).
OPTION_GRID = {"simulate": ("d", "seeds"), "solve": ("paths",), "compare": ("d", "seeds", "paths"),
               "stationary": ("paths", "replicas", "samples")}
#: Error-bar names looked up beside a plotted value (dmftgen/dataset.py: ``_err`` in Datasets).
SUFFIXES = ("_err", "_sem")
PART_SUFFIX = ".npz"


# ----------------------------------------------------------------------------------------------
# Grid specification
# ----------------------------------------------------------------------------------------------
def parse_grid_item(item: str) -> tuple[str, list[float]]:
    """``"delta=1,2,4"`` -> ("delta", [1.0, 2.0, 4.0]); ``"tau=0:1:5"`` -> 5 values linspace(0, 1).

    Raises
    ------
    SettingsError
        Malformed item, non-numeric or repeated values.
    """
    name, eq, rest = str(item).partition("=")
    name = name.strip()
    if not eq or not name or not rest.strip():
        raise SettingsError(f"--grid expects NAME=V1,V2,... or NAME=START:STOP:NUM, got {item!r} "
                            f"(e.g. --grid delta=1,2,4).")
    try:
        if ":" in rest:
            a, b, n = rest.split(":")
            n = int(n)
            if n < 1:
                raise ValueError
            values = np.linspace(float(a), float(b), n).tolist()
        else:
            values = [float(v) for v in rest.split(",") if v.strip()]
    except ValueError:
        raise SettingsError(f"--grid {name}: could not read {rest!r}; give numbers V1,V2,... or "
                            f"START:STOP:NUM (e.g. --grid {name}=0.1,0.5).") from None
    if not values:
        raise SettingsError(f"--grid {name}: no values given.")
    if len(set(values)) != len(values):
        raise SettingsError(f"--grid {name}: repeated values in {values}; each value once.")
    if not all(math.isfinite(v) for v in values):
        raise SettingsError(f"--grid {name}: values must be finite, got {values}.")
    return name, values


def _canonical(obj) -> str:
    """Deterministic JSON (sorted keys, exact float repr) for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


@dataclass(frozen=True)
class Point:
    """One grid point: its index in the grid, coordinates, full settings/options, and key."""

    index: tuple
    coords: dict
    settings: dict
    options: dict
    key: str


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep.

    Parameters
    ----------
    model_ref : str
        Built-in model name or path of a model file (made absolute, so workers can load it).
    what : {"solve", "simulate", "compare"}
        The single-run function called at every point.
    base : Settings
        Settings shared by all points; the grid overrides some of them.
    grid : mapping name -> sequence of values
        Axes of the sweep, in dimension order.  Names: a settings field (delta, tau, lam, seed),
        a model parameter (e.g. beta), or an integer option of ``what`` (d, seeds, paths).
    options : mapping
        Keyword arguments passed to the single-run function (e.g. ``{"paths": 2000}``).
    """

    model_ref: str
    what: str
    base: Settings
    grid: Mapping[str, Sequence[float]]
    options: Mapping = field(default_factory=dict)

    def __post_init__(self):
        ref = str(self.model_ref)
        p = Path(ref)
        if ref.endswith(".py") or "/" in ref or p.is_file():
            ref = str(p.resolve())
        object.__setattr__(self, "model_ref", ref)
        if self.what not in WHATS:
            raise SettingsError(f"unknown --what `{self.what}`; use one of {', '.join(WHATS)}.")
        if not isinstance(self.base, Settings):
            raise SettingsError(f"`base` must be a dmftgen.Settings, got {type(self.base).__name__}.")
        if not self.grid:
            raise SettingsError("a sweep needs at least one --grid NAME=V1,V2,... axis.")
        grid = {}
        for name, values in dict(self.grid).items():
            values = list(values)
            if not values:
                raise SettingsError(f"grid axis `{name}` has no values.")
            grid[str(name)] = values
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "options", {k: v for k, v in sorted(dict(self.options).items())})

    # -- points ---------------------------------------------------------------------------------
    def model(self):
        from .model import load_model
        return load_model(self.model_ref)

    def axis_kind(self, name: str, model=None) -> str:
        """'settings', 'param' or 'option'; SettingsError for anything else."""
        model = model or self.model()
        if name in SETTINGS_GRID:
            return "settings"
        if name in model.param_names:
            return "param"
        if name in OPTION_GRID[self.what]:
            return "option"
        if name in ("T", "dt"):
            raise SettingsError(f"--grid {name}: the horizon T and step dt cannot be swept (they change the "
                                f"time axis t shared by all points); run one sweep per {name}.")
        allowed = list(SETTINGS_GRID) + list(model.param_names) + list(OPTION_GRID[self.what])
        raise SettingsError(f"--grid {name}: not a sweepable name for model `{model.name}` with --what "
                            f"{self.what}. Use one of: {', '.join(allowed)}.")

    def points(self) -> list[Point]:
        """All grid points in C order of the grid axes, validated (bad values fail here, early)."""
        model = self.model()
        kinds = {name: self.axis_kind(name, model) for name in self.grid}
        for name, kind in kinds.items():
            if kind == "option" or name == "seed":
                for v in self.grid[name]:
                    if float(v) != int(v):
                        raise SettingsError(f"--grid {name}: values must be integers, got {v}.")
        ident = model_identity(model)
        names = list(self.grid)
        out = []
        for index in product(*(range(len(self.grid[n])) for n in names)):
            coords = {n: self.grid[n][i] for n, i in zip(names, index)}
            changes, params, options = {}, dict(self.base.params), dict(self.options)
            for n, v in coords.items():
                if kinds[n] == "settings":
                    changes[n] = int(v) if n == "seed" else float(v)
                elif kinds[n] == "param":
                    params[n] = float(v)
                else:
                    options[n] = int(v)
            settings = self.base.replace(params=params, **changes)  # validates delta > 0 etc.
            model.param_vector(settings.params)
            sd = settings.as_dict()
            out.append(Point(index=index, coords=coords, settings=sd, options=options,
                             key=point_key(ident, sd, self.what, options)))
        return out


_RUN_CODE = ("sim", "dmft", "analysis", "observables.py", "comparison.py", "config.py", "results.py", "stability.py",
             "model.py", "symbolic.py", "functions.py", "codegen", "reference", "sweep.py")


def code_hash() -> str:
    """sha256 of the Python sources that turn settings into numbers (simulator, solver, observables).

    Part of every point key: after a fix to the solver or simulator, finished points are recomputed
    instead of silently mixing old and new numbers in one dataset.
    """
    root = Path(__file__).parent
    h = hashlib.sha256()
    for name in _RUN_CODE:
        files = sorted((root / name).glob("*.py")) if (root / name).is_dir() else [root / name]
        for f in files:  # sorted for a deterministic hash
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def model_identity(model) -> dict:
    """What of the model determines the numbers: generated-code hash, parameter defaults, inits,
    and the code of the run stages (``code_hash``)."""
    import sympy as sp

    from .codegen.hashing import source_hash
    from . import __version__

    from .codegen import kernels_hash

    return {"source_hash": source_hash(model), "kernels": kernels_hash(model),
            "param_defaults": {k: float(v) for k, v in zip(model.param_names, model.param_vector())},
            "init_std": sp.srepr(sp.sympify(model.init_std)),
            "teacher_std": sp.srepr(sp.sympify(model.teacher_std)),
            "dmftgen": __version__, "code": code_hash()}


def point_key(identity: dict, settings: dict, what: str, options: dict) -> str:
    """sha256 (first 20 hex digits) of model identity + full settings + what + options."""
    blob = _canonical({"model": identity, "settings": settings, "what": what, "options": options})
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------------
# The task
# ----------------------------------------------------------------------------------------------
def _task_threads(threads: int | None) -> int:
    """Threads one task may use: the option, else the Dask worker's (one task per thread slot)."""
    if threads:
        return int(threads)
    try:
        from distributed import get_worker
        w = get_worker()
    except (ImportError, ValueError):
        return 0  # not in a Dask worker: leave the caller's configuration alone
    n = getattr(getattr(w, "state", w), "nthreads", 1)
    # A worker with n thread slots runs n tasks at once: give each task one thread, never n*n.
    return 1 if n > 1 else int(n)


def _set_threads(n: int) -> dict:
    """numba (per calling thread) and, if threadpoolctl is installed, BLAS threads -> n."""
    import numba

    info = {"threads": n}
    n = max(1, min(int(n), int(numba.config.NUMBA_NUM_THREADS)))
    numba.set_num_threads(n)
    info["numba_threads"] = int(numba.get_num_threads())
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        # Dask's nanny starts workers with OMP/OPENBLAS/MKL_NUM_THREADS=1 already.
        info["blas_threads"] = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    else:
        threadpool_limits(n)
        info["blas_threads"] = n
    return info


def _overloads(kern) -> tuple[int, int, int]:
    """(compiled specialisations, disk-cache hits, cache misses) over the kernel module's dispatchers."""
    from numba.core.registry import CPUDispatcher

    n = hits = misses = 0
    for v in vars(kern).values():
        if isinstance(v, CPUDispatcher):
            n += len(v.overloads)
            st = v.stats
            hits += sum(st.cache_hits.values())
            misses += sum(st.cache_misses.values())
    return n, hits, misses


def _call(what, model, settings, options):
    """The single run as a Result (compare: its table flattened to ``<observable>_<side>`` columns)."""
    if what == "simulate":
        from .sim import simulate
        return simulate(model, settings, progress=False, **options)
    if what == "solve":
        from .dmft import solve
        return solve(model, settings, **options)
    if what == "stationary":
        return _stationary_point(model, settings, options)
    from .comparison import compare

    return compare(model, settings, **options)  # a Result: the table's columns (kind "comparison")


def _stationary_point(model, settings, options):
    """``--what stationary``: the stationary state (dmftgen.dmft.stationary_state), one point t = inf."""
    from .dmft.stationary_state import stationary

    return stationary(model, settings, **options)


def _time_axis(spec, points) -> np.ndarray:
    """The t coordinate of the combined dataset: the settings' grid, or [inf] for stationary states."""
    if spec.what == "stationary":
        return np.array([np.inf])
    return Settings(**points[0].settings).times


def run_point(model_ref: str, settings_dict: dict, what: str, options: dict) -> dict:
    """Run one grid point; pure (same inputs -> same numbers) and picklable by name.

    Parameters
    ----------
    model_ref : str
        Built-in model name or absolute path; the model and its generated kernels are loaded here,
        in the worker, through the per-process caches of ``load_model``/``load_kernels``.
    settings_dict : dict
        ``Settings.as_dict()`` of this point.
    what : {"solve", "simulate", "compare"}
    options : dict
        Keyword arguments of the single-run function; ``threads`` (optional) sets the numba/BLAS
        threads of this task (default: 1 per Dask worker thread slot).

    Returns
    -------
    dict
        ``{"data": {name: ndarray}, "meta": dict, "status": str, "message": str}`` -- a
        :class:`Result` as plain data; ``meta["worker"]`` has pid, host, thread settings, whether
        this task imported the kernels, and the dispatcher specialisations it added.
    """
    import socket

    from .codegen import PACKAGE, load_kernels
    from .model import load_model

    options = dict(options)
    threads = _task_threads(options.pop("threads", None))
    tinfo = _set_threads(threads) if threads else {}
    t0 = time.perf_counter()
    model = load_model(model_ref)
    imported = f"{PACKAGE}.{model.name}" not in sys.modules
    kern = load_kernels(model)
    before, hits0, miss0 = _overloads(kern)
    res = _call(what, model, Settings(**settings_dict), options)
    after, hits1, miss1 = _overloads(kern)
    meta = dict(res.meta)
    meta["worker"] = {"pid": os.getpid(), "host": socket.gethostname(), **tinfo,
                      "kernels_imported": imported, "new_overloads": after - before,
                      "cache_hits": hits1 - hits0, "cache_misses": miss1 - miss0,
                      "task_s": time.perf_counter() - t0}
    return {"data": dict(res.data), "meta": meta, "status": res.status, "message": res.message}


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
    ds = xr.load_dataset(path, engine="h5netcdf")
    if ds.attrs.get("dmftgen") != "sweep":
        raise SettingsError(f"{path} is not a dmftgen sweep file (no attribute dmftgen='sweep').")
    return ds


def sweep_meta(ds) -> dict:
    return json.loads(ds.attrs["meta"])


def point_meta(ds, **coords) -> dict:
    """The full single-run metadata of one point, e.g. ``point_meta(ds, delta=1, tau=0.5)``."""
    s = ds["point_meta"].sel(coords).values
    return json.loads(str(s)) if str(s) else {}


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------
def _check_out(out) -> Path:
    out = Path(out)
    if out.suffix not in (".nc", ".nc4", ".h5"):
        raise SettingsError(f"--out {out}: a sweep is stored as netCDF; the file must end in .nc.")
    from ._io import check_output_file
    return check_output_file(out)  # writable, before any point is computed


def local_cluster(workers: int | None = None, threads_per_task: int = 1):
    """LocalCluster of ``workers`` processes, one thread slot each, no dashboard, quiet logs."""
    import dask
    from distributed import LocalCluster

    workers = int(workers or os.cpu_count() or 1)
    env = {"OMP_NUM_THREADS": threads_per_task, "MKL_NUM_THREADS": threads_per_task,
           "OPENBLAS_NUM_THREADS": threads_per_task, "NUMBA_NUM_THREADS": max(1, threads_per_task)}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env,
                          "distributed.worker.daemon": True}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=None, silence_logs=logging.CRITICAL)


def run_sweep(spec: SweepSpec, out, *, scheduler: str | None = None, workers: int | None = None,
              client=None, threads_per_task: int | None = None, progress: bool = False,
              two_time: bool = False, log=None):
    """Run (or resume) a sweep; returns the combined Dataset, also written to ``out``.

    Parameters
    ----------
    spec : SweepSpec
    out : path ending in .nc
        Combined dataset; finished points go to ``out.parts/`` as they complete.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``); default a LocalCluster.
    workers : int, optional
        Workers of the LocalCluster (default: CPU count).  ``0`` runs the points serially in
        this process (no Dask; for debugging).
    client : distributed.Client, optional
        Use this client (tests); overrides ``scheduler``/``workers``.
    threads_per_task : int, optional
        numba/BLAS threads per task (default 1 per Dask thread slot).
    progress : bool
        tqdm bar on stderr.
    two_time : bool
        Also put the two-time kernels (C_theta, R_theta, K_ell, R_ell) into ``out``; the parts
        always have them, so this can be switched on later without recomputing.
    log : callable, optional
        Called with one-line status messages (default: nothing).

    Returns
    -------
    xarray.Dataset
        As :func:`combine`; ``meta["failed"]`` lists points whose task raised (not written, so a
        resume retries them).
    """
    out = _check_out(out)
    log = log or (lambda msg: None)
    points = spec.points()
    from .codegen import load_kernels
    load_kernels(spec.model())  # stale/missing kernels: one clear error now, not one per point
    todo = [p for p in points if load_part(out, p) is None]
    done0 = len(points) - len(todo)
    run_id = uuid.uuid4().hex[:12]
    log(f"{len(points)} points, {done0} already done in {parts_dir(out)}, computing {len(todo)}")
    parts_dir(out).mkdir(parents=True, exist_ok=True)
    failed = {}
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(points), initial=done0, desc=f"sweep {spec.what}", unit="pt", file=sys.stderr)
    extra = {"threads": int(threads_per_task)} if threads_per_task else {}  # not part of the key
    saved = []

    def finished(p, payload):
        save_part(out, p, payload, run_id)
        saved.append(p.key)
        if bar is not None:
            bar.update(1)
        else:  # no terminal (pipe, batch log): one line per finished point
            where = ", ".join(f"{k}={v:g}" for k, v in p.coords.items())
            task_s = payload["meta"].get("worker", {}).get("task_s", float("nan"))
            log(f"{done0 + len(saved)}/{len(points)} {where}: {payload['status']} ({task_s:.1f} s)")

    own_client = own_cluster = None
    try:
        if todo and workers == 0 and client is None and scheduler is None:
            for p in todo:
                try:
                    finished(p, run_point(spec.model_ref, p.settings, spec.what, {**p.options, **extra}))
                except Exception as exc:  # noqa: BLE001 -- reported per point, the sweep goes on
                    failed[p.key] = f"{type(exc).__name__}: {exc}"
        elif todo:
            try:
                from distributed import Client, as_completed
            except ImportError:
                raise SettingsError("sweeps run on Dask: install the dist extra (pip install "
                                    "'dmftgen[dist]'), or use --workers 0 to run the points here, serially.") from None
            if client is None:
                if scheduler:
                    try:
                        own_client = client = Client(scheduler, timeout="30s")
                    except (OSError, TimeoutError) as exc:
                        raise SettingsError(f"could not connect to the Dask scheduler at {scheduler!r} ({exc}). "
                                            "Start one (`dask scheduler`, then `dask worker ADDRESS`), or omit "
                                            "--scheduler to use a LocalCluster on this machine.") from None
                else:
                    own_cluster = local_cluster(workers, threads_per_task or 1)
                    own_client = client = Client(own_cluster)
            futures = {}
            for p in todo:
                f = client.submit(run_point, spec.model_ref, p.settings, spec.what,
                                  {**p.options, **extra}, key=f"dmftgen-point-{p.key}-{run_id}", pure=False)
                futures[f] = p
            for f in as_completed(futures):
                p = futures[f]
                try:
                    payload = f.result()
                except Exception as exc:  # noqa: BLE001
                    failed[p.key] = f"{type(exc).__name__}: {exc}"
                    continue
                finally:
                    f.release()
                finished(p, payload)
    finally:
        if bar is not None:
            bar.close()
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
        wall = time.perf_counter() - t0
        run_meta = {"run_id": run_id, "computed": len(saved), "reused": done0,
                    "failed": failed, "wall_s": wall}
        ds = combine(spec, out, points, run_meta=run_meta, two_time=two_time)
        if done0 or saved or out.exists():  # never leave an all-missing file after e.g. a failed connection
            write_dataset(ds, out)
    for key, msg in failed.items():
        log(f"point {key} failed: {msg}")
    return ds



# ----------------------------------------------------------------------------------------------
# Phase diagrams
# ----------------------------------------------------------------------------------------------
def _select(da, sel: Mapping | None, mean: Sequence[str] | None):
    """Fix dims by value (nearest; integer position for dims without a coordinate) and average others."""
    for name, v in dict(sel or {}).items():
        if name not in da.dims:
            raise SettingsError(f"--sel {name}: `{da.name}` has no dimension {name}; its dims: {', '.join(da.dims)}.")
        if name in da.coords:
            da = da.sel({name: float(v)}, method="nearest")
        else:
            if float(v) != int(v) or not 0 <= int(v) < da.sizes[name]:
                raise SettingsError(f"--sel {name}: give an index 0..{da.sizes[name] - 1}, got {v}.")
            da = da.isel({name: int(v)})
    for name in mean or ():
        if name not in da.dims:
            raise SettingsError(f"--mean {name}: `{da.name}` has no dimension {name}; its dims: {', '.join(da.dims)}.")
        da = da.mean(name)
    return da


def time_to_level(da, level: float, *, below: bool = True):
    r"""First time the curve crosses ``level``, linearly interpolated between grid times.

    t_hit = t_{k-1} + (t_k - t_{k-1}) (level - v_{k-1}) / (v_k - v_{k-1}) at the first k with
    v_k <= level (``below``; >= otherwise); 0 if v_0 already is; NaN if never reached (or the
    curve is NaN before reaching it).
    """
    import xarray as xr

    def one(v, t):
        hit = (v <= level) if below else (v >= level)
        k = int(np.argmax(hit)) if hit.any() else -1
        if k < 0 or np.isnan(v[:k]).any():
            return np.nan
        if k == 0:
            return t[0]
        v0, v1 = v[k - 1], v[k]
        return t[k - 1] + (t[k] - t[k - 1]) * (level - v0) / (v1 - v0)

    return xr.apply_ufunc(lambda a, t: np.apply_along_axis(one, -1, a, t), da, da["t"],
                          input_core_dims=[["t"], ["t"]], vectorize=False)


def phase_values(ds, value: str = "test_loss", *, at_time: float | None = None, time_to: float | None = None,
                 above: bool = False, sel: Mapping | None = None, mean: Sequence[str] | None = None,
                 keep: Sequence[str] = ()):
    """The plotted quantity: ``value`` at ``at_time`` (nearest grid time; default the final time),
    or the time to reach ``time_to``; other dims fixed by ``sel``/averaged by ``mean``.

    Returns
    -------
    (xarray.DataArray, xarray.DataArray or None, str)
        Values with dims ``keep`` only, their error bars (``<value>_sem``/``_err`` at that time) or
        None, and a label.
    """
    if value not in ds.data_vars or value in ("status", "message", "key", "point_meta"):
        numeric = [k for k in ds.data_vars if k not in ("status", "message", "key", "point_meta")]
        raise SettingsError(f"--value {value}: not in the sweep file; available: {', '.join(numeric)}.")
    if at_time is not None and time_to is not None:
        raise SettingsError("give either --at-time T or --time-to LEVEL, not both.")
    da = _select(ds[value], sel, mean)
    err = None
    for suf in SUFFIXES:
        if value + suf in ds.data_vars:
            err = _select(ds[value + suf], sel, mean)
    if time_to is not None:
        out = time_to_level(da, float(time_to), below=not above) if "t" not in keep else da
        label = f"time to {value} {'>=' if above else '<='} {time_to:g}"
        err = None
    elif "t" in keep:
        out, label = da, value
    else:
        tt = float(ds["t"][-1]) if at_time is None else float(at_time)
        out = da.sel(t=tt, method="nearest")
        err = err.sel(t=tt, method="nearest") if err is not None else None
        label = f"{value} at t = {float(out['t']):g}"
    extra = [d for d in out.dims if d not in keep and out.sizes[d] == 1]
    out = out.squeeze(extra, drop=True)
    err = err.squeeze([d for d in extra if d in err.dims], drop=True) if err is not None else None
    left = [d for d in out.dims if d not in keep]
    if left:
        raise SettingsError(f"dimension(s) {', '.join(left)} of `{value}` are neither plotted nor fixed: add "
                            f"--sel {left[0]}=VALUE or --mean {left[0]}.")
    return out.transpose(*keep), (err.transpose(*keep) if err is not None else None), label


def plot_phase(ds, out_png, *, kind: str = "heatmap", x: str, y: str | None = None, value: str = "test_loss",
               at_time: float | None = None, time_to: float | None = None, above: bool = False,
               sel: Mapping | None = None, mean: Sequence[str] | None = None, log: bool = False,
               title: str | None = None):
    """Heat map of a final value / time-to-level over grid dims ``x`` (columns) and ``y`` (rows),
    or curves over ``x`` (a grid dim, or ``t``) with one line per value of ``y``.  Writes PNG."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    for name in (x, y):
        if name is not None and name not in ds.dims:
            raise SettingsError(f"`{name}` is not a dimension of the sweep; dims: {', '.join(ds.dims)}.")
    meta = sweep_meta(ds)
    if kind == "heatmap":
        if y is None or x == "t" or y == "t":
            raise SettingsError("--kind heatmap needs two grid parameters: --x NAME --y NAME.")
        vals, _, label = phase_values(ds, value, at_time=at_time, time_to=time_to, above=above, sel=sel,
                                      mean=mean, keep=(y, x))
        z = np.asarray(vals.values, dtype=float)
        fig = Figure(figsize=(1.2 + 0.9 * max(3, z.shape[1]), 1.0 + 0.7 * max(3, z.shape[0])))
        ax = fig.subplots()
        finite = z[np.isfinite(z)]
        norm = LogNorm() if (log and finite.size and finite.min() > 0) else None
        cmap = colormaps["viridis"].with_extremes(bad="0.85")
        im = ax.imshow(np.ma.masked_invalid(z), origin="lower", aspect="auto", cmap=cmap, norm=norm)
        ax.set_xticks(range(z.shape[1]), [f"{v:g}" for v in ds[x].values])
        ax.set_yticks(range(z.shape[0]), [f"{v:g}" for v in ds[y].values])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        if z.size <= 400:
            lo, hi = (finite.min(), finite.max()) if finite.size else (0, 1)
            for (i, j), v in np.ndenumerate(z):
                txt = f"{v:.3g}" if np.isfinite(v) else ("not reached" if time_to is not None else "missing")
                dark = np.isfinite(v) and (v - lo) < 0.5 * (hi - lo)
                ax.text(j, i, txt, ha="center", va="center", fontsize=8, color="white" if dark else "black")
        fig.colorbar(im, ax=ax, label=label)
    elif kind == "curves":
        keep = (x,) if y is None else (x, y)
        vals, err, label = phase_values(ds, value, at_time=at_time, time_to=time_to, above=above, sel=sel,
                                        mean=mean, keep=keep)
        fig = Figure(figsize=(5.5, 4))
        ax = fig.subplots()
        xs = ds[x].values
        hues = [None] if y is None else list(ds[y].values)
        for h in hues:
            v = vals if h is None else vals.sel({y: h})
            e = None if err is None else (err if h is None else err.sel({y: h}))
            lab = None if h is None else f"{y} = {h:g}"
            line, = ax.plot(xs, v.values, marker="o" if x != "t" else None, ms=4, label=lab)
            if e is not None and np.isfinite(e.values).any():
                ax.fill_between(xs, v.values - 2 * e.values, v.values + 2 * e.values, alpha=0.2,
                                color=line.get_color(), lw=0)
        ax.set_xlabel(x)
        ax.set_ylabel(label if x != "t" else value)
        if log:
            ax.set_yscale("log")
        if y is not None:
            ax.legend(fontsize=8)
    else:
        raise SettingsError(f"unknown --kind `{kind}`; use heatmap or curves.")
    s = meta.get("settings", {})
    fixed = [f"{k}={s[k]:g}" for k in ("delta", "tau", "lam") if k not in ds.dims and k in s]
    fixed += [f"{k}={v:g}" for k, v in dict(sel or {}).items()] + [f"mean over {k}" for k in mean or ()]
    fixed = ", ".join(fixed)
    ax.set_title(title or f"{meta['model']} ({meta['what']}) {fixed}", fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    return out_png
