"""The figure of ``dmftgen compare``: curves, errors, extrapolations, the verdict and its level.

Panels: loss (train, test), one per declared metric, overlaps Q and M. At m >= 3 the overlap
panel shows averages over exchangeable student units: mean_a Q_aa ("Q diag"), mean_{a<b} Q_ab
("Q off") and mean_a M_aj per teacher column (their error bars: the mean of the entries' errors,
an upper bound for positively correlated entries). Lines: DMFT (band +- 2 Monte Carlo s.e.;
dashed: the dt -> 0 correction with SGD); markers: simulation mean +- 2 s.e. (hollow: the largest
d, small filled: the other sizes); dotted: the d -> infinity fit. Grey verticals: tested times.
"""
from __future__ import annotations

import io
import math

import numpy as np

_PANEL_TITLES = {"loss": "loss", "overlaps": r"overlaps $Q=\theta^\top\theta/d$, $M=\theta^\top\theta^*/d$"}
_OVERLAP_COLOURS = ("C2", "C4", "C1", "C5", "C6", "C8", "C9", "C7")  # never the train/test C0/C3
_MARKERS = {"sgd": "o", "sgf": "^"}


def _avg(entries, key, sub=None):
    """Mean over entries of a curve (optionally a nested key path)."""
    arrs = []
    for e in entries:
        v = e
        for k in ([key] if sub is None else [*sub, key]):
            v = v.get(k) if isinstance(v, dict) else None
            if v is None:
                return None
        arrs.append(np.asarray(v, dtype=float))
    return np.mean(arrs, axis=0)


def _merge(entries, methods):
    """One display entry averaging ``entries`` (same structure as a table entry)."""
    out = {"dmft": _avg(entries, "dmft"), "dmft_err": _avg(entries, "dmft_err"), "sim": {}}
    if all(e.get("dmft_corr") is not None for e in entries):
        out["dmft_corr"] = _avg(entries, "dmft_corr")
    for meth in methods:
        if not all(meth in e["sim"] for e in entries):
            continue
        sims = [e["sim"][meth] for e in entries]
        sm = {"mean": _avg(sims, "mean"), "sem": _avg(sims, "sem")}
        if all(s.get("by_d") for s in sims):
            sm["by_d"] = {d: {"mean": _avg([s["by_d"][d] for s in sims], "mean"),
                              "sem": _avg([s["by_d"][d] for s in sims], "sem")} for d in sims[0]["by_d"]}
        if all(s.get("extrap") is not None for s in sims):
            sm["extrap"] = {"mean": _avg([s["extrap"] for s in sims], "mean"),
                            "sem": _avg([s["extrap"] for s in sims], "sem")}
        out["sim"][meth] = sm
    return out


def display_curves(model, table, methods, panel):
    """[(label, entry)] for one panel; exchangeable units averaged in the overlap panel at m >= 3."""
    obs = table["observables"]
    names = [nm for nm, e in obs.items() if e["panel"] == panel]
    if panel != "overlaps" or model.m < 3:
        return [(nm.replace("_", " "), obs[nm]) for nm in names]
    m, k = model.m, model.k
    groups = [("Q diag (mean over a)", [f"Q{a}{a}" for a in range(m)]),
              ("Q off-diag (mean over a<b)", [f"Q{a}{b}" for a in range(m) for b in range(a + 1, m)])]
    groups += [(f"M, teacher {j} (mean over a)", [f"M{a}{j}" for a in range(m)]) for j in range(k)]
    out = []
    for label, keys in groups:
        ents = [obs[x] for x in keys if x in obs]
        if ents:
            out.append((label, _merge(ents, methods)))
    return out


def render(cmp) -> bytes:
    """PNG bytes of the comparison figure (object-oriented matplotlib, imported lazily; no pyplot, so
    the caller's backend is never switched)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    tab, s, o = cmp.table, cmp.settings, cmp.options
    t = tab["t"]
    methods = list(cmp.sims)
    panels = list(dict.fromkeys(e["panel"] for e in tab["observables"].values()))
    npan = len(panels)
    ncol = min(npan, 3)
    nrow = int(math.ceil(npan / ncol)) if npan else 1
    fig = Figure(figsize=(5.0 * ncol, 4.2 * nrow + 0.9), dpi=120)
    axes = [fig.add_subplot(nrow, ncol, i + 1) for i in range(max(npan, 1))]
    step = max(1, len(t) * len(methods) // 24)  # ~24 markers per curve keep the DMFT line visible
    dl = o.get("d_list") or [o["d"]]
    dmax = max(dl)
    tested = cmp.verdict.get("times", []) if cmp.verdict else []
    any_corr = any_fit = False
    for ax, panel in zip(axes, panels):
        handles = []
        curves = display_curves(cmp.model, tab, methods, panel)
        for i, (label, e) in enumerate(curves):
            if panel != "overlaps":
                col = "C0" if label.startswith("train") else "C3"
            else:
                col = _OVERLAP_COLOURS[i % len(_OVERLAP_COLOURS)]
            ax.plot(t, e["dmft"], "-", color=col, lw=1.8)
            err = np.nan_to_num(e["dmft_err"])
            if np.any(err > 0):
                ax.fill_between(t, e["dmft"] - 2 * err, e["dmft"] + 2 * err, color=col, alpha=0.25, lw=0)
            if e.get("dmft_corr") is not None:
                c = np.asarray(e["dmft_corr"])
                ok = np.isfinite(c)
                ax.plot(t[ok], c[ok], "--", color=col, lw=1.0)
                any_corr = True
            for j, meth in enumerate(methods):
                sm = e["sim"].get(meth)
                if sm is None:
                    continue
                # several methods: stagger their markers so that they do not hide each other
                sl = slice((j * step) // max(len(methods), 1), len(t), step)
                mk = _MARKERS.get(meth, "s")
                for d_, b in sorted((sm.get("by_d") or {}).items()):
                    if d_ == dmax:
                        continue
                    ax.errorbar(t[sl], b["mean"][sl], yerr=2 * np.nan_to_num(b["sem"][sl]), fmt=mk, ms=2.5,
                                color=col, alpha=0.5, elinewidth=0.7, capsize=0, ls="none")
                ax.errorbar(t[sl], sm["mean"][sl], yerr=2 * np.nan_to_num(sm["sem"][sl]),
                            fmt=mk, ms=4.5, mfc="white", mec=col, ecolor=col,
                            elinewidth=1, capsize=2, color=col, ls="none")
                if sm.get("extrap") is not None:
                    ax.plot(t, sm["extrap"]["mean"], ":", color=col, lw=1.4)
                    any_fit = True
            handles.append(Line2D([], [], color=col, lw=4, alpha=0.6, label=label))
        for x in tested:
            ax.axvline(x, color="0.8", lw=0.8, zorder=0)
        # one legend entry per observable (colour) plus one per source, drawn in the same styles
        g = "0.25"
        handles.append((Patch(color=g, alpha=0.25, lw=0), Line2D([], [], color=g, lw=1.8)))
        labels = [h.get_label() for h in handles[:-1]] + ["DMFT (band ± 2 MC s.e.)"]
        if any_corr:
            handles.append(Line2D([], [], color=g, ls="--", lw=1.0))
            labels.append("DMFT dt → 0: 2f(dt) − f(2dt)")
        for meth in methods:
            mk = _MARKERS.get(meth, "s")
            handles.append(ax.errorbar([np.nan], [np.nan], yerr=[1.0], fmt=mk, ms=4.5, mfc="white", mec=g,
                                       ecolor=g, elinewidth=1, capsize=2, color=g, ls="none"))
            labels.append(f"{meth.upper()} d={dmax}, {o['seeds']} seeds (± 2 s.e.)")
            others = [d_ for d_ in dl if d_ != dmax]
            if others and any(e["sim"].get(meth, {}).get("by_d") for _, e in curves):
                handles.append(ax.errorbar([np.nan], [np.nan], yerr=[1.0], fmt=mk, ms=2.5, color=g, alpha=0.5,
                                           elinewidth=0.7, capsize=0, ls="none"))
                labels.append(f"{meth.upper()} d={','.join(map(str, others))}")
            if any_fit:
                handles.append(Line2D([], [], color=g, ls=":", lw=1.4))
                labels.append(f"{meth.upper()} d → ∞ (weighted fit in 1/d)")
        ax.set_title(_PANEL_TITLES.get(panel, f"{panel} (declared metric)"), fontsize=10)
        if "sgd" in methods:
            ax.set_xlabel(r"$t = k\eta/d$  (SGD step $k$, learning rate $\eta$)")
        else:
            ax.set_xlabel(r"time $t$  (SGF grid $t_k = k\,\Delta t$)")
        ax.set_ylabel(panel if panel != "overlaps" else "overlap")
        ax.grid(True, alpha=0.3)
        ax.legend(handles=handles, labels=labels, fontsize=7, loc="best", framealpha=0.85,
                  ncol=2 if len(handles) > 7 else 1)
        if s.tau > 0:
            f = s.delta * s.tau
            sec = ax.secondary_xaxis("top", functions=(lambda x, f=f: x / f, lambda e_, f=f: e_ * f))
            sec.set_xlabel(r"epochs $= t/(\delta\tau) = kB/n$", fontsize=8)
            sec.tick_params(labelsize=7)
    params = ", ".join(f"{k}={v:g}" for k, v in zip(cmp.model.param_names, cmp.model.param_vector(s.params)))
    sgd = f", SGD B={o.get('batch')} η={o.get('eta'):g}" if "sgd" in methods and o.get("eta") else ""
    v = cmp.verdict or {}
    if v.get("K"):
        word = {"agreement": "agreement", "marginal": "agreement (marginal)",
                "DISAGREEMENT": "DISAGREEMENT"}[v["word"]]
        vtxt = (f"verdict: {word} at the {100 * v['level']:g} % level (p = {v['p']:.2g}, Bonferroni over "
                f"{v['K']} tests at the grey times)")
    elif v.get("not_tested"):
        vtxt = "verdict: n/a (" + "; ".join(v["not_tested"]) + ": not tested)"
    else:
        vtxt = "verdict: n/a (no simulation error bar: use --seeds >= 2)"
    fig.suptitle(f"{cmp.model.name}: simulation vs DMFT   δ=n/d={s.delta:g}, τ=η/B={s.tau:g}, λ={s.lam:g}, "
                 f"Δt={s.dt:g}, d={','.join(map(str, dl))}, n={o['n']}{sgd}, DMFT paths={o['paths']}"
                 + (f"; {params}" if params else "") + "\n" + vtxt, fontsize=9.5,
                 color="C3" if v.get("word") == "DISAGREEMENT" else "black")
    fig.text(0.5, 0.005, "markers: simulation mean ± 2 s.e. over seeds;  lines: DMFT, band ± 2 Monte Carlo "
             "s.e.;  t = kη/d (SGD step k, learning rate η), epochs = t/(δτ); error budget in summary.txt"
             + ("   [WARNINGS: see summary.txt]" if cmp.warnings else ""),
             ha="center", va="bottom", fontsize=8, color="0.25" if not cmp.warnings else "C3")
    fig.tight_layout(rect=(0, 0.03, 1, 0.93))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
