r"""The verdict of ``dmftgen compare``: one family of Welch t tests, its error budget and hints.

What is tested
--------------
The targets are the two limits the theory is about: the simulation at d -> infinity (the fit in
1/d when several sizes were simulated, else the largest d) against the DMFT at dt -> 0 when the
simulation is SGD (the DMFT at dt is first order in dt; with a companion solve at 2 dt,
f(0) ~ 2 f(dt) - f(2 dt), or ``--richardson``), or at the same dt when the simulation is the
Euler--Maruyama SGF (the DMFT is its exact d -> infinity limit).

The tests are every scalar observable at ``N_TIMES`` well-separated grid times t_k = k T / 4
(k = 1..4; t = 0 and other points where both sides are exact are never tested: nothing random is
compared there). Each is a Welch t test (:func:`dmftgen.analysis.stats.welch`); the family p-value
is Bonferroni's min(1, K min p), so P(DISAGREEMENT | no bias) <= level (default 1 %) whatever the
correlation between the K tests.

Error budget
------------
At the tested points, in units of the combined standard error s.e. = sqrt(sem^2 + err^2):

* Monte Carlo: the s.e. itself (also as a fraction of the value) and the share of the simulation;
* time step: the first-order bias f(dt) - f(0) ~ f(2 dt) - f(dt) of the DMFT against SGD (whose
  step eta/d is tiny), or the correction removed by Richardson;
* finite size: b / d at the largest d from the fit x(d) = a + b/d (several d), else unmeasured.

The hints list the sources by size, largest first, with what to change.
"""
from __future__ import annotations

import numpy as np

from .stats import LEVEL, bonferroni, verdict_word, welch

__all__ = ["tested_indices", "assess", "budget_lines", "N_TIMES"]

#: number of well-separated tested times (k N / N_TIMES, k = 1..N_TIMES).
N_TIMES = 4


def tested_indices(N: int, n: int = N_TIMES, even: bool = False) -> list:
    """Grid indices round(j N / n), j = 1..n, unique and > 0 (t = 0 is exact: never tested).

    ``even``: restrict to even indices (points of the 2 dt grid of the time-step check).
    """
    out = []
    for j in range(1, n + 1):
        k = j * N / n
        k = 2 * int(round(k / 2)) if even else int(round(k))
        if 0 < k <= N and k not in out:
            out.append(k)
    return out


def _targets(entry, meth):
    """(x, sx, nux) of the simulation and (y, sy, nuy) of the DMFT that the verdict compares."""
    sm = entry["sim"][meth]
    ex = sm.get("extrap")
    if ex is not None:
        x, sx, nux = ex["mean"], ex["sem"], ex["dof"]
    else:
        x, sx, nux = sm["mean"], sm["sem"], sm["dof"]
    if meth == "sgd" and entry.get("dmft_corr") is not None:
        y, sy, nuy = entry["dmft_corr"], entry["dmft_corr_err"], entry["dmft_corr_dof"]
    else:
        y, sy, nuy = entry["dmft"], entry["dmft_err"], entry["dmft_dof"]
    return (np.asarray(x, float), np.asarray(sx, float), nux), (np.asarray(y, float), np.asarray(sy, float), nuy)


def assess(table: dict, idx, level: float = LEVEL, uncorrected: bool = False) -> dict:
    """The family test over ``idx`` (grid indices) for every observable and method.

    Parameters
    ----------
    table : dict
        ``dmftgen.comparison.build_table`` output (with ``extrap`` / ``dmft_corr`` where available).
    idx : list of int
        Tested grid indices.
    level : float
        Family-wise false-alarm rate of DISAGREEMENT.
    uncorrected : bool
        Compare the DMFT at dt (not the dt -> 0 correction) and the largest d (not the fit).

    Returns
    -------
    dict: ``tests`` (list of dicts: obs, method, k, t, x, sx, y, sy, tstat, dof, p, zn),
    ``K``, ``p`` (family), ``word``, ``level``, ``worst`` (the test with the smallest p) and
    ``budget`` (see module docstring).
    """
    t = table["t"]
    idx = [k for k in idx if k < len(t)]
    tests = []
    for name, e in table["observables"].items():
        for meth, sm in e["sim"].items():
            if uncorrected:
                (x, sx, nux), (y, sy, nuy) = ((np.asarray(sm["mean"]), np.asarray(sm["sem"]), sm["dof"]),
                                              (np.asarray(e["dmft"]), np.asarray(e["dmft_err"]), e["dmft_dof"]))
            else:
                (x, sx, nux), (y, sy, nuy) = _targets(e, meth)
            def pick(a):
                return a if np.ndim(a) == 0 else np.asarray(a, dtype=float)[idx]

            w = welch(x[idx], sx[idx], pick(nux), y[idx], sy[idx], pick(nuy))
            for j, k in enumerate(idx):
                rec = {"obs": name, "method": meth, "k": int(k), "t": float(t[k]),
                       "x": float(x[k]), "sx": float(sx[k]), "y": float(y[k]), "sy": float(sy[k]),
                       "tstat": float(w["t"][j]), "dof": float(w["dof"][j]), "p": float(w["p"][j]),
                       "zn": float(w["zn"][j])}
                rec["budget"] = _point_budget(e, sm, meth, k, rec)
                tests.append(rec)
    p_fam, K = bonferroni([r["p"] for r in tests])
    finite = [r for r in tests if np.isfinite(r["p"])]
    worst = min(finite, key=lambda r: r["p"]) if finite else None
    out = {"tests": tests, "K": K, "p": p_fam, "word": verdict_word(p_fam, level), "level": level,
           "worst": worst, "times": [float(t[k]) for k in idx]}
    out["budget"] = _budget(table, tests)
    return out


def _point_budget(e, sm, meth, k, rec):
    se = float(np.hypot(rec["sx"], rec["sy"])) if np.isfinite(rec["sx"]) and np.isfinite(rec["sy"]) else np.nan
    b = {"se": se, "se_rel": se / abs(rec["y"]) if rec["y"] else np.nan,
         "sim_share": rec["sx"] ** 2 / se ** 2 if se and np.isfinite(se) else np.nan}
    if meth == "sgd":
        if e.get("dt_bias") is not None:
            b["dt"] = abs(float(e["dt_bias"][k]))
        elif e.get("dt_disc") is not None:
            b["dt_removed"] = abs(float(e["dt_disc"][k]))
    ex = sm.get("extrap")
    if ex is not None:
        b["fs"] = abs(float(ex["fs_bias"][k]))
    return b


def _budget(table, tests):
    """Largest size of each source over the tested points, in combined s.e. (with where)."""
    out = {}
    fin = [r for r in tests if np.isfinite(r["budget"]["se"]) and r["budget"]["se"] > 0]
    if not fin:
        return out
    rel = [r["budget"]["se_rel"] for r in fin if np.isfinite(r["budget"]["se_rel"])]
    share = [r["budget"]["sim_share"] for r in fin if np.isfinite(r["budget"]["sim_share"])]
    out["mc"] = {"size": 1.0, "rel_median": float(np.median(rel)) if rel else np.nan,
                 "rel_max": float(np.max(rel)) if rel else np.nan,
                 "sim_share": float(np.median(share)) if share else np.nan}
    for key in ("dt", "dt_removed", "fs"):
        rows = [r for r in fin if key in r["budget"] and np.isfinite(r["budget"][key])]
        if rows:
            w = max(rows, key=lambda r: r["budget"][key] / r["budget"]["se"])
            out[key] = {"size": w["budget"][key] / w["budget"]["se"], "obs": w["obs"], "t": w["t"],
                        "method": w["method"], "abs": w["budget"][key],
                        "rel": w["budget"][key] / abs(w["y"]) if w["y"] else np.nan}
    return out


def _fmt_p(p):
    return "n/a" if not np.isfinite(p) else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")


def verdict_line(v: dict, what: str) -> str:
    """"verdict: agreement at the 1 % level (p = 0.43; Bonferroni over K tests ...)"."""
    lev = f"{100 * v['level']:g} %"
    if v["K"] == 0:
        return f"verdict: n/a ({what})"
    head = {"agreement": f"agreement at the {lev} level",
            "marginal": f"agreement at the {lev} level, marginal (p < {100 * 5 * v['level']:g} %)",
            "DISAGREEMENT": f"DISAGREEMENT at the {lev} level"}[v["word"]]
    w = v["worst"]
    return (f"verdict: {head} (p = {_fmt_p(v['p'])}: Bonferroni over {v['K']} Welch t tests at t = "
            f"{', '.join(f'{x:g}' for x in v['times'])}; {what}; smallest p at {w['obs']} "
            f"({w['method']}) t = {w['t']:g}, t-stat {w['tstat']:+.2f} on {w['dof']:.3g} dof)")


def budget_lines(v: dict, opts: dict) -> list:
    """The error-budget block and the hints, as summary lines (without indentation)."""
    b = v["budget"]
    lines = ["error budget at the tested times (size in combined standard errors s.e. = "
             "sqrt(sem^2 + err^2)):"]
    if "mc" in b:
        mc = b["mc"]
        lines.append(f"  Monte Carlo   1 s.e. = {100 * mc['rel_median']:.2g} % of the value (median; up to "
                     f"{100 * mc['rel_max']:.2g} %), simulation share of the variance {100 * mc['sim_share']:.0f} %")
    srcs = []
    if "dt" in b:
        x = b["dt"]
        # SGD's own step eta/d is "tiny" only against dt (B = 1: eta/d = tau/d); a large --batch
        # or --eta makes it as coarse as the grid, and then its O(eta/d) bias is not measured here
        ds = opts.get("d_list") or [opts.get("d")]
        eta, dt = opts.get("eta"), opts.get("dt")
        step = eta / min(ds) if eta and all(ds) else None
        sgd = ("SGD steps eta/d are tiny" if step is None or not dt or step <= dt / 10 else
               f"SGD steps eta/d = {step:.3g} are not small against dt = {dt:g} (their own O(eta/d) bias is "
               "not measured)")
        lines.append(f"  time step     |f(2dt) - f(dt)| of the DMFT up to {x['size']:.2g} s.e. "
                     f"({100 * x['rel']:.2g} % of the value; {x['obs']} at t = {x['t']:g}); {sgd}: the "
                     "verdict uses the DMFT at dt -> 0, 2 f(dt) - f(2dt)")
        srcs.append(("time step", x["size"], f"a smaller --dt (e.g. {opts.get('dt', 0) / 2:g}) or --richardson"))
    elif "dt_removed" in b:
        x = b["dt_removed"]
        lines.append(f"  time step     removed by Richardson (correction |f(dt/2) - f(dt)| up to "
                     f"{x['size']:.2g} s.e., {x['obs']} at t = {x['t']:g}); remainder O(dt^2)")
    elif "sgd" in opts.get("methods", ()):
        why = opts.get("dt_check_status") or "--dt-bias off"
        lines.append(f"  time step     not measured ({why}): the DMFT at dt is biased by O(dt) "
                     "against SGD")
        srcs.append(("time step (not measured)", np.nan, "--dt-bias auto or --richardson"))
    else:
        lines.append("  time step     none: the SGF is simulated at the DMFT's dt (the DMFT is its "
                     "exact d -> infinity limit)")
    if "fs" in b:
        x = b["fs"]
        ds = opts.get("d_list") or [opts.get("d")]
        lines.append(f"  finite size   b/d at d = {max(ds)} up to {x['size']:.2g} s.e. "
                     f"({100 * x['rel']:.2g} % of the value; {x['obs']} at t = {x['t']:g}); fit x(d) = a + b/d "
                     f"over d = {', '.join(map(str, ds))}: the verdict uses a (d -> infinity)")
        srcs.append(("finite size", x["size"], "larger --d"))
    else:
        lines.append(f"  finite size   not measured (one d = {opts.get('d')}): O(1/d); "
                     "use e.g. --d 512,1024,2048 to fit and remove it")
        srcs.append(("finite size (not measured)", np.nan, "--d 512,1024,2048"))
    if v["word"] in ("marginal", "DISAGREEMENT"):
        # a measured source below 1 s.e. cannot explain a significant difference: left out
        meas = sorted([s for s in srcs if np.isfinite(s[1]) and s[1] >= 1.0], key=lambda s: -s[1])
        small = [s[0] for s in srcs if np.isfinite(s[1]) and s[1] < 1.0]
        unmeas = [s for s in srcs if not np.isfinite(s[1])]
        parts = [f"{n} ({sz:.2g} s.e.; try {fix})" for n, sz, fix in meas]
        parts += [f"{n} (try {fix})" for n, sz, fix in unmeas]
        if "sgd" in opts.get("methods", ()):
            parts.append("SGD vs SGF (higher cumulants of the minibatch noise, grow with tau; "
                         "try --method both)")
        parts.append("a model outside the theory (see the warnings)")
        lines.append("likely causes, largest first: " + "; ".join(parts) + "."
                     + (f" (Measured below 1 s.e., not a likely cause: {', '.join(small)}.)" if small else ""))
    return lines
