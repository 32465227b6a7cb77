"""Long horizons (t ~ 50-100) for the DMFT solver: coarse uniform steps plus Richardson in dt.

    from dmftgen.dmft import solve_long
    res = solve_long(model, Settings(delta=2, tau=0.5, lam=0.1, T=50, dt=0.2), paths=20000)

Why this route
--------------
The direct scheme (docs/theory.md §2) costs O(P K^2) time for the memory sums, O(P_J K^3) for the
Monte Carlo tangents of nonlinear models and O(G K^2) memory for the per-group kernel sums, with
K = T / dt steps. The discrete scheme is the exact large-d limit of Euler--Maruyama SGF at the
same step and is first order in dt (measured: tests/test_dmft.py), so the cheapest way to a long
horizon is a *coarse* step with the first-order error removed by Richardson extrapolation,

    f_R = 2 f(dt/2) - f(dt) = f(0) + O(dt^2),

the two solves sharing one noise (the coarse solve aggregates the fine one's increments,
``refine``), so their Monte Carlo errors largely cancel in the difference (the one
implementation: :mod:`dmftgen.dmft.extrapolation`). K stays at
T/dt and 2T/dt: T = 50 at dt = 0.2 needs K = 250 and 500 instead of the 5000 of dt = 0.01.

Alternatives considered (docs/longtime.md):

* non-uniform (graded) grids: the scheme stays exact for any step sequence, but in the
  stationary regime the fast modes (rate lam + m_+ ~ 3 for delta = 2) keep equilibrating at
  every time, and Euler's error of their stationary variance is O(dt_late) (a discrete OU
  process has variance sigma^2 / (a (2 - a dt)) instead of sigma^2 / (2a)); a coarse late grid
  therefore carries the same O(dt_late) error as a uniform grid at dt_late, and only the early
  transient gains. Richardson removes the O(dt) error at all times.
* low-rank / banded R_theta (an idea from the design notes): would cut the O(P K^2) memory sums; it needs a change
  in the generated path kernel and was not done here.

Accuracy
--------
``*_err`` is the Monte Carlo error of the extrapolated value: the between-replica standard error
of the replicas' extrapolated curves 2 f_r(dt/2) - f_r(dt) (replica r of both solves shares its
noise, so the coupling is in it; R - 1 degrees of freedom), or without replicas the conservative
sqrt(4 e_f^2 + e_c^2) (:mod:`dmftgen.dmft.extrapolation`); ``*_disc`` = |f(dt/2) - f(dt)| is the
first-order discretisation error of the fine solve, removed by the extrapolation. What is left is O(dt^2);
it is measured against a fine uniform grid on a common horizon (tests/test_longtime.py,
bench/bench_longtime.py, docs/longtime.md).
"""
from __future__ import annotations

import resource
import time

import numpy as np

from ..results import Result

#: Per-time one-time observables carried through the extrapolation (besides metrics).
_ONE_TIME = ("train_loss", "test_loss", "Q", "M", "E_r_ell", "E_ell_ell", "Q_balance")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def solve_long(model, settings, *, paths: int = 20000, extrapolate: bool = True, progress: bool = False,
               **options) -> Result:
    """DMFT solve on a long horizon with a coarse step ``settings.dt`` (and Richardson in dt).

    Parameters
    ----------
    model, settings :
        As for :func:`dmftgen.dmft.solve`; ``settings.dt`` is the *coarse* step (e.g. 0.1-0.2 for
        T = 50-100). The Euler step must be stable: dt (lam + largest Hessian eigenvalue) < 2,
        e.g. dt < 0.65 for ridge regression at delta = 2 (m_+ = 2.9).
    paths : int
        Monte Carlo r-paths of each solve.
    extrapolate : bool
        True (default): solve at dt and dt/2 on common noise and return 2 f(dt/2) - f(dt) on the
        coarse grid. False: one uniform solve at dt (first-order error, half the cost).
    **options
        Passed to :func:`dmftgen.dmft.solve` (groups, tangent_paths, tangent_budget, ...).

    Returns
    -------
    Result
        t (coarse grid), train_loss, test_loss, train/test metrics, Q, M, E_r_ell, E_ell_ell, each
        with ``*_err`` (Monte Carlo) and, if extrapolated, ``*_disc`` (first-order discretisation
        error removed) and ``*_coarse`` / ``*_fine`` (the two solves on the coarse grid, with
        ``*_coarse_err`` / ``*_fine_err``).
        meta["long"]: wall time and peak resident memory of each solve, steps, method.
    """
    from .extrapolation import ERRORS, coupled_solves
    from .extrapolation import extrapolate as richardson_data
    from .solver import solve

    # replicas (the default "auto" and any R) work with the extrapolation: replica r of both solves
    # shares its noise, and the extrapolated replica curves give *_err (dmftgen.dmft.extrapolation).
    # (A refusal of replicas > 1 here had refused an explicit replicas=8, what the default does,
    # and crashed on replicas="auto" with a bare ValueError.)
    L = int(options.pop("refine", 0))
    t0 = time.perf_counter()
    if not extrapolate:
        res = solve(model, settings, paths=paths, progress=progress, refine=L, **options)
        res.meta["long"] = {"method": "uniform", "steps": [settings.n_steps],
                            "time_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}
        return res
    rss1 = []
    coarse, fine, (t0, t1, t2) = coupled_solves(model, settings, paths=paths, refine=L, progress=progress,
                                                after_coarse=lambda: rss1.append(peak_rss_mb()), **options)
    keys = list(_ONE_TIME) + [f"{p}_{q}" for q in model.metrics for p in ("train", "test")]
    data, n = richardson_data(coarse, fine, keys, parts=True)
    data = {"t": data.pop("t"), "rho": coarse["rho"], **data}
    if coarse.ok and fine.ok:
        status, message = "ok", ""
    else:
        bad = fine if not fine.ok else coarse
        status = bad.status
        message = (f"{'fine' if bad is fine else 'coarse'} solve: {bad.message.rstrip('.')}; the Richardson "
                   f"combination is kept up to t = {data['t'][-1] if n else 0:g}")
    meta = {
        "model": model.name, "settings": settings.as_dict(), "paths": paths, "richardson": True,
        "long": {"method": "richardson", "steps": [settings.n_steps, 2 * settings.n_steps],
                 "dt": [settings.dt, settings.dt / 2],
                 "time_s": t2 - t0, "time_coarse_s": t1 - t0, "time_fine_s": t2 - t1,
                 "peak_rss_mb": peak_rss_mb(), "peak_rss_after_coarse_mb": rss1[0]},
        "coarse": coarse.meta, "fine": fine.meta,
        "errors": ERRORS,
    }
    return Result(data, meta, status=status, message=message)


def compare_overlap(a, b, keys=("train_loss", "test_loss", "Q", "M"), *, t_max=None, rtol_t=1e-9) -> dict:
    """Agreement of two Results on their common times (e.g. solve_long vs a fine uniform solve).

    Returns ``{key: {"max_abs": ..., "max_rel": ..., "max_z": ..., "n": ...}}`` where z is
    |a - b| / sqrt(err_a^2 + err_b^2) (errors 0 where absent) and rel is relative to |b|.
    Matrix observables use their (0, 0) entry.
    """
    ta, tb = np.asarray(a.t, float), np.asarray(b.t, float)
    tol = rtol_t * max(1.0, float(max(ta.max(initial=0), tb.max(initial=0))))
    ia, ib = [], []
    j = 0
    for i, t in enumerate(ta):
        if t_max is not None and t > t_max + tol:
            break
        while j < tb.size and tb[j] < t - tol:
            j += 1
        if j < tb.size and abs(tb[j] - t) <= tol:
            ia.append(i)
            ib.append(j)
    ia, ib = np.array(ia, int), np.array(ib, int)
    out = {}

    def comp(res, key, idx):
        v = np.asarray(res[key], float)[idx]
        return v.reshape(v.shape[0], -1)[:, 0] if v.ndim > 1 else v

    for key in keys:
        if key not in a or key not in b or ia.size == 0:
            continue
        va, vb = comp(a, key, ia), comp(b, key, ib)
        ea = comp(a, key + "_err", ia) if key + "_err" in a else np.zeros_like(va)
        eb = comp(b, key + "_err", ib) if key + "_err" in b else np.zeros_like(vb)
        d = np.abs(va - vb)
        s = np.sqrt(np.nan_to_num(ea) ** 2 + np.nan_to_num(eb) ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(s > 0, d / s, np.where(d > 0, np.inf, 0.0))
            rel = d / np.maximum(np.abs(vb), 1e-300)
        out[key] = {"max_abs": float(d.max()), "max_rel": float(rel.max()), "max_z": float(z.max()),
                    "n": int(ia.size), "t_max": float(ta[ia[-1]])}
    return out


__all__ = ["solve_long", "compare_overlap", "peak_rss_mb"]
