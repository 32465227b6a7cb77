"""The comparison's summary text: verdict, error budget, hints (see :mod:`dmftgen.comparison`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..analysis.stats import LEVEL
from ..analysis.verdict import budget_lines, verdict_line

if TYPE_CHECKING:  # annotations only
    from .run import Comparison


# ----------------------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------------------
def _fmt(v, e):
    if not np.isfinite(v):
        return "nan"
    if not np.isfinite(e) or e == 0:
        return f"{v:.4g}"
    return f"{v:.4g} ± {e:.2g}"


def _na_reason(cmp) -> str:
    bad = (cmp.verdict or {}).get("not_tested")
    if bad:
        return "; ".join(bad) + ": an invalid curve is not tested"
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


def _replicas(meta) -> str:
    """"8 replicas": a Richardson solve keeps them in the meta of its two solves (it read "1 replicas")."""
    r = meta.get("replicas")
    if r is None and isinstance(meta.get("fine"), dict):
        r = meta["fine"].get("replicas")
    r = int(r) if r is not None else 1
    return f"{r} replica{'s' if r != 1 else ''}" + (" per solve, Richardson dt and dt/2" if meta.get("richardson") else "")


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
             + f"  DMFT paths={o['paths']} ({o['dmft_method']}, {_replicas(cmp.dmft.meta)})"]
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
