"""`dmftgen show-result FILE`: status, settings and the self-checks of a saved result.

    dmftgen show-result dmft.json
    dmftgen show-result phase.nc          # a sweep file: the status of every point

What counts as a dmftgen result file (anything else: exit 2, "not a dmftgen result file"):
``.json`` / ``.npz`` written by simulate, solve, solve-long, stationary (a ``meta`` object naming
the ``model`` and a ``status`` string; ``.npz`` keeps them in its ``__meta__`` member), and ``.nc``
files whose attribute ``dmftgen`` is ``result`` (a single run) or ``sweep`` (``dmftgen sweep``).
A ``t`` array, where present, must be a 1-D numeric time grid.
"""
from __future__ import annotations

#: Shown per point for a sweep file of at most this many points; larger sweeps list only the
#: points whose status is not ok.
SWEEP_LIST_MAX = 50

NOT_RESULT = ("not a dmftgen result file: give a .json, .npz or .nc written by dmftgen simulate, solve, "
              "solve-long, stationary or sweep")


def add_parser(sub):
    p = sub.add_parser(
        "show-result", help="print a saved result's status, settings and self-checks",
        description="Print the status and message of a result file (.json or .npz written by simulate, "
                    "solve, solve-long, .nc from those or from sweep), its settings, the final values with "
                    "error bars and, for a DMFT solve, every self-check (the identities the exact discrete "
                    "solution satisfies: Q and M balance, kernel consistency, descent at tau = 0, sampler), "
                    "with its worst |z|, threshold and time. For a sweep file: the status of every point. "
                    "Exit status 0 if the status (every point's) is ok, 1 otherwise, 2 for a file that is "
                    "not a dmftgen result.")
    p.add_argument("file", metavar="FILE", help="result file (.json, .npz or .nc)")
    p.set_defaults(func=run)


def _num(v):
    """``v`` as a float, or None where it is not a real number (crafted or damaged metadata)."""
    import numpy as np

    try:
        a = np.asarray(v)
        return float(a) if a.ndim == 0 and a.dtype.kind in "biuf" else None
    except (TypeError, ValueError):
        return None


def _g(v, spec: str = ".3g") -> str:
    x = _num(v)
    return format(x, spec) if x is not None else str(v)


def _read(path):
    """(Result or None, sweep Dataset or None); SettingsError for unreadable or foreign files.

    Single runs are read by :meth:`dmftgen.results.Result.load` (its NotAResultError: a file
    without a status); a result must also name its model. A .nc file is read once: a sweep is
    shown as such, a single run converted as Result.load does."""
    from ..dataset import NETCDF_SUFFIXES, load
    from ..errors import SettingsError
    from ..results import NotAResultError, Result

    if path.suffix not in (".json", ".npz", *NETCDF_SUFFIXES):
        raise SettingsError(f"{path}: a dmftgen result file ends in .json, .npz or .nc.")
    try:
        if path.suffix in NETCDF_SUFFIXES:
            ds = load(path)
            if ds.attrs.get("dmftgen") == "sweep":
                return None, ds
            res = Result.from_dataset(ds, path)
        else:
            res = Result.load(path)
    except NotAResultError as exc:
        hint = ("; compare's table.json and w2's w2.json are tables, not results"
                if path.suffix == ".json" else "")
        raise SettingsError(f"{exc}".rstrip(".") + hint + ".") from None
    except Exception as exc:  # garbage, truncated, damaged members, pickled objects
        raise SettingsError(f"{path}: cannot be read as a dmftgen result ({type(exc).__name__}: {exc}); "
                            "give a .json, .npz or .nc written by dmftgen.") from None
    model = res.meta.get("model") if isinstance(res.meta, dict) else None
    if not (isinstance(model, str) and model):
        raise SettingsError(f"{path}: {NOT_RESULT} (its `meta` names no model).")
    return res, None


def _check_t(res, path) -> None:
    import numpy as np

    from ..errors import SettingsError

    if "t" in res:
        t = np.asarray(res.t)
        if t.ndim != 1 or t.dtype.kind not in "biuf":
            raise SettingsError(f"{path}: {NOT_RESULT} (its `t` is not a 1-D numeric time grid).")


def _final(res, key):
    """The last entry of a curve over ``t`` (and of its error bar), or None if it is not one."""
    import numpy as np

    v = np.asarray(res[key])
    if v.ndim != 1 or v.dtype.kind not in "biuf" or len(v) != len(res.t) or not len(v):
        return None
    err = res.get(key + "_err", res.get(key + "_sem"))
    e = np.asarray(err) if err is not None else None
    ok_err = e is not None and e.ndim == 1 and e.dtype.kind in "biuf" and len(e) == len(v)
    return float(v[-1]), (float(e[-1]) if ok_err else None)


def _settings_line(settings, skip=()) -> str | None:
    if not isinstance(settings, dict) or not settings:
        return None
    return ("settings   " + ", ".join(f"{k} = {v}" for k, v in settings.items() if k != "params" and k not in skip)
            + (f", params {settings.get('params')}" if settings.get("params") else ""))


def _show_sweep(ds, path) -> int:
    """A sweep file: model, grid, the count of each status and the status of the points."""
    from collections import Counter

    import numpy as np

    from ..dataset import meta_of
    from ..errors import SettingsError

    try:
        meta = meta_of(ds)
        status = np.asarray(ds["status"].values).astype(str)
        names = list(ds["status"].dims)
        grid = [np.asarray(ds[n].values) for n in names]
    except Exception as exc:  # a damaged sweep file
        raise SettingsError(f"{path}: a dmftgen sweep file, but damaged ({type(exc).__name__}: {exc}); "
                            "rerun `dmftgen sweep` (finished points are reused from FILE.parts/).") from None
    meta = meta if isinstance(meta, dict) else {}
    message = np.asarray(ds["message"].values).astype(str) if "message" in ds else None
    loss = None
    # a `--what compare` sweep stores the DMFT's as test_loss_dmft (it listed no loss at all)
    key = next((k for k in ("test_loss", "test_loss_dmft") if k in ds), "test_loss")
    if key in ds and "t" in ds.dims and tuple(ds[key].dims) == tuple(names) + ("t",):
        loss = np.asarray(ds[key].values, dtype=float)
        lerr = np.asarray(ds[key + "_err"].values, dtype=float) \
            if key + "_err" in ds and ds[key + "_err"].shape == loss.shape else None
    counts = Counter(status.ravel().tolist())
    print(f"file       {path}")
    print(f"model      {meta.get('model', ds.attrs.get('model', '?'))}   sweep of {meta.get('what', '?')} over "
          + (" x ".join(f"{n} ({len(g)})" for n, g in zip(names, grid)) or "no grid"))
    s = _settings_line(meta.get("settings"), skip=names)
    if s:
        print(s)
    print(f"points     {status.size}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if "t" in ds.dims and ds.sizes["t"]:
        print(f"time       t = {float(ds['t'][0]):g}..{float(ds['t'][-1]):g}")
    listed = [i for i in np.ndindex(status.shape)
              if status.size <= SWEEP_LIST_MAX or status[i] != "ok"]
    if status.size > SWEEP_LIST_MAX:
        print(f"({status.size} points: only those not ok are listed)")
    for i in listed:
        where = ", ".join(f"{n}={_g(g[k], 'g')}" for n, g, k in zip(names, grid, i)) or "the point"
        line = f"  {where}: {status[i]}"
        if status[i] != "ok" and message is not None and message[i]:
            line += f": {message[i]}"
        if loss is not None and np.isfinite(loss[i][-1]):
            e = lerr[i][-1] if lerr is not None else np.nan
            line += f"   {key} {loss[i][-1]:.6g}" + (f" ± {e:.2g}" if np.isfinite(e) else "")
        print(line)
    return 0 if status.size and counts.get("ok", 0) == status.size else 1


def run(args) -> int:
    from pathlib import Path

    from ..errors import SettingsError

    path = Path(args.file)
    if not path.is_file():
        raise SettingsError(f"{path}: no such result file; give a .json, .npz or .nc written by dmftgen.")
    res, sweep = _read(path)
    if sweep is not None:
        return _show_sweep(sweep, path)
    _check_t(res, path)
    meta = res.meta or {}
    print(f"file       {path}")
    print(f"model      {meta.get('model', '?')}   status {res.status}" + (f": {res.message}" if res.message else ""))
    s = _settings_line(meta.get("settings"))
    if s:
        print(s)
    if meta.get("outside_theory"):
        print(f"OUTSIDE THEORY: {meta['outside_theory']}")
    if "t" in res and len(res.t):
        for key in ("train_loss", "test_loss"):
            fin = _final(res, key) if key in res else None
            if fin is not None:
                e = f" ± {fin[1]:.2g}" if fin[1] is not None else ""
                print(f"{key:<10} {fin[0]:.6g}{e} at t = {float(res.t[-1]):g}")
    checks = meta.get("checks") or []
    pool = meta.get("pooled_checks") or []
    checks = [c for c in (checks if isinstance(checks, list) else []) + (pool if isinstance(pool, list) else [])
              if isinstance(c, dict)]
    if checks:
        options = meta.get("options") if isinstance(meta.get("options"), dict) else {}
        alpha = options.get("check_alpha", 1e-3)
        which = (f"; those of replica 1 of {meta.get('replicas')}, then those pooled over the replicas"
                 if pool else "")
        print(f"self-checks (fail when |z| > threshold; false-alarm rate {_g(alpha, 'g')} for the solve{which}):")
        for c in checks:
            tw = _num(c.get("t_worst"))
            where = f" at t = {tw:g}" if tw is not None and tw == tw else ""
            print(f"  {'ok  ' if c.get('ok') else 'FAIL'} {str(c.get('name', '?')):<26} worst {_g(c.get('worst_z'))} "
                  f"(threshold {_g(c.get('threshold'))}){where}: {c.get('what', '')}")
        note = _skipped_checks_note(meta, checks)
        if note:
            print(note)
    return 0 if res.ok else 1


def _skipped_checks_note(meta, checks):
    """A solve whose path groups are too small for batch-means error bars runs only the
    deterministic checks (dmftgen.dmft.checks.MIN_GROUP_PATHS); say so instead of listing two
    round-off checks as if they were all of them."""
    from ..dmft.checks import MIN_GROUP_PATHS

    if any("dof" in c for c in checks):
        return ""
    paths, groups = _num(meta.get("paths")), _num(meta.get("groups"))
    reps = _num(meta.get("replicas")) or 1
    if not paths or not groups or paths / (groups * reps) >= MIN_GROUP_PATHS:
        return ""
    need = MIN_GROUP_PATHS * int(groups) * int(reps)
    return (f"  note: the statistical self-checks (Q balance, M balance, ...) were not run: "
            f"{paths / (groups * reps):.3g} paths per path group, fewer than {MIN_GROUP_PATHS} "
            f"({int(paths)} paths in {int(reps)} replicas x {int(groups)} groups); use --paths >= {need}.")
