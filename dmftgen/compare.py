r"""Theory against simulation: run SGD/SGF and the DMFT on one time grid, tabulate, plot, warn.

    cmp = compare(model, settings, d=1024, seeds=4, methods=("sgd",), paths=20000)
    cmp.summary            # one screen of text
    write_outputs(cmp, "out/figure1")   # figure.png, table.csv, table.json, summary.txt, *.npz

Normalised discrepancy.  For a scalar observable O (train/test loss, metrics, entries of Q and M)
at grid time t_k, the simulation gives a mean over seeds with standard error ``sem`` (finite-size
fluctuation, O((d seeds)^{-1/2})) and the solver a value with Monte Carlo error ``err``.  If both
estimated the same limit without bias, their difference would be approximately
N(0, sem^2 + err^2), so

.. math:: z_k = \frac{|O^{\rm sim}_k - O^{\rm dmft}_k|}{\sqrt{{\rm sem}_k^2 + {\rm err}_k^2}}

is a |N(0, 1)| variable. Over ~100 strongly correlated grid times, max_k z_k of a few (<~ 3-4) is
expected; larger values mean a systematic difference: finite-size bias (O(1/d)), SGD against SGF
(higher cumulants of the minibatch noise, grows with tau), or a model outside the theory.

Assumption checks (printed and recorded, never silent; math.md 1.5):

* ell not globally Lipschitz in r, or its Jacobian not Lipschitz (A2): sup |grad_r ell| and a
  finite-difference Hessian bound on growing probe boxes |r_a| <= R, R = 1, 4, 16, 64;
* tau at or beyond the stability limit: the Volterra criterion of
  :func:`dmftgen.reference.volterra.critical_tau` applied to the linearisation with slope c
  (exact for affine ell, c = ||grad ell||: ell = c (r - y) is linear regression in the time
  t' = c t with tau' = c tau, lam' = lam / c, dt' = c dt; for nonlinear ell a heuristic with the
  typical slope c = ||E grad ell|| over the probes);
* labels discontinuous in the teacher field (formally outside A2; the solver uses the Stein route);
* runs that diverged or did not converge (``status``), non-finite values, large minibatches.
"""
from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import SettingsError
from .results import jsonable

__all__ = ["Comparison", "compare", "assumption_warnings", "observable_list", "discrepancy",
           "build_table", "summary_text", "table_csv", "render_figure", "write_outputs", "Z_AGREE"]

#: max normalised discrepancy still called "agreement within errors" in the summary (see module
#: docstring: the max of ~100 correlated |N(0,1)| values rarely exceeds 4).
Z_AGREE = 4.0
#: beyond this the summary also raises a warning.
Z_WARN = 6.0


@dataclass
class Comparison:
    """Everything ``compare`` produced; ``write_outputs`` turns it into files."""

    model: object
    settings: object
    sims: dict                  # method -> Result
    dmft: object                # Result
    table: dict                 # see build_table
    warnings: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    wall: dict = field(default_factory=dict)
    summary: str = ""


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

    Missing error estimates (NaN, e.g. a single seed) count as 0. Where both errors vanish
    (e.g. t = 0 with theta^0 = 0: both sides are exact) z is 0 if the values agree to round-off
    (1e-9 relative) and inf otherwise.
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


def build_table(model, sims: dict, dmft, metrics) -> dict:
    """Both curves with their errors and z on the common grid.

    Returns
    -------
    dict
        ``t`` (K,), ``epochs`` (K,) or None, and ``observables``: name -> {"panel", "dmft",
        "dmft_err", "sim": {method: {"mean", "sem", "z"}}}; only observables present and finite
        somewhere in the DMFT result are kept.
    """
    t_d = np.asarray(dmft.t, dtype=float)
    K = len(t_d)
    for res in sims.values():
        K = min(K, len(res.t))
    t = t_d[:K]
    for meth, res in sims.items():
        if K and np.max(np.abs(np.asarray(res.t[:K]) - t)) > 1e-9 * max(1.0, t[-1]):
            raise SettingsError(f"internal: the {meth} simulation and the DMFT use different time grids.")
    table = {"t": t, "observables": {}}
    for name, key, index, panel in observable_list(model, metrics):
        dv, de = _series(dmft, key, index, "_err")
        if dv is None or not np.isfinite(dv[:K]).any():
            continue
        entry = {"panel": panel, "dmft": dv[:K], "dmft_err": de[:K], "sim": {}}
        for meth, res in sims.items():
            sv, se = _series(res, key, index, "_sem")
            if sv is None:
                continue
            entry["sim"][meth] = {"mean": sv[:K], "sem": se[:K],
                                  "z": discrepancy(sv[:K], se[:K], dv[:K], de[:K])}
        table["observables"][name] = entry
    return table


def table_columns(table: dict) -> tuple[list, list]:
    """Flat (header, columns) of the table: t, epochs, then per observable dmft, dmft_err and,
    per method, sim mean, sem and z."""
    head = ["t"]
    cols = [table["t"]]
    if table.get("epochs") is not None:
        head.append("epochs")
        cols.append(table["epochs"])
    for name, e in table["observables"].items():
        head += [f"{name}_dmft", f"{name}_dmft_err"]
        cols += [e["dmft"], e["dmft_err"]]
        for meth, s in e["sim"].items():
            head += [f"{name}_{meth}", f"{name}_{meth}_sem", f"{name}_{meth}_z"]
            cols += [s["mean"], s["sem"], s["z"]]
    return head, cols


def table_csv(table: dict) -> str:
    """The table as CSV text (one row per grid time; 'nan'/'inf' for missing/degenerate)."""
    head, cols = table_columns(table)
    lines = [",".join(head)]
    for row in zip(*cols):
        lines.append(",".join(f"{float(v):.10g}" for v in row))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Assumption checks
# ----------------------------------------------------------------------------------------------
def _probe_inputs(model, p, n, rng):
    m, k = model.m, model.k
    u = rng.uniform(-1.0, 1.0, size=(n, m))
    u[: min(n, 2 * m)] = 0.0
    for a in range(min(m, n // 2)):  # the box corners along the axes (where growth shows first)
        u[2 * a, a], u[2 * a + 1, a] = 1.0, -1.0
    std = model.teacher_std_value(p)
    s = std * rng.standard_normal((n, k))
    z = np.empty((n, len(model.noise)))
    for j, law in enumerate(model.noise.values()):
        z[:, j] = law.sample(rng, n)
    return u, np.ascontiguousarray(s), np.ascontiguousarray(z)


def lipschitz_probe(model, kern, p, radii=(1.0, 4.0, 16.0, 64.0), n=4000, seed=0) -> dict:
    """sup ||grad_r ell|| (spectral) and a finite-difference bound of the Hessian on boxes |r_a| <= R.

    Probes: r uniform in the box (plus its axis corners), s ~ N(0, teacher_std^2), z from the
    noise laws.

    Returns
    -------
    dict with ``radii``, ``jac_sup`` (len(radii),), ``jac_mean`` (spectral norm of the symmetric
    part of the probe-averaged Jacobian, a typical slope like Gamma), ``hess_sup``, ``finite``.
    """
    rng = np.random.default_rng(seed)
    m = model.m
    u, s, z = _probe_inputs(model, p, n, rng)
    p = np.ascontiguousarray(p, dtype=np.float64)
    J = np.empty((n, m, m))
    J2 = np.empty((n, m, m))
    ell = np.empty((n, m))
    jac_sup, jac_mean, hess_sup, finite = [], [], [], True
    h = 1e-5
    for R in radii:
        r = np.ascontiguousarray(R * u)
        with np.errstate(all="ignore"):
            kern.ell_batch(r, s, z, p, ell)
            kern.jac_ell_batch(r, s, z, p, J)
        if not (np.all(np.isfinite(ell)) and np.all(np.isfinite(J))):
            finite = False
            jac_sup.append(np.inf)
            jac_mean.append(np.inf)
            hess_sup.append(np.inf)
            continue
        jac_sup.append(float(np.max(np.linalg.norm(J, ord=2, axis=(1, 2)))))
        Jm = J.mean(axis=0)
        jac_mean.append(float(np.linalg.norm(0.5 * (Jm + Jm.T), ord=2)))
        hs = 0.0
        for b in range(m):
            r2 = r.copy()
            r2[:, b] += h
            with np.errstate(all="ignore"):
                kern.jac_ell_batch(np.ascontiguousarray(r2), s, z, p, J2)
            if np.all(np.isfinite(J2)):
                hs = max(hs, float(np.max(np.abs(J2 - J))) / h)
        hess_sup.append(hs)
    return {"radii": list(radii), "jac_sup": jac_sup, "jac_mean": jac_mean, "hess_sup": hess_sup,
            "finite": finite}


def assumption_warnings(model, kern, settings, p, *, method=None, batch=None, n=None) -> list:
    """Warnings (strings) for a model/settings pair that leaves the theory's assumptions.

    See the module docstring for the checks and their justification.
    """
    from .reference.volterra import critical_tau

    out = []
    probe = lipschitz_probe(model, kern, p)
    js, hs = probe["jac_sup"], probe["hess_sup"]
    if not probe["finite"]:
        bad = next(R for R, v in zip(probe["radii"], js) if not np.isfinite(v))
        out.append(f"ell or its Jacobian is not finite at |r| <= {bad:g}: the loss is not globally "
                   "Lipschitz (assumption A2); the theory does not apply.")
    else:
        # Growth by more than 4x from R = 4 to R = 64 means super-linear growth of ell (a bounded
        # Jacobian may still vary by O(1) between boxes, e.g. tanh', but not keep growing).
        if js[-1] > 4.0 * max(js[1], 1e-12) and js[-1] > 1e-8:
            out.append(f"grad_r ell grows with |r| (sup ||grad ell|| = {js[1]:.3g} on |r| <= 4, "
                       f"{js[-1]:.3g} on |r| <= 64): ell is not globally Lipschitz in r "
                       "(assumption A2, e.g. a polynomial loss of degree > 2); Theorem 2 does not "
                       "cover this model and the simulation may blow up.")
        elif hs[-1] > 4.0 * max(hs[1], 1e-12) and hs[-1] > 1e-6:
            out.append(f"the Jacobian of ell is not Lipschitz in r (finite-difference Hessian bound "
                       f"{hs[1]:.3g} on |r| <= 4, {hs[-1]:.3g} on |r| <= 64; assumption A2).")
    if getattr(kern, "DISCONTINUOUS", False):
        out.append("labels are discontinuous in the teacher field (jump in s): formally outside "
                   "assumption A2; the DMFT uses the Stein route for the teacher drift nu "
                   "(numerically validated, not covered by Theorem 2 as stated).")
    tau, lam, dt, delta = settings.tau, settings.lam, settings.dt, settings.delta
    exact = bool(getattr(kern, "LINEAR_ELL", False))
    # Slope of the linearisation: for affine ell the Jacobian is constant and the criterion is
    # exact; for nonlinear ell the worst case sup ||grad ell|| is far too pessimistic (it is
    # reached only at rare (r, s, z)), so the probe-averaged Jacobian on |r| <= 1 and <= 4 (a
    # typical slope, like Gamma = E grad ell) is used and the warning says "may".
    slopes = js[:2] if exact else probe["jac_mean"][:2]
    c = max(v for v in slopes if np.isfinite(v)) if np.isfinite(slopes[0]) else np.inf
    if tau > 0 and c > 0 and np.isfinite(c):
        tc = critical_tau(delta, lam / c)
        what = ("the SGF is unstable (Volterra criterion, exact for affine ell)" if exact else
                "beyond the linearised stability limit (Volterra criterion with the typical slope "
                "c = |E grad ell| over probes); the dynamics may blow up")
        if tau * c >= tc:
            out.append(f"tau = {tau:g} with slope c = {c:.3g}: tau*c = {tau * c:.3g} >= tau_c = {tc:.3g}: "
                       f"{what}. Lower --tau below {tc / c:.3g}.")
        else:
            tcd = critical_tau(delta, lam / c, dt=c * dt)
            if tau * c >= tcd:
                out.append(f"the Euler grid dt = {dt:g} {'is' if exact else 'may be'} unstable at "
                           f"tau = {tau:g} (discrete-time criterion tau*c < {tcd:.3g}, slope c = {c:.3g}); "
                           "reduce --dt.")
    elif tau == 0 and np.isfinite(c) and c > 0:
        tcd = critical_tau(delta, lam / c, dt=c * dt)
        if tcd == 0:
            out.append(f"gradient descent with step dt = {dt:g} {'is' if exact else 'may be'} unstable "
                       f"(slope c = {c:.3g}); reduce --dt.")
    if method == "sgd" and batch is not None and n is not None and batch > 0.1 * n:
        out.append(f"minibatch B = {batch} is not small against n = {n}: SGD noise is smaller than the "
                   f"SGF's by the factor (n - B)/(n - 1) = {(n - batch) / (n - 1):.2f} (the SGF limit "
                   "assumes B = o(n)).")
    return out


def result_warnings(sims: dict, dmft) -> list:
    out = []
    for meth, res in sims.items():
        if not res.ok:
            out.append(f"simulation ({meth}) {res.status}: {res.message}")
    if not dmft.ok:
        out.append(f"DMFT solver {dmft.status}: {dmft.message}")
    return out


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------
def compare(model, settings, *, d=1024, seeds=4, methods=("sgd",), batch=None, eta=None,
            paths=20000, dmft_method=None, progress=False, sims=None, dmft=None) -> Comparison:
    """Simulate (each method of ``methods``) and solve the DMFT on ``settings.times``; compare.

    Parameters
    ----------
    model : Model
    settings : Settings
    d, seeds : int
        Simulation dimension and number of independent runs.
    methods : tuple of {"sgd", "sgf"}
    batch, eta : SGD minibatch size and learning rate (tau = eta / B); default B = 1.
    paths : int
        Monte Carlo paths of the DMFT solver.
    dmft_method : {"sweep", "fixed-point"}, optional
        Default "sweep", or "fixed-point" at tau = 0 (the sweep's incremental Cholesky is
        singular for gradient flow, math.md 5.3).
    sims, dmft : precomputed Results (skip the corresponding runs; used by tests).

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
    kern = load_kernels(model)
    p = model.param_vector(settings.params)
    n = int(round(settings.delta * d))
    if dmft_method is None:
        dmft_method = "fixed-point" if settings.tau == 0 else "sweep"
    opts = {"d": d, "n": n, "seeds": seeds, "methods": list(methods), "batch": batch, "eta": eta,
            "paths": paths, "dmft_method": dmft_method}
    wall = {}
    sims = dict(sims or {})
    if not sims:
        from .sim import simulate

        for meth in methods:
            t0 = time.perf_counter()
            sims[meth] = simulate(model, settings, d=d, seeds=seeds, method=meth,
                                  batch=batch if meth == "sgd" else None, eta=eta if meth == "sgd" else None,
                                  progress=progress)
            if sims[meth].status == "interrupted":  # Ctrl-C: stop now, write nothing (exit 130)
                raise KeyboardInterrupt
            wall[f"sim_{meth}"] = time.perf_counter() - t0
            if meth == "sgd":
                opts["batch"] = sims[meth].meta.get("batch", batch)
                opts["eta"] = sims[meth].meta.get("eta", eta)
    if dmft is None:
        from .dmft import solve

        t0 = time.perf_counter()
        dmft = solve(model, settings, paths=paths, method=dmft_method, progress=progress)
        if dmft.status == "interrupted":
            raise KeyboardInterrupt
        wall["dmft"] = time.perf_counter() - t0
    # after the runs: the SGD batch may have been derived from eta / tau by the simulator
    warn = assumption_warnings(model, kern, settings, p, method="sgd" if "sgd" in sims else None,
                               batch=opts.get("batch"), n=n)
    warn += result_warnings(sims, dmft)
    table = build_table(model, sims, dmft, list(kern.METRICS))
    if settings.tau > 0:
        table["epochs"] = table["t"] / (settings.delta * settings.tau)
    for name, e in table["observables"].items():
        for meth, s in e["sim"].items():
            z = s["z"]
            if np.isfinite(z).any() and np.nanmax(z) > Z_WARN:
                k = int(np.nanargmax(z))
                warn.append(f"{name}: simulation ({meth}) and DMFT differ by {np.nanmax(z):.1f} combined "
                            f"standard errors at t = {table['t'][k]:g} (finite-size bias, SGD vs SGF at "
                            "large tau, or a model outside the theory).")
    cmp = Comparison(model=model, settings=settings, sims=sims, dmft=dmft, table=table, warnings=warn,
                     options=opts, wall=wall)
    cmp.summary = summary_text(cmp)
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


def summary_text(cmp: Comparison) -> str:
    """One screen: settings, final values of both curves, max normalised discrepancy, warnings."""
    s, o, tab = cmp.settings, cmp.options, cmp.table
    t = tab["t"]
    methods = list(cmp.sims)
    params = ", ".join(f"{k}={v:g}" for k, v in zip(cmp.model.param_names, cmp.model.param_vector(s.params)))
    lines = [f"dmftgen compare {cmp.model.name}: simulation ({', '.join(methods)}) vs DMFT",
             f"  delta={s.delta:g} tau={s.tau:g} lam={s.lam:g} T={s.T:g} dt={s.dt:g} seed={s.seed}"
             + (f"  params: {params}" if params else ""),
             f"  d={o['d']} n={o['n']} seeds={o['seeds']}"
             + (f" SGD B={o['batch']} eta={o['eta']:g}" if "sgd" in methods and o.get("eta") else "")
             + f"  DMFT paths={o['paths']} ({o['dmft_method']})"]
    if len(t):
        ep = f" (epochs {t[-1] / (s.delta * s.tau):.3g})" if s.tau > 0 else ""
        lines.append(f"  time t = k*eta/d in [0, {t[-1]:g}]{ep}; z = |sim - dmft| / sqrt(sem^2 + err^2)")
    head = f"  {'observable':<12} {'DMFT(T)':>18} " + " ".join(f"{m.upper() + '(T)':>18} {'max z':>6} {'at t':>5}" for m in methods)
    lines += ["", head]
    zmax_all = 0.0
    for name, e in tab["observables"].items():
        row = f"  {name:<12} {_fmt(e['dmft'][-1], e['dmft_err'][-1]):>18} "
        for meth in methods:
            sm = e["sim"].get(meth)
            if sm is None:
                row += f"{'-':>18} {'-':>6} {'-':>5} "
                continue
            z = sm["z"]
            if np.isfinite(z).any() or np.isinf(z).any():
                zz = np.where(np.isnan(z), -1, z)
                k = int(np.argmax(zz))
                zmax = float(z[k])
                zmax_all = max(zmax_all, zmax)
                row += f"{_fmt(sm['mean'][-1], sm['sem'][-1]):>18} {zmax:>6.2f} {t[k]:>5.3g} "
            else:
                row += f"{_fmt(sm['mean'][-1], sm['sem'][-1]):>18} {'nan':>6} {'-':>5} "
        lines.append(row.rstrip())
    lines.append("")
    if zmax_all <= Z_AGREE:
        lines.append(f"  verdict: agreement within errors (max z = {zmax_all:.2f} <= {Z_AGREE:g})")
    elif zmax_all <= Z_WARN:
        lines.append(f"  verdict: marginal (max z = {zmax_all:.2f}; expected <= {Z_AGREE:g} without bias)")
    else:
        lines.append(f"  verdict: DISAGREEMENT (max z = {zmax_all:.2f} > {Z_WARN:g})")
    if cmp.wall:
        lines.append("  wall time: " + ", ".join(f"{k} {v:.1f}s" for k, v in cmp.wall.items()))
    if cmp.warnings:
        lines.append("")
        lines += [f"  WARNING: {w}" for w in cmp.warnings]
    return "\n".join(lines) + "\n"


_PANEL_TITLES = {"loss": "loss", "overlaps": r"overlaps $Q=\theta^\top\theta/d$, $M=\theta^\top\theta^*/d$"}


def render_figure(cmp: Comparison) -> bytes:
    """PNG bytes of the Figure-1-style plot (matplotlib Agg, imported here, lazily)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    tab, s = cmp.table, cmp.settings
    t = tab["t"]
    panels = list(dict.fromkeys(e["panel"] for e in tab["observables"].values()))
    npan = len(panels)
    ncol = min(npan, 3)
    nrow = int(math.ceil(npan / ncol)) if npan else 1
    fig = Figure(figsize=(5.0 * ncol, 4.2 * nrow + 0.6), dpi=120)
    axes = [fig.add_subplot(nrow, ncol, i + 1) for i in range(max(npan, 1))]
    methods = list(cmp.sims)
    markers = {"sgd": "o", "sgf": "^"}
    step = max(1, len(t) * len(methods) // 24)  # ~24 markers per curve keep the DMFT line visible
    o = cmp.options
    from matplotlib.lines import Line2D

    for ax, panel in zip(axes, panels):
        names = [nm for nm, e in tab["observables"].items() if e["panel"] == panel]
        handles = []
        for i, name in enumerate(names):
            e = tab["observables"][name]
            if panel != "overlaps":
                col = "C0" if name.startswith("train") else "C3"
            else:
                col = ("C2", "C4", "C1", "C5", "C6", "C8", "C9", "C7")[i % 8]  # not train/test colours
            label = name.replace("_", " ")
            ax.plot(t, e["dmft"], "-", color=col, lw=1.8)
            err = np.nan_to_num(e["dmft_err"])
            if np.any(err > 0):
                ax.fill_between(t, e["dmft"] - 2 * err, e["dmft"] + 2 * err, color=col, alpha=0.25, lw=0)
            for j, meth in enumerate(methods):
                sm = e["sim"].get(meth)
                if sm is None:
                    continue
                # several methods: stagger their markers so that they do not hide each other
                sl = slice((j * step) // max(len(methods), 1), len(t), step)
                ax.errorbar(t[sl], sm["mean"][sl], yerr=2 * np.nan_to_num(sm["sem"][sl]),
                            fmt=markers.get(meth, "s"), ms=4.5, mfc="white", mec=col, ecolor=col,
                            elinewidth=1, capsize=2, color=col, ls="none")
            handles.append(Line2D([], [], color=col, lw=1.8, label=label))
        # one legend entry per observable (colour) plus one per source (line / marker style)
        handles.append(Line2D([], [], color="0.2", lw=1.8, label="DMFT (band ± 2 MC s.e.)"))
        for meth in methods:
            handles.append(Line2D([], [], color="0.2", ls="none", marker=markers.get(meth, "s"), mfc="white",
                                  label=f"{meth.upper()} d={o['d']}, {o['seeds']} seeds (± 2 s.e.)"))
        ax.set_title(_PANEL_TITLES.get(panel, f"{panel} (declared metric)"), fontsize=10)
        ax.set_xlabel(r"SGF time $t = k\eta/d$")
        ax.set_ylabel(panel if panel != "overlaps" else "overlap")
        ax.grid(True, alpha=0.3)
        ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.85,
                  ncol=2 if len(handles) > 7 else 1)
        if s.tau > 0:
            f = s.delta * s.tau
            sec = ax.secondary_xaxis("top", functions=(lambda x, f=f: x / f, lambda e_, f=f: e_ * f))
            sec.set_xlabel(r"epochs $= t/(\delta\tau) = kB/n$", fontsize=8)
            sec.tick_params(labelsize=7)
    params = ", ".join(f"{k}={v:g}" for k, v in zip(cmp.model.param_names, cmp.model.param_vector(s.params)))
    sgd = f", SGD B={o.get('batch')} η={o.get('eta'):g}" if "sgd" in methods and o.get("eta") else ""
    fig.suptitle(f"{cmp.model.name}: simulation vs DMFT   δ=n/d={s.delta:g}, τ=η/B={s.tau:g}, λ={s.lam:g}, "
                 f"Δt={s.dt:g}, d={o['d']}, n={o['n']}{sgd}, DMFT paths={o['paths']}"
                 + (f"; {params}" if params else ""), fontsize=9.5)
    fig.text(0.5, 0.005, "markers: simulation mean ± 2 s.e. over seeds;  lines: DMFT, band ± 2 Monte Carlo "
             "s.e.;  t = kη/d (SGD step k, learning rate η), epochs = t/(δτ)"
             + ("   [WARNINGS: see summary.txt]" if cmp.warnings else ""),
             ha="center", va="bottom", fontsize=8, color="0.25" if not cmp.warnings else "C3")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close("all")
    return buf.getvalue()


def table_json(cmp: Comparison) -> str:
    payload = {
        "model": cmp.model.name,
        "settings": cmp.settings.as_dict(),
        "options": cmp.options,
        "t": cmp.table["t"],
        "epochs": cmp.table.get("epochs"),
        "observables": cmp.table["observables"],
        "warnings": cmp.warnings,
        "status": {"dmft": cmp.dmft.status, **{f"sim_{m}": r.status for m, r in cmp.sims.items()}},
        "wall_s": cmp.wall,
        "z_note": "z = |sim - dmft| / sqrt(sem^2 + err^2); 'inf' where both errors vanish but values differ",
    }
    return json.dumps(jsonable(payload, keep_inf=True), indent=1, allow_nan=False)


FILES = ("figure.png", "table.csv", "table.json", "summary.txt")


def write_outputs(cmp: Comparison, out_dir) -> dict:
    """Write figure.png, table.csv, table.json, summary.txt, sim_<method>.npz and dmft.npz.

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
    for name, res in [(f"sim_{m}.npz", r) for m, r in cmp.sims.items()] + [("dmft.npz", cmp.dmft)]:
        payloads[name] = res.to_bytes(".npz")
    return replace_dir(out, payloads)
