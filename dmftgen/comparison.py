r"""Theory against simulation: run SGD/SGF and the DMFT on one time grid, tabulate, plot, decide.

    cmp = compare(model, settings, d=1024, seeds=4, methods=("sgd",), paths=20000)
    cmp = compare(model, settings, d=(512, 1024, 2048), ...)   # finite-size extrapolation
    cmp.summary            # one screen of text: verdict, error budget, hints
    write_outputs(cmp, "out/figure1")   # figure.png, table.csv, table.json, summary.txt, *.npz

Normalised discrepancy (table column ``z``).  For a scalar observable O (train/test loss,
metrics, entries of Q and M) at grid time t_k, the simulation gives a mean over seeds with
standard error ``sem`` and the solver a value with Monte Carlo error ``err``;

.. math:: z_k = \frac{|O^{\rm sim}_k - O^{\rm dmft}_k|}{\sqrt{{\rm sem}_k^2 + {\rm err}_k^2}}.

The verdict is not a threshold on max_k z_k (~100 correlated values with estimated errors, whose
false-alarm rate is unknown) but one family of Welch t tests at four well-separated times with a
Bonferroni bound on its false-alarm rate, against the d -> infinity and dt -> 0 limits where they
were measured: :mod:`dmftgen.analysis.verdict` (and :mod:`dmftgen.analysis.stats` for the
formulas). Assumption checks: :mod:`dmftgen.analysis.diagnostics`. Figure:
:mod:`dmftgen.analysis.figure`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from .analysis.diagnostics import assumption_warnings, lipschitz_probe  # noqa: F401 (re-exported)
from .analysis.stats import LEVEL, fit_inv_d
from .analysis.verdict import assess, budget_lines, tested_indices, verdict_line
from .errors import SettingsError
from .results import Result, jsonable

__all__ = ["Comparison", "compare", "assumption_warnings", "lipschitz_probe", "observable_list",
           "discrepancy", "build_table", "summary_text", "table_csv", "render_figure", "write_outputs",
           "LEVEL"]


#: seed offset between the sizes of ``compare --d d1,d2,...`` (independent simulations per size)
SIZE_SEED_STRIDE = 7919


@dataclass(eq=False, repr=False)
class Comparison(Result):
    """Everything ``compare`` produced; ``write_outputs`` turns it into files.

    ``sims`` holds the simulation at the largest d per method, ``sims_by_d`` every size;
    ``dt_check`` the DMFT companion solve at 2 dt (SGD only); ``verdict`` the family test
    (:func:`dmftgen.analysis.verdict.assess`) and ``raw_verdict`` the same without the d and dt
    extrapolations.

    A Comparison is a :class:`~dmftgen.results.Result` like every other command's: its arrays
    are the columns of the table (:func:`table_columns`: t, epochs, ``<observable>_dmft``,
    ``<observable>_dmft_err``, ``<observable>_<method>``, ``_sem``, ``_z``, ...), all on the time
    grid, ``meta["kind"] == "comparison"``, and its status is the last non-ok status of the DMFT
    and the simulations; ``to_dataset()`` labels every column by ``t``.
    """

    model: object
    settings: object
    sims: dict                  # method -> Result (largest d)
    dmft: object                # Result
    table: dict                 # see build_table
    warnings: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    wall: dict = field(default_factory=dict)
    summary: str = ""
    sims_by_d: dict = field(default_factory=dict)
    dt_check: object = None
    verdict: dict = field(default_factory=dict)
    raw_verdict: dict = field(default_factory=dict)

    def __post_init__(self):
        self.label()

    def label(self):
        """Set the Result part (data, meta, status, message) from the table and the runs; called
        on construction and again once the summary is written."""
        head, cols = table_columns(self.table)
        data = {h: np.asarray(c, dtype=float) for h, c in zip(head, cols) if c is not None}
        runs = [("dmft", self.dmft), *self.sims.items()]
        status = "ok"
        for _, r in runs:
            if getattr(r, "status", "ok") != "ok":
                status = r.status
        meta = {"kind": "comparison", "model": self.model.name, "settings": self.settings.as_dict(),
                "options": dict(self.options), "warnings": list(self.warnings), "wall": dict(self.wall),
                "summary": self.summary, "dmft": dict(self.dmft.meta),
                "sims": {k: dict(v.meta) for k, v in self.sims.items()}}
        msg = "; ".join(f"{k}: {r.message}" for k, r in runs if getattr(r, "status", "ok") != "ok")
        Result.__init__(self, data, meta, status=status, message=msg)


# ----------------------------------------------------------------------------------------------
# Observables and discrepancies
# ----------------------------------------------------------------------------------------------
def observable_list(model, metrics) -> list:
    """Scalar observables as (name, key, index, panel): index selects an entry of Q (a, b) or M (a, j).

    ``panel`` groups observables into figure panels: "loss", one per metric, "overlaps".
    """
    obs = [("train_loss", "train_loss", None, "loss"), ("test_loss", "test_loss", None, "loss")]
    for met in metrics:
        obs += [(f"train_{met}", f"train_{met}", None, met), (f"test_{met}", f"test_{met}", None, met)]
    m, k = model.m, model.k
    for a in range(m):
        for b in range(a, m):
            obs.append((f"Q{a}{b}" if m > 1 else "Q", "Q", (a, b), "overlaps"))
    for a in range(m):
        for j in range(k):
            obs.append((f"M{a}{j}" if m > 1 or k > 1 else "M", "M", (a, j), "overlaps"))
    return obs


def _series(res, key, index, err_suffix):
    """(values, errors) of one scalar observable in a Result; errors 0 if absent."""
    if key not in res:
        return None, None
    v = np.asarray(res[key], dtype=float)
    e = res.get(key + err_suffix)
    e = np.zeros_like(v) if e is None or np.shape(e) != v.shape else np.asarray(e, dtype=float)
    if index is not None:
        sel = (slice(None),) + tuple(index)
        v, e = v[sel], e[sel]
    return v, e


def discrepancy(sim, sem, dmft, err):
    r"""Normalised discrepancy z = |sim - dmft| / sqrt(sem^2 + err^2), elementwise.

    Missing error estimates (NaN, e.g. a single seed) count as 0 here (the verdict does not test
    such points). Where both errors vanish (e.g. t = 0 with theta^0 = 0: both sides are exact) z
    is 0 if the values agree to round-off (1e-9 relative) and inf otherwise.
    """
    sim, sem, dmft, err = (np.asarray(a, dtype=float) for a in (sim, sem, dmft, err))
    den = np.sqrt(np.nan_to_num(sem) ** 2 + np.nan_to_num(err) ** 2)
    diff = np.abs(sim - dmft)
    tiny = 1e-9 * (1.0 + np.abs(dmft))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(den > tiny, diff / np.where(den > tiny, den, 1.0),
                     np.where(diff <= tiny, 0.0, np.inf))
    z[~np.isfinite(sim) | ~np.isfinite(dmft)] = np.nan
    return z


def sim_dof(res) -> float:
    """Degrees of freedom of a simulation's sem: seeds used - 1 (inf if unknown)."""
    S = res.meta.get("seeds_used", res.meta.get("seeds"))
    return float(S) - 1.0 if S is not None else np.inf


def dmft_dof(res) -> float:
    """Degrees of freedom of the DMFT's ``*_err`` (replicas - 1, groups - 1; Richardson: min)."""
    meta = res.meta
    if meta.get("richardson"):
        parts = [meta.get(k) or {} for k in ("coarse", "fine")]
        vals = [_dof_of(m) for m in parts]
        return float(min(vals))
    return _dof_of(meta)


def _dof_of(meta):
    if "err_dof" in meta:
        return float(meta["err_dof"])
    if int(meta.get("replicas", 1) or 1) > 1:
        return float(int(meta["replicas"]) - 1)
    if "groups" in meta:
        return float(int(meta["groups"]) - 1)
    return np.inf


def _min_dof(parts):
    """Conservative dof of a sum of independent variances [(var, dof), ...]: the minimum over the
    non-zero ones (see dmftgen.analysis.stats)."""
    out = np.inf
    for var, dof in parts:
        out = np.minimum(out, np.where(np.asarray(var) > 0, dof, np.inf))
    return out


def build_table(model, sims: dict, dmft, metrics, sims_by_d=None, dt_check=None) -> dict:
    """Both curves with their errors, z, and the extrapolations on the common grid.

    Returns
    -------
    dict
        ``t`` (K,), ``epochs`` (K,) or None, ``d`` (sizes), and ``observables``: name ->
        {"panel", "dmft", "dmft_err", "dmft_dof", ["dt_bias", "dmft_corr", "dmft_corr_err",
        "dmft_corr_dof"] (SGD with the 2 dt check: f(2dt) - f(dt) and 2 f(dt) - f(2dt) at even
        k, NaN at odd k), ["dt_disc"] (Richardson), "sim": {method: {"mean", "sem", "dof", "z",
        ["by_d": {d: {"mean", "sem", "dof"}}, "extrap": {"mean", "sem", "dof", "fs_bias",
        "fs_bias_err"}]}}}; only observables present and finite somewhere in the DMFT result.
    """
    sims_by_d = sims_by_d or {}
    t_d = np.asarray(dmft.t, dtype=float)
    K = len(t_d)
    for res in list(sims.values()) + [r for byd in sims_by_d.values() for r in byd.values()]:
        K = min(K, len(res.t))
    t = t_d[:K]
    for meth, res in list(sims.items()) + [(f"{m} d={d}", r) for m, byd in sims_by_d.items()
                                           for d, r in byd.items()]:
        if K and np.max(np.abs(np.asarray(res.t[:K]) - t)) > 1e-9 * max(1.0, t[-1]):
            raise SettingsError(f"internal: the {meth} simulation and the DMFT use different time grids.")
    table = {"t": t, "observables": {}}
    ddof = dmft_dof(dmft)
    for name, key, index, panel in observable_list(model, metrics):
        dv, de = _series(dmft, key, index, "_err")
        if dv is None or not np.isfinite(dv[:K]).any():
            continue
        entry = {"panel": panel, "dmft": dv[:K], "dmft_err": de[:K], "dmft_dof": ddof, "sim": {}}
        if dmft.meta.get("richardson") and key + "_disc" in dmft:
            _, dd = _series(dmft, key, index, "_disc")
            entry["dt_disc"] = dd[:K]
        if dt_check is not None:
            cv, ce = _series(dt_check, key, index, "_err")
            if cv is not None:
                bias = np.full(K, np.nan)
                berr = np.full(K, np.nan)
                kk = np.arange(0, K, 2)
                kk = kk[kk // 2 < len(cv)]
                bias[kk] = cv[kk // 2] - dv[kk]
                berr[kk] = ce[kk // 2]
                entry["dt_bias"] = bias
                entry["dmft_corr"] = dv[:K] - bias
                entry["dmft_corr_err"] = np.sqrt(4.0 * de[:K] ** 2 + berr ** 2)
                entry["dmft_corr_dof"] = _min_dof([(4.0 * de[:K] ** 2, ddof), (berr ** 2, dmft_dof(dt_check))])
        for meth, res in sims.items():
            sv, se = _series(res, key, index, "_sem")
            if sv is None:
                continue
            sm = {"mean": sv[:K], "sem": se[:K], "dof": sim_dof(res),
                  "z": discrepancy(sv[:K], se[:K], dv[:K], de[:K])}
            byd = sims_by_d.get(meth) or {}
            if len(byd) >= 2:
                ds = sorted(byd)
                ser = [_series(byd[d_], key, index, "_sem") for d_ in ds]
                means = np.array([s_[0][:K] for s_ in ser])
                sems = np.array([s_[1][:K] for s_ in ser])
                dofs = [sim_dof(byd[d_]) for d_ in ds]
                sm["by_d"] = {d_: {"mean": means[i], "sem": sems[i], "dof": dofs[i]} for i, d_ in enumerate(ds)}
                fit = fit_inv_d(ds, means, sems, dofs)
                sm["extrap"] = {"mean": fit["a"], "sem": fit["a_se"], "dof": fit["a_dof"],
                                "fs_bias": fit["b"] / max(ds), "fs_bias_err": fit["b_se"] / max(ds)}
            entry["sim"][meth] = sm
        table["observables"][name] = entry
    return table


def table_columns(table: dict) -> tuple[list, list]:
    """Flat (header, columns) of the table: t, epochs, then per observable dmft, dmft_err,
    [dmft_dt0, dmft_dt0_err: the dt -> 0 correction], per method sim mean, sem, z and, with
    several d, [<method>_d<d>, <method>_d<d>_sem per size, <method>_dinf, <method>_dinf_sem]."""
    head = ["t"]
    cols = [table["t"]]
    if table.get("epochs") is not None:
        head.append("epochs")
        cols.append(table["epochs"])
    for name, e in table["observables"].items():
        head += [f"{name}_dmft", f"{name}_dmft_err"]
        cols += [e["dmft"], e["dmft_err"]]
        if e.get("dmft_corr") is not None:
            head += [f"{name}_dmft_dt0", f"{name}_dmft_dt0_err"]
            cols += [e["dmft_corr"], e["dmft_corr_err"]]
        for meth, s in e["sim"].items():
            head += [f"{name}_{meth}", f"{name}_{meth}_sem", f"{name}_{meth}_z"]
            cols += [s["mean"], s["sem"], s["z"]]
            for d_, b in (s.get("by_d") or {}).items():
                head += [f"{name}_{meth}_d{d_}", f"{name}_{meth}_d{d_}_sem"]
                cols += [b["mean"], b["sem"]]
            if s.get("extrap") is not None:
                head += [f"{name}_{meth}_dinf", f"{name}_{meth}_dinf_sem"]
                cols += [s["extrap"]["mean"], s["extrap"]["sem"]]
    return head, cols


def table_csv(table: dict) -> str:
    """The table as CSV text (one row per grid time; 'nan'/'inf' for missing/degenerate)."""
    head, cols = table_columns(table)
    lines = [",".join(head)]
    for row in zip(*cols):
        lines.append(",".join(f"{float(v):.10g}" for v in row))
    return "\n".join(lines) + "\n"


def result_warnings(sims_by_d: dict, dmft, dt_check=None) -> list:
    """Non-ok statuses and excluded (diverged) seeds, one line each."""
    out = []
    for meth, byd in sims_by_d.items():
        for d_, res in sorted(byd.items()):
            tag = f"simulation ({meth}" + (f", d={d_})" if len(byd) > 1 else ")")
            if not res.ok:
                out.append(f"{tag} {res.status}: {res.message}")
            elif res.meta.get("diverged_seeds"):
                out.append(f"{tag}: {res.message}")
    for what, r in (("DMFT solver", dmft), ("DMFT time-step check (2 dt)", dt_check)):
        if r is not None and not r.ok:
            out.append(f"{what} {r.status}: {r.message}")
    return out


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------
def _d_list(d):
    ds = [d] if np.ndim(d) == 0 else list(d)
    try:
        ds = sorted({int(x) for x in ds})
    except (TypeError, ValueError):
        raise SettingsError(f"--d {d!r}: give one size or a comma-separated list, e.g. 512,1024,2048.") from None
    if not ds:
        raise SettingsError("--d: give at least one size.")
    return ds


def compare(model, settings, *, d=1024, seeds=8, methods=("sgd",), batch=None, eta=None,
            paths=20000, dmft_method=None, progress=False, sims=None, dmft=None, dt_bias="auto",
            richardson=False, dt_check=None, level=LEVEL, allow_outside_theory=False) -> Comparison:
    """Simulate (each method, each size) and solve the DMFT on ``settings.times``; compare.

    Parameters
    ----------
    model : Model
    settings : Settings
    d : int or sequence of int
        Simulation dimension(s). Several sizes: every curve is extrapolated to d -> infinity by
        the weighted fit x(d) = a + b/d, and the verdict is based on a.
    seeds : int
        Independent runs per size (>= 2 for an error bar; 1 gives the verdict "n/a").
    methods : tuple of {"sgd", "sgf"}
    batch, eta : SGD minibatch size and learning rate (tau = eta / B); default B = 1.
    paths : int
        Monte Carlo paths of the DMFT solver (default error bars: 8 replicas of paths/8).
    dmft_method : {"sweep", "fixed-point"}, optional
        Default "sweep" (exact at every tau, docs/theory.md section 8).
    dt_bias : {"auto", "off"}
        "auto": with SGD, also solve at 2 dt on coupled noise (about a quarter of the cost) to
        estimate the DMFT's O(dt) bias f(2dt) - f(dt) and to test 2 f(dt) - f(2dt) (dt -> 0).
    richardson : bool
        DMFT = 2 f(dt/2) - f(dt) (``dmftgen.dmft.richardson``; replaces the 2 dt check).
    sims, dmft, dt_check : precomputed Results (skip the runs; used by tests). ``sims`` maps a
        method to a Result or to {d: Result}.
    level : float
        Family-wise false-alarm rate of the verdict (default 1 %).

    Returns
    -------
    Comparison
    """
    from .codegen import load_kernels

    methods = tuple(dict.fromkeys(methods))
    for meth in methods:
        if meth not in ("sgd", "sgf"):
            raise SettingsError(f"unknown simulation method `{meth}`; use sgd, sgf or both.")
    if "sgd" in methods and settings.tau == 0:
        raise SettingsError("SGD needs tau = eta/B > 0; at tau = 0 compare gradient flow with --method sgf.")
    if dt_bias not in ("auto", "off"):
        raise SettingsError(f"--dt-bias {dt_bias!r}: use auto or off.")
    if not 0.0 < float(level) < 0.5:
        raise SettingsError(f"--level {level}: use a false-alarm rate in (0, 0.5), e.g. 0.01.")
    ds = _d_list(d)
    kern = load_kernels(model)
    from .dmft.assumptions import require_theory

    require_theory(model, kern, allow_outside_theory)  # before any simulation
    p = model.param_vector(settings.params)
    dmain = ds[-1]
    n = int(round(settings.delta * dmain))
    if dmft_method is None:
        dmft_method = "sweep"  # exact at every tau (QR sampler near tau = 0)
    opts = {"d": dmain, "d_list": ds, "n": n, "seeds": seeds, "methods": list(methods), "batch": batch,
            "eta": eta, "paths": paths, "dmft_method": dmft_method, "dt": settings.dt,
            "richardson": bool(richardson), "dt_bias": dt_bias, "level": level}
    wall = {}
    by_d = {}
    for meth, r in dict(sims or {}).items():
        by_d[meth] = dict(r) if isinstance(r, dict) else {dmain: r}
    for meth in methods:
        if meth in by_d:
            continue
        from .sim import simulate

        by_d[meth] = {}
        for j, d_ in enumerate(ds):
            t0 = time.perf_counter()
            # several sizes: independent draws per size (the fit's errors assume independence);
            # the largest d keeps settings.seed (the single-d run's numbers)
            st_d = settings if d_ == dmain else settings.replace(seed=settings.seed + SIZE_SEED_STRIDE * (len(ds) - 1 - j))
            by_d[meth][d_] = simulate(model, st_d, d=d_, seeds=seeds, method=meth,
                                      batch=batch if meth == "sgd" else None,
                                      eta=eta if meth == "sgd" else None, progress=progress)
            if by_d[meth][d_].status == "interrupted":  # Ctrl-C: stop now, write nothing (exit 130)
                raise KeyboardInterrupt
            wall[f"sim_{meth}" + (f"_d{d_}" if len(ds) > 1 else "")] = time.perf_counter() - t0
    sims = {meth: byd[max(byd)] for meth, byd in by_d.items()}
    if sims:  # precomputed results define the sizes
        ds = sorted({d_ for byd in by_d.values() for d_ in byd})
        dmain = ds[-1]
        n = int(round(settings.delta * dmain))
        opts.update(d=dmain, d_list=ds, n=n)
    if "sgd" in sims:
        opts["batch"] = sims["sgd"].meta.get("batch", batch)
        opts["eta"] = sims["sgd"].meta.get("eta", eta)
    from .dmft import solve

    if dmft is None:
        t0 = time.perf_counter()
        dmft = solve(model, settings, paths=paths, method=dmft_method, progress=progress,
                     richardson=bool(richardson), allow_outside_theory=allow_outside_theory)
        if dmft.status == "interrupted":
            raise KeyboardInterrupt
        wall["dmft"] = time.perf_counter() - t0
    if (dt_check is None and "sgd" in sims and dt_bias == "auto" and not richardson
            and settings.n_steps >= 2):
        # coupled companion solve at 2 dt: its noise is the main solve's, aggregated pairwise
        N2 = settings.n_steps // 2
        t0 = time.perf_counter()
        dt_check = solve(model, settings.replace(dt=2 * settings.dt, T=2 * settings.dt * N2),
                         paths=paths, method=dmft_method, progress=progress, refine=1)
        wall["dmft_2dt"] = time.perf_counter() - t0
    if dt_check is not None and not dt_check.ok:
        opts["dt_check_status"] = f"the 2 dt solve is {dt_check.status}; see the status lines"
    elif dt_check is None and "sgd" in sims and dt_bias == "auto" and not richardson:
        opts["dt_check_status"] = "a single time step: no 2 dt grid"
    warn = assumption_warnings(model, kern, settings, p, method="sgd" if "sgd" in sims else None,
                               batch=opts.get("batch"), n=n)
    warn += result_warnings(by_d, dmft, dt_check)
    multi = {meth: byd for meth, byd in by_d.items() if len(byd) >= 2}
    table = build_table(model, sims, dmft, list(kern.METRICS), sims_by_d=multi,
                        dt_check=dt_check if (dt_check is not None and dt_check.ok) else None)
    table["d"] = ds
    if settings.tau > 0:
        table["epochs"] = table["t"] / (settings.delta * settings.tau)
    N = len(table["t"]) - 1
    has_dt = any(e.get("dmft_corr") is not None for e in table["observables"].values())
    idx = tested_indices(N, even=has_dt)
    verdict = assess(table, idx, level)
    raw = assess(table, idx, level, uncorrected=True) if (has_dt or multi) else verdict
    if verdict["word"] == "DISAGREEMENT" and verdict["worst"] is not None:
        w = verdict["worst"]
        warn.append(f"{w['obs']}: simulation ({w['method']}) and DMFT differ by t = {w['tstat']:+.1f} "
                    f"combined standard errors at t = {w['t']:g} (p = {w['p']:.2g} before the "
                    f"Bonferroni factor {verdict['K']}); see the error budget for the likely cause.")
    cmp = Comparison(model=model, settings=settings, sims=sims, dmft=dmft, table=table, warnings=warn,
                     options=opts, wall=wall, sims_by_d=by_d, dt_check=dt_check, verdict=verdict,
                     raw_verdict=raw)
    cmp.summary = summary_text(cmp)
    cmp.label()
    return cmp


# ----------------------------------------------------------------------------------------------
# Summary, figure, files
# ----------------------------------------------------------------------------------------------
def _fmt(v, e):
    if not np.isfinite(v):
        return "nan"
    if not np.isfinite(e) or e == 0:
        return f"{v:.4g}"
    return f"{v:.4g} ± {e:.2g}"


def _na_reason(cmp) -> str:
    S = [r.meta.get("seeds_used", r.meta.get("seeds")) for byd in cmp.sims_by_d.values() for r in byd.values()]
    if any(s is not None and s < 2 for s in S):
        return "a single seed gives no simulation error bar: nothing is tested; use --seeds >= 2"
    return "no testable point (missing error bars, or every tested point exact)"


def verdict_what(cmp) -> str:
    """What the verdict compares, in words."""
    o = cmp.options
    sim = ("simulation at d -> infinity (fit in 1/d)" if len(o.get("d_list", [])) > 1
           else f"simulation at d = {o['d']}")
    if o.get("richardson"):
        dm = "DMFT Richardson 2 f(dt/2) - f(dt)"
    elif any(e.get("dmft_corr") is not None for e in cmp.table["observables"].values()):
        dm = "DMFT at dt -> 0 for SGD (2 f(dt) - f(2dt))" + (", at dt for SGF" if "sgf" in cmp.sims else "")
    else:
        dm = "DMFT at dt"
    return f"{sim} vs {dm}"


def summary_text(cmp: Comparison) -> str:
    """One screen: settings, final values, the verdict with its level and p-value, the error
    budget by source, hints, statuses and warnings."""
    s, o, tab = cmp.settings, cmp.options, cmp.table
    t = tab["t"]
    methods = list(cmp.sims)
    params = ", ".join(f"{k}={v:g}" for k, v in zip(cmp.model.param_names, cmp.model.param_vector(s.params)))
    dl = o.get("d_list") or [o["d"]]
    lines = [f"dmftgen compare {cmp.model.name}: simulation ({', '.join(methods)}) vs DMFT",
             f"  delta={s.delta:g} tau={s.tau:g} lam={s.lam:g} T={s.T:g} dt={s.dt:g} seed={s.seed}"
             + (f"  params: {params}" if params else ""),
             f"  d={','.join(map(str, dl))} n={o['n']} seeds={o['seeds']}"
             + (f" SGD B={o['batch']} eta={o['eta']:g}" if "sgd" in methods and o.get("eta") else "")
             + f"  DMFT paths={o['paths']} ({o['dmft_method']}, {cmp.dmft.meta.get('replicas', 1)} replicas)"]
    if len(t):
        ep = f" (epochs {t[-1] / (s.delta * s.tau):.3g})" if s.tau > 0 else ""
        lines.append(f"  time t = k*eta/d in [0, {t[-1]:g}]{ep}; z = |sim - dmft| / sqrt(sem^2 + err^2) "
                     "(raw, every grid time)")
    v = cmp.verdict
    worst = {}
    for r in v.get("tests", []):
        key = (r["obs"], r["method"])
        if np.isfinite(r["p"]) and (key not in worst or r["p"] < worst[key]["p"]):
            worst[key] = r
    head = f"  {'observable':<12} {'DMFT(T)':>18} " + " ".join(
        f"{m.upper() + '(T)':>18} {'max z':>6} {'|t|':>6} {'p':>7}" for m in methods)
    lines += ["", head]
    for name, e in tab["observables"].items():
        row = f"  {name:<12} {_fmt(e['dmft'][-1], e['dmft_err'][-1]):>18} "
        for meth in methods:
            sm = e["sim"].get(meth)
            if sm is None:
                row += f"{'-':>18} {'-':>6} {'-':>6} {'-':>7} "
                continue
            z = sm["z"][1:] if len(sm["z"]) > 1 else sm["z"]
            zmax = float(np.nanmax(z)) if np.isfinite(z).any() or np.isinf(z).any() else np.nan
            w = worst.get((name, meth))
            tcol = f"{abs(w['tstat']):>6.2f} {w['p']:>7.2g}" if w else f"{'n/a':>6} {'n/a':>7}"
            row += f"{_fmt(sm['mean'][-1], sm['sem'][-1]):>18} {zmax:>6.2f} {tcol} "
        lines.append(row.rstrip())
    lines += ["", "  (|t|, p: the worst tested time per observable; p before the Bonferroni factor)", ""]
    what = verdict_what(cmp)
    lines.append("  " + (verdict_line(v, what) if v.get("K") else f"verdict: n/a ({_na_reason(cmp)})"))
    rv = cmp.raw_verdict
    if rv is not v and rv.get("K"):
        lines.append(f"  without the extrapolations (DMFT at dt vs the largest d): {rv['word']} "
                     f"(p = {rv['p']:.2g})")
    if v.get("K"):
        lines.append(f"  (the false-alarm rate of DISAGREEMENT is at most {100 * v.get('level', LEVEL):g} % "
                     "for unbiased theory and simulation)")
        lines += [""] + ["  " + x for x in budget_lines(v, o)]
    stat = [f"DMFT solver: {cmp.dmft.status}" + (f": {cmp.dmft.message}" if cmp.dmft.message else "")]
    if cmp.dt_check is not None and not cmp.dt_check.ok:
        stat.append(f"DMFT 2 dt check: {cmp.dt_check.status}: {cmp.dt_check.message}")
    for meth, byd in cmp.sims_by_d.items():
        for d_, r in sorted(byd.items()):
            if not r.ok or r.meta.get("diverged_seeds"):
                stat.append(f"simulation {meth} d={d_}: {r.status}" + (f": {r.message}" if r.message else ""))
    if not cmp.dmft.ok or len(stat) > 1:
        lines += [""] + [f"  status: {x}" for x in stat]
    if cmp.wall:
        lines.append("  wall time: " + ", ".join(f"{k} {v_:.1f}s" for k, v_ in cmp.wall.items()))
    if cmp.warnings:
        lines.append("")
        lines += [f"  WARNING: {w}" for w in cmp.warnings]
    return "\n".join(lines) + "\n"


def render_figure(cmp: Comparison) -> bytes:
    """PNG bytes of the figure (:func:`dmftgen.analysis.figure.render`)."""
    from .analysis.figure import render

    return render(cmp)


def table_json(cmp: Comparison) -> str:
    v = cmp.verdict
    payload = {
        "model": cmp.model.name,
        "settings": cmp.settings.as_dict(),
        "options": cmp.options,
        "t": cmp.table["t"],
        "epochs": cmp.table.get("epochs"),
        "observables": {nm: {k: (val if k != "sim" else {m: {kk: (vv if kk != "by_d" else
                                                                    {str(d_): b for d_, b in vv.items()})
                                                             for kk, vv in s.items()}
                                                         for m, s in val.items()})
                             for k, val in e.items()} for nm, e in cmp.table["observables"].items()},
        "verdict": {k: v.get(k) for k in ("word", "p", "K", "level", "times", "worst", "budget", "tests")},
        "verdict_uncorrected": {k: cmp.raw_verdict.get(k) for k in ("word", "p", "K")},
        "warnings": cmp.warnings,
        "status": {"dmft": cmp.dmft.status, **{f"sim_{m}": r.status for m, r in cmp.sims.items()}},
        "wall_s": cmp.wall,
        "z_note": "z = |sim - dmft| / sqrt(sem^2 + err^2); 'inf' where both errors vanish but values differ; "
                  "the verdict: Bonferroni over Welch t tests (dmftgen.analysis.verdict)",
    }
    return json.dumps(jsonable(payload, keep_inf=True), indent=1, allow_nan=False)


FILES = ("figure.png", "table.csv", "table.json", "summary.txt")


def write_outputs(cmp: Comparison, out_dir) -> dict:
    """Write figure.png, table.csv, table.json, summary.txt, sim_<method>[_d<d>].npz, dmft.npz
    [and dmft_2dt.npz].

    Every payload is produced in memory first; the directory is then replaced as a unit
    (written into a temporary directory beside it, then swapped in: dmftgen._io.replace_dir), so
    a failure at any point leaves an earlier run's set of files whole and never a mix.
    """
    from pathlib import Path

    from ._io import replace_dir

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SettingsError(f"--out {out} exists and is not a directory.")
    payloads = {
        "figure.png": render_figure(cmp),
        "table.csv": table_csv(cmp.table).encode(),
        "table.json": table_json(cmp).encode(),
        "summary.txt": cmp.summary.encode(),
    }
    results = [(f"sim_{m}.npz", r) for m, r in cmp.sims.items()]
    for m, byd in cmp.sims_by_d.items():
        if len(byd) > 1:
            results += [(f"sim_{m}_d{d_}.npz", r) for d_, r in sorted(byd.items()) if r is not cmp.sims[m]]
    results.append(("dmft.npz", cmp.dmft))
    if cmp.dt_check is not None:
        results.append(("dmft_2dt.npz", cmp.dt_check))
    for name, res in results:
        payloads[name] = res.to_bytes(".npz")
    return replace_dir(out, payloads)
