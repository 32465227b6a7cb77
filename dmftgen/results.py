"""Result objects of simulate / solve / compare: named arrays + metadata + status; atomic files.

One contract for every producer (docs/kernels.md): ``t``, ``train_loss``, ``test_loss``,
``train_<metric>``, ``test_<metric>``, ``Q`` (T, m, m), ``M`` (T, m, k), error bars as ``*_sem``
(simulation, standard error over seeds) or ``*_err`` (DMFT, Monte Carlo error), and ``meta``
(model, source hash, settings, seeds, package versions).  Non-convergence or blow-up is a
``status``/``message``, never an exception.

Files are reproducible: the same seed and settings give byte-identical ``.json`` / ``.npz``
files.  Run timings (``wall_s``, ``timings``, ``time_s``, ``peak_rss_mb``, ..., see
:data:`VOLATILE_META`) stay in the in-memory ``Result.meta`` only and are not written; the
``.npz`` zip members carry a fixed timestamp.  :func:`save_result` never lets a failed run
replace a good earlier file (it goes beside it as ``<stem>.failed<suffix>``) and saves a result
whose write failed to a rescue path.

The labelled form is ``Result.to_dataset()`` (dmftgen/dataset.py: named dimensions, one error
convention ``*_err``; ``result["x_err"]`` also finds a simulation's ``x_sem``); ``.nc`` files
hold that Dataset, ``.json``/``.npz`` are export formats, ``dmftgen.load`` reads all three.
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from ._io import atomic_write, rescue_path  # noqa: F401  (re-exported: compare, w2 use atomic_write)
from .dataset import NETCDF_SUFFIXES, write_netcdf
from .errors import SettingsError

STATUS = {
    "ok": "finished",
    "diverged": "the dynamics blew up (NaN/inf); the finished part of the record is kept",
    "unstable": "unstable growth (stability criterion or loss growth by many orders); not a valid curve",
    "not-converged": "the fixed-point iteration did not converge",
    "window-too-short": "the stationary solve's memory window does not span the response's decay: values and "
                        "error bars leave out an unknown tail (use a larger window)",
    "inaccurate": "a self-check of the solve failed (an identity of the exact solution is violated)",
    "outside_theory": "the model is outside the theory's assumptions (run on explicit request)",
    "interrupted": "interrupted (Ctrl-C / SIGTERM); the finished part of the record is kept",
}

#: meta keys that hold run timings / memory use: kept in memory, never written to files (they
#: differ between identical runs and would make the files differ).
VOLATILE_META = frozenset({"wall_s", "timings", "time_s", "time_coarse_s", "time_fine_s", "cpu_s",
                           "total_s", "peak_rss_mb", "peak_rss_after_coarse_mb"})

#: the fixed timestamp of every .npz member (zip's epoch), so that files are byte-identical.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def stable_meta(meta):
    """``meta`` without the :data:`VOLATILE_META` keys (recursively): what the files hold."""
    if isinstance(meta, dict):
        return {k: stable_meta(v) for k, v in meta.items() if k not in VOLATILE_META}
    if isinstance(meta, (list, tuple)):
        return [stable_meta(v) for v in meta]
    return meta


def npz_bytes(arrays: dict) -> bytes:
    """``np.savez`` layout (one uncompressed ``<name>.npy`` member per array) with fixed member
    timestamps: the same arrays always give the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


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
        # infinities as "inf"/"-inf" (a stationary result's t = [inf] read back as NaN before)
        out = {k: jsonable(v, keep_inf=True) for k, v in self.data.items()}
        out["meta"] = jsonable(stable_meta(self.meta))
        out["status"] = self.status
        out["message"] = self.message
        return out

    def to_bytes(self, suffix: str) -> bytes:
        """The file content for ``suffix`` ".json" or ".npz" (deterministic, no timings)."""
        if suffix == ".json":
            return json.dumps(self.to_json_dict(), allow_nan=False).encode()
        if suffix == ".npz":
            head = json.dumps({"meta": jsonable(stable_meta(self.meta)), "status": self.status,
                               "message": self.message}, allow_nan=False)
            return npz_bytes({**self.data, "__meta__": np.array(head)})
        raise SettingsError(f"output file suffix {suffix!r} must be .json or .npz.")

    def save(self, path) -> Path:
        """Write ``.nc``, ``.json`` or ``.npz`` (by suffix) atomically: an earlier file survives a failure.

        Same data, meta, status -> same bytes (timings are not written, see the module docstring).
        """
        path = Path(path)
        if path.suffix in NETCDF_SUFFIXES:
            # without the timings, as .json/.npz (the .nc of two identical runs differed in wall_s)
            stable = Result(self.data, stable_meta(self.meta), self.status, self.message)
            return write_netcdf(stable.to_dataset(), path)
        if path.suffix not in (".json", ".npz"):
            raise SettingsError(f"output file {path} must end in .nc, .json or .npz.")
        atomic_write(path, self.to_bytes(path.suffix))
        return path

    @classmethod
    def from_dataset(cls, ds, path) -> "Result":
        """The Result held by a single-run Dataset read from ``path`` (a .nc file):
        :class:`NotAResultError` for any other Dataset (a sweep is read by ``dmftgen.load``)."""
        from .dataset import to_result

        if ds.attrs.get("dmftgen") != "result":
            raise NotAResultError(f"{path}: {NOT_RESULT} (no attribute dmftgen='result'; a sweep's "
                                  "file is read by dmftgen.load).")
        return to_result(ds)

    @classmethod
    def load(cls, path) -> "Result":
        """The Result saved at ``path`` (.json, .npz or .nc).

        A file without a ``status`` string was not written by :meth:`save` (every result records
        one): :class:`NotAResultError`, never a default. (A missing status used to read as "ok",
        so a foreign file passed for a finished run.)"""
        path = Path(path)
        if path.suffix in NETCDF_SUFFIXES:
            from .dataset import load as load_dataset

            return cls.from_dataset(load_dataset(path), path)
        if path.suffix == ".json":
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise NotAResultError(f"{path}: {NOT_RESULT} (its JSON is not an object).")
            status = _status_of(raw, path)
            meta, message = raw.pop("meta", {}), raw.pop("message", "")
            raw.pop("status")
            data = {k: np.array(_from_json(v), dtype=float) if _numeric(v) else np.array(v) for k, v in raw.items()}
            return cls(data, meta, status, message)
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files if k != "__meta__"}
            head = json.loads(str(z["__meta__"])) if "__meta__" in z.files else {}
        status = _status_of(head, path)
        return cls(data, head.get("meta", {}), status, head.get("message", ""))


#: what a file is not when it lacks the header every saved Result has
NOT_RESULT = "not a dmftgen result file"


class NotAResultError(SettingsError):
    """A file that :meth:`Result.load` cannot take for a result: it records no status."""


def _status_of(head, path) -> str:
    status = head.get("status") if isinstance(head, dict) else None
    if not isinstance(status, str):
        raise NotAResultError(f"{path}: {NOT_RESULT} (it records no `status`); give a .json, .npz "
                              "or .nc written by dmftgen.")
    return status


def failed_path(path) -> Path:
    """Where a failed run goes when ``path`` holds a good result: ``<stem>.failed<suffix>``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.failed{path.suffix}")


def _kept_instead(path: Path) -> str:
    """What ``path`` holds that a failed run must not replace ("" if nothing): a finished result,
    or a file that is not a dmftgen result at all (the user's own data: dmftgen writes atomically,
    so it never leaves a truncated file of its own). Only an earlier failed run is replaced."""
    if not path.exists():
        return ""
    try:
        res = Result.load(path)
    except Exception:  # not a result, unreadable, a directory
        return "a file that is not a dmftgen result"
    return "an earlier finished result" if res.ok else ""


class OutputError(SettingsError):
    """The final write failed; the message says where the result was saved instead (exit 2)."""


def save_result(res: Result, path) -> tuple[Path, str]:
    """Save ``res`` to ``path`` without ever destroying a good earlier result.

    * ``res`` not ok (diverged, unstable, interrupted, ...) and ``path`` holds a result with
      status ok, or a file that is not a dmftgen result: the earlier file is kept and ``res`` goes
      to :func:`failed_path` (a failed run replaces only an earlier failed run).
    * The write fails (disk full, directory gone or read-only): ``res`` is saved to
      :func:`dmftgen._io.rescue_path` and :class:`OutputError` names both paths.

    Returns
    -------
    (path written, note)
        ``note`` is "" or one sentence for the user (where the run went and why).
    """
    path = Path(path)
    target, note = path, ""
    held = "" if res.ok else _kept_instead(path)
    if held:
        target = failed_path(path)
        note = f"{path} holds {held} and was kept; this {res.status} run was written beside it to {target}"
    try:
        return res.save(target), note
    except OSError as exc:
        reason = f"{exc.strerror or exc}"
        rescue = rescue_path(target)
        try:
            res.save(rescue)
        except OSError as exc2:
            raise OutputError(f"could not write {target} ({reason}) nor the rescue file {rescue} "
                              f"({exc2.strerror or exc2}); the result is lost.") from None
        raise OutputError(f"could not write {target} ({reason}); the result ({res.status}) was saved to "
                          f"{rescue} instead.") from None


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


_INF_TEXT = {"inf": math.inf, "-inf": -math.inf}  # how to_json_dict writes infinities (keep_inf)


def _numeric(v) -> bool:
    while isinstance(v, list) and v:
        v = v[0]
    return v is None or isinstance(v, (int, float)) or v == [] or (isinstance(v, str) and v in _INF_TEXT)


def _from_json(v):
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    if isinstance(v, str) and v in _INF_TEXT:
        return _INF_TEXT[v]
    return float("nan") if v is None else v
