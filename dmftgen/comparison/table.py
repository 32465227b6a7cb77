"""The comparison table: scalar observables, normalised discrepancies, the table's columns and
CSV, and the warnings read off the runs (see :mod:`dmftgen.comparison`)."""
from __future__ import annotations

import numpy as np

from ..analysis.stats import fit_inv_d
from ..errors import SettingsError


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


def _reps_series(res, key, index):
    """Each replica's curve (R, n) of one scalar observable (``key + "_reps"``), or None."""
    r = res.get(key + "_reps")
    if r is None:
        return None
    r = np.asarray(r, dtype=float)
    if index is not None:
        r = r[(slice(None), slice(None)) + tuple(index)]
    return r if r.ndim == 2 else None


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
        k, NaN at odd k; the latter's error is the spread of the replicas' own corrected curves
        where both solves kept them, else sqrt(4 e_dt^2 + e_2dt^2)), ["dt_disc"] (Richardson), "sim": {method: {"mean", "sem", "dof", "z",
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
                rv, rc = _reps_series(dmft, key, index), _reps_series(dt_check, key, index)
                if rv is not None and rc is not None and rv.shape[0] == rc.shape[0] >= 2:
                    from ..dmft.extrapolation import per_replica  # here: `import dmftgen` stays numba-free

                    # the 2 dt solve's replica r has replica r's noise aggregated pairwise (refine):
                    # the error of 2 f(dt) - f(2 dt) is the spread of the replicas' own, as for a
                    # Richardson solve (sqrt(4 e^2 + e_2dt^2) above treats the solves as independent)
                    _, err = per_replica(rc[:, kk // 2], rv[:, kk])
                    cerr = np.full(K, np.nan)
                    cerr[kk] = err
                    entry["dmft_corr_err"] = cerr
                    entry["dmft_corr_dof"] = np.where(np.isfinite(cerr), float(rv.shape[0] - 1),
                                                      entry["dmft_corr_dof"])
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
            # SGD whose step eta/d does not divide the grid is recorded at the step nearest to each
            # grid time (dmftgen/sim/driver.py): say so, the curves are then compared at other times
            # (offsets below dt / 20, e.g. B = 1 at d = 128, are harmless and not reported)
            t_act = res.meta.get("t_actual")
            if t_act is not None and "t" in res and len(t_act) == len(res["t"]) >= 2:
                t_grid = np.asarray(res["t"], dtype=float)
                off = float(np.max(np.abs(np.asarray(t_act, dtype=float) - t_grid)))
                if off > 0.05 * (t_grid[1] - t_grid[0]):
                    eta = res.meta.get("eta")
                    step = f"its step eta/d = {eta / d_:g}" if eta else "its step"
                    out.append(f"{tag}: {step} is not small against the grid step dt: it is recorded at the "
                               f"step nearest to each grid time, up to {off:.3g} away (meta t_actual), and "
                               "compared with the DMFT at the grid time; use a smaller --eta / --batch "
                               "(eta/d << dt) or a --dt that is a multiple of eta/d.")
    for what, r in (("DMFT solver", dmft), ("DMFT time-step check (2 dt)", dt_check)):
        if r is not None and not r.ok:
            out.append(f"{what} {r.status}: {r.message}")
    return out
