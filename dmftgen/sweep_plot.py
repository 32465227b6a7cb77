"""Phase diagrams from a sweep file: selection, time-to-level, heat maps and curves
(object-oriented matplotlib; see :mod:`dmftgen.sweep`)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ._io import atomic_path, check_output_file
from .errors import SettingsError
from .sweep_parts import sweep_meta

#: Error-bar names looked up beside a plotted value (dmftgen/dataset.py: ``_err`` in Datasets).
SUFFIXES = ("_err", "_sem")

#: Per-point text variables of a sweep file: not plottable values.
_NOT_VALUES = ("status", "message", "key", "point_meta")

#: Figure formats ``plot --out`` writes (by suffix; all drawn by matplotlib's Agg/vector backends).
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".eps", ".jpg", ".jpeg")


def check_figure_path(out, what: str = "--out") -> Path:
    """The figure file ``out``, checked before any work: a known figure suffix, and that it can be
    written there (dmftgen._io.check_output_file: not a directory, not below a file, writable)."""
    out = Path(out)
    if out.suffix.lower() not in FIGURE_SUFFIXES:
        raise SettingsError(f"{what} {out}: the figure file must end in {', '.join(FIGURE_SUFFIXES)} "
                            f"(e.g. {out.with_suffix('.png').name}).")
    return check_output_file(out, what)


# ----------------------------------------------------------------------------------------------
# Phase diagrams
# ----------------------------------------------------------------------------------------------
def _select(da, sel: Mapping | None, mean: Sequence[str] | None):
    """Fix dims by value (a grid value, to 1e-6 relative; integer position for dims without a
    coordinate) and average others."""
    for name, v in dict(sel or {}).items():
        if name not in da.dims:
            raise SettingsError(f"--sel {name}: `{da.name}` has no dimension {name}; its dims: {', '.join(da.dims)}.")
        if name in da.coords:
            grid = np.asarray(da[name].values, dtype=float)
            hit = np.flatnonzero(np.isclose(grid, float(v), rtol=1e-6, atol=1e-12))
            if hit.size == 0:
                raise SettingsError(f"--sel {name}={v:g}: not a grid value of {name}; "
                                    f"the grid: {', '.join(f'{g:g}' for g in grid)}.")
            da = da.isel({name: int(hit[0])})
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


def _check_dims(ds, value: str, sel: Mapping | None, mean: Sequence[str] | None, keep: Sequence[str], *,
                at_time: float | None, time_to: float | None) -> None:
    """Refuse, before any selection, the combinations that have no meaning: a plotted dimension
    fixed or averaged too, the time fixed by --sel (use --at-time), a non-finite or out-of-range
    --at-time, a non-finite --time-to, --at-time / --time-to on curves over t."""
    dims = ds[value].dims
    for d in keep:
        if d not in dims:
            raise SettingsError(f"--x/--y {d}: `{value}` has no dimension {d}; its dims: {', '.join(dims)}.")
    if len(set(keep)) != len(keep):
        raise SettingsError(f"--x and --y are both {keep[0]}; give two different dimensions "
                            f"(dims of `{value}`: {', '.join(dims)}).")
    mean = list(mean or ())
    for flag, names in (("--sel", list(dict(sel or {}))), ("--mean", mean)):
        for name in names:
            if name in keep:
                raise SettingsError(f"{flag} {name}: {name} is plotted (--x or --y); fix or average only the "
                                    f"other dimensions of `{value}` ({', '.join(d for d in dims if d not in keep)}).")
            if name == "t":
                raise SettingsError(f"{flag} t: choose the time with --at-time T (or --time-to LEVEL), or plot "
                                    "over it with --kind curves --x t.")
    if len(set(mean)) != len(mean):
        raise SettingsError(f"--mean {', '.join(sorted({m for m in mean if mean.count(m) > 1}))}: given twice.")
    both = sorted(set(mean) & set(dict(sel or {})))
    if both:
        raise SettingsError(f"--sel {both[0]} and --mean {both[0]}: give one of them, not both.")
    if "t" in keep and (at_time is not None or time_to is not None):
        flag = "--at-time" if at_time is not None else "--time-to"
        raise SettingsError(f"{flag}: the curves are over t already (--x t / --y t); drop {flag}.")
    for flag, v in (("--at-time", at_time), ("--time-to", time_to)):
        if v is not None and not np.isfinite(float(v)):
            raise SettingsError(f"{flag} {v}: give a finite number.")
    if (at_time is not None or time_to is not None) and not np.isfinite(np.asarray(ds["t"].values, float)).any():
        # a `--what stationary` sweep has the one time t = inf: --time-to drew an empty figure
        flag = "--at-time" if at_time is not None else "--time-to"
        raise SettingsError(f"{flag}: this sweep has no time axis (t = inf: stationary states, --what "
                            f"stationary); plot the stationary values without {flag}.")
    if at_time is not None:
        t = np.asarray(ds["t"].values, dtype=float)
        tol = 1e-9 * max(1.0, float(np.abs(t).max()))
        if not t[0] - tol <= float(at_time) <= t[-1] + tol:
            raise SettingsError(f"--at-time {at_time}: give a time in the sweep's grid range "
                                f"{t[0]:g}..{t[-1]:g} (nearest grid time is used).")


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
    if value not in ds.data_vars or value in _NOT_VALUES:
        numeric = [k for k in ds.data_vars if k not in _NOT_VALUES]
        raise SettingsError(f"--value {value}: not in the sweep file; available: {', '.join(numeric)}.")
    if at_time is not None and time_to is not None:
        raise SettingsError("give either --at-time T or --time-to LEVEL, not both.")
    _check_dims(ds, value, sel, mean, keep, at_time=at_time, time_to=time_to)
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

    out_png = check_figure_path(out_png)
    for flag, name in (("--x", x), ("--y", y)):
        if name is not None and name not in ds.dims:
            raise SettingsError(f"{flag} {name}: not a dimension of the sweep; dims: {', '.join(ds.dims)}.")
    if value in ds.data_vars and value not in _NOT_VALUES:
        for flag, name in (("--x", x), ("--y", y)):
            if name is not None and name not in ds[value].dims:
                raise SettingsError(f"{flag} {name}: `{value}` has no dimension {name}; its dims: "
                                    f"{', '.join(ds[value].dims)}.")
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
    ax.set_title(title or f"{meta.get('model', '?')} ({meta.get('what', '?')}) {fixed}", fontsize=9)
    fig.tight_layout()
    try:
        with atomic_path(out_png) as tmp:  # an earlier figure survives a failed write
            fig.savefig(tmp, dpi=120, format=out_png.suffix[1:].lower())
    except OSError as exc:
        raise SettingsError(f"--out {out_png}: could not write the figure ({exc.strerror or exc}); "
                            "choose a writable location.") from None
    return out_png
