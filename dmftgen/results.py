"""Result objects of simulate / solve / compare: named arrays + metadata + status; atomic files.

One contract for every producer (docs/kernels.md): ``t``, ``train_loss``, ``test_loss``,
``train_<metric>``, ``test_<metric>``, ``Q`` (T, m, m), ``M`` (T, m, k), error bars as ``*_sem``
(simulation, standard error over seeds) or ``*_err`` (DMFT, Monte Carlo error), and ``meta``
(model, source hash, settings, seeds, package versions).  Non-convergence or blow-up is a
``status``/``message``, never an exception.

The labelled form is ``Result.to_dataset()`` (dmftgen/dataset.py: named dimensions, one error
convention ``*_err``; ``result["x_err"]`` also finds a simulation's ``x_sem``); ``.nc`` files
hold that Dataset, ``.json``/``.npz`` are export formats, ``dmftgen.load`` reads all three.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from ._io import atomic_write  # noqa: F401  (re-exported: compare, w2 use it)
from .dataset import NETCDF_SUFFIXES, write_netcdf
from .errors import SettingsError

STATUS = {
    "ok": "finished",
    "diverged": "the dynamics blew up (NaN/inf); the finished part of the record is kept",
    "not-converged": "the fixed-point iteration did not converge",
}


def versions() -> dict:
    """Versions of dmftgen and the numerical stack, for result metadata."""
    import numba
    import scipy
    import sympy

    from . import __version__

    return {"dmftgen": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "sympy": sympy.__version__, "numba": numba.__version__}


class Result:
    """Named arrays plus ``meta``, ``status`` and ``message``.

    ``result["train_loss"]`` is an ndarray; ``result.t`` the time grid; ``result.ok`` whether
    the run finished.
    """

    def __init__(self, data: dict, meta: dict | None = None, status: str = "ok", message: str = ""):
        self.data = {k: np.asarray(v) for k, v in data.items()}
        self.meta = dict(meta or {})
        self.status = status
        self.message = message or STATUS.get(status, "")

    def __getitem__(self, key):
        try:
            return self.data[key]
        except KeyError:
            alias = error_alias(key)
            if alias in self.data:
                return self.data[alias]
            raise

    def err(self, name: str) -> np.ndarray:
        """The 1-sigma error bar of ``name``: ``name_err`` (DMFT) or ``name_sem`` (simulation)."""
        return self[name + "_err"]

    def to_dataset(self):
        """This result as a labelled ``xarray.Dataset`` (named dims; see dmftgen/dataset.py)."""
        from .dataset import to_dataset

        return to_dataset(self)

    def __contains__(self, key):
        return key in self.data

    def keys(self):
        return self.data.keys()

    def get(self, key, default=None):
        return self.data.get(key, default)

    @property
    def t(self) -> np.ndarray:
        return self.data["t"]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __repr__(self):
        keys = ", ".join(sorted(self.data))
        return f"Result(status={self.status!r}, keys=[{keys}])"

    # -- files ----------------------------------------------------------------------------------
    def to_json_dict(self) -> dict:
        out = {k: jsonable(v) for k, v in self.data.items()}
        out["meta"] = jsonable(self.meta)
        out["status"] = self.status
        out["message"] = self.message
        return out

    def save(self, path) -> Path:
        """Write ``.nc``, ``.json`` or ``.npz`` (by suffix) atomically: an earlier file survives a failure."""
        path = Path(path)
        if path.suffix in NETCDF_SUFFIXES:
            return write_netcdf(self.to_dataset(), path)
        if path.suffix == ".json":
            payload = json.dumps(self.to_json_dict(), allow_nan=False).encode()
        elif path.suffix == ".npz":
            buf = io.BytesIO()
            np.savez(buf, **self.data, __meta__=np.array(json.dumps(
                {"meta": jsonable(self.meta), "status": self.status, "message": self.message}, allow_nan=False)))
            payload = buf.getvalue()
        else:
            raise SettingsError(f"output file {path} must end in .nc, .json or .npz.")
        atomic_write(path, payload)
        return path

    @classmethod
    def load(cls, path) -> "Result":
        path = Path(path)
        if path.suffix == ".json":
            raw = json.loads(path.read_text())
            meta, status, message = raw.pop("meta", {}), raw.pop("status", "ok"), raw.pop("message", "")
            data = {k: np.array(_from_json(v), dtype=float) if _numeric(v) else np.array(v) for k, v in raw.items()}
            return cls(data, meta, status, message)
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files if k != "__meta__"}
            head = json.loads(str(z["__meta__"])) if "__meta__" in z.files else {}
        return cls(data, head.get("meta", {}), head.get("status", "ok"), head.get("message", ""))


def error_alias(key: str) -> str:
    """``x_err`` <-> ``x_sem``: the two historical names of one error bar (1 sigma)."""
    if key.endswith("_err"):
        return key[:-4] + "_sem"
    if key.endswith("_sem"):
        return key[:-4] + "_err"
    return key


def jsonable(v, keep_inf: bool = False):
    """ndarrays -> nested lists, NaN -> None, +-inf -> None or "inf"/"-inf" (strict JSON either way).

    ``keep_inf`` keeps the sign of an infinity as text, for tables where an infinite discrepancy
    (both error bars zero) must stay distinguishable from a missing value.
    """
    if isinstance(v, dict):
        return {str(k): jsonable(x, keep_inf) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x, keep_inf) for x in v]
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist(), keep_inf)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        if math.isfinite(f):
            return f
        return ("inf" if f > 0 else "-inf") if keep_inf and not math.isnan(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _numeric(v) -> bool:
    while isinstance(v, list) and v:
        v = v[0]
    return v is None or isinstance(v, (int, float)) or v == []


def _from_json(v):
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return float("nan") if v is None else v
