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

Modules, one job each (every public name is importable from here, ``dmftgen.sweep``): this one
holds the grid (:class:`SweepSpec`, :class:`Point`) and the point keys (:func:`point_key`,
:func:`code_hash`); :mod:`dmftgen.sweep_task` the task :func:`run_point`;
:mod:`dmftgen.sweep_parts` the part files and :func:`combine`; :mod:`dmftgen.sweep_driver`
:func:`run_sweep` on Dask; :mod:`dmftgen.sweep_plot` the phase diagrams (:func:`plot_phase`).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .config import Settings
from .errors import SettingsError
# The other jobs live in sibling modules (none imports this one at import time); their public
# names stay importable from here.
from .sweep_task import run_point  # noqa: F401
from .sweep_parts import (PART_SUFFIX, combine, load_part, load_sweep, part_path, parts_dir,  # noqa: F401
                          point_dataset, point_meta, save_part, sweep_meta, write_dataset)
from .sweep_driver import local_cluster, run_sweep  # noqa: F401
from .sweep_plot import SUFFIXES, phase_values, plot_phase, time_to_level  # noqa: F401

WHATS = ("solve", "simulate", "compare", "stationary")
#: Settings fields that may be swept.  T and dt are not: they change the time axis.
SETTINGS_GRID = ("delta", "tau", "lam", "seed")
#: Integer options that may be swept, per task kind (finite-size / Monte Carlo studies).
OPTION_GRID = {"simulate": ("d", "seeds"), "solve": ("paths",), "compare": ("d", "seeds", "paths"),
               "stationary": ("paths", "replicas", "samples")}


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


    def check(self, points: list[Point] | None = None) -> None:
        """Validate every point (the fixed options and each grid value) with the checks its
        single-run function makes before computing (:func:`dmftgen.sweep_task.check_point`),
        without running any: one SettingsError naming the point, the option and the fix."""
        from .sweep_task import check_point

        model = self.model()
        seen = set()
        for p in self.points() if points is None else points:
            blob = _canonical({"settings": p.settings, "options": p.options})
            if blob in seen:
                continue
            seen.add(blob)
            try:
                check_point(self.what, model, Settings(**p.settings), p.options)
            except SettingsError as exc:
                where = ", ".join(f"{n}={v:g}" for n, v in p.coords.items())
                raise SettingsError(f"sweep --what {self.what}, grid point {where}: {exc}") from None


_RUN_CODE = ("sim", "dmft", "analysis", "observables.py", "comparison", "config.py", "results.py", "stability.py",
             "model.py", "symbolic.py", "functions.py", "codegen", "reference", "sweep.py", "sweep_task.py",
             "sweep_parts.py", "sweep_driver.py", "sweep_plot.py")


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
