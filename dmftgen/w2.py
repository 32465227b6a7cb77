r"""Theorem 2 check: 2-Wasserstein distance between the rows of theta^t and the DMFT law of theta^t.

Theorem 2 (arXiv:2602.06320; docs/theory.md §1) states that for every fixed t on the existence horizon

.. math:: W_2\Big(\frac1d\sum_{j=1}^d\delta_{\theta^t_j},\ \mathrm{Law}(\theta^t)\Big)\to0
          \quad\text{in probability as } n, d\to\infty,\ n/d\to\delta,

where :math:`\theta^t_j\in\mathbb R^m` are the rows of the SGF iterate and :math:`\theta^t` the
DMFT theta-process.  We estimate the left side with two empirical measures: the d simulated rows
and a sample of the DMFT process (``solve(..., theta_samples=S)``).

Distances (exact for empirical measures):

* m = 1: the quantile formula :math:`W_2^2(\mu,\nu)=\int_0^1|F_\mu^{-1}(u)-F_\nu^{-1}(u)|^2du`,
  evaluated exactly for step quantile functions of any two sample sizes (:func:`w2_1d`);
* m > 1: the optimal assignment between two equal-size samples (for uniform weights and equal
  sizes an optimal coupling is a permutation, Birkhoff--von Neumann), solved exactly with
  ``scipy.optimize.linear_sum_assignment`` on the squared-distance cost (:func:`w2_assignment`).

Sampling bias.  Even a perfect i.i.d. sample of size d from Law(theta^t) is at distance
:math:`O(d^{-1/2})` (m <= 2, up to logs) from the law, and the DMFT sample (size S) is finite.
For every d we report (:func:`w2_against_dmft`)

* ``w2``    -- the Theorem 2 quantity, estimated: m = 1: W2(rows, all S DMFT points) (S >> d, so
  the DMFT sample stands in for the law); m > 1: W2(rows, A) for a random DMFT subsample A of
  size d (the assignment solver needs equal sizes);
* ``floor`` -- the same estimator applied to an exact i.i.d. sample of the DMFT law (a DMFT
  subsample B of size d, disjoint from the reference points): what ``w2`` would be if the
  simulation followed the DMFT law exactly;
* ``excess`` = sqrt(max(mean w2^2 - mean floor^2, 0)) -- the part not explained by sampling
  (for independent samples E W2^2 splits approximately into the squared law mismatch plus the
  sampling term, so the difference of squares estimates the mismatch).

Both ``w2`` and ``floor`` decay with d; Theorem 2 predicts ``w2`` -> 0, and a DMFT that is exact
for the simulated dynamics gives ``w2`` ~ ``floor`` at every d.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import SettingsError
from .results import Result

__all__ = ["w2_1d", "wp_1d", "w2_assignment", "w2", "w2_against_dmft", "loglog_slope", "w2_scan", "scan_payload"]


def _quantile_pairs(x, y):
    """Weights w and paired quantiles (x_q, y_q) of two step quantile functions.

    The quantile functions of the sorted samples are constant on the pieces between the merged
    breakpoints {i/n_x} U {j/n_y}; w are the piece lengths (summing to 1).
    """
    x = np.sort(np.asarray(x, dtype=float).ravel())
    y = np.sort(np.asarray(y, dtype=float).ravel())
    nx, ny = x.size, y.size
    if nx == 0 or ny == 0:
        raise SettingsError("W2: both samples must be non-empty.")
    if nx == ny:
        return np.full(nx, 1.0 / nx), x, y
    # Breakpoints in exact integer arithmetic: u = i/nx = (i*ny)/(nx*ny).
    u = np.union1d(np.arange(1, nx + 1, dtype=np.int64) * ny, np.arange(1, ny + 1, dtype=np.int64) * nx)
    lo = np.concatenate(([0], u[:-1]))
    w = (u - lo) / float(nx * ny)
    # On the piece (lo, u] the quantile of x is x[ceil(u nx) - 1] = x[ceil(u_int / ny) - 1].
    ix = -(-u // ny) - 1
    iy = -(-u // nx) - 1
    return w, x[ix], y[iy]


def wp_1d(x, y, p: float = 2.0) -> float:
    r"""Exact p-Wasserstein distance between two 1-D empirical measures (any sizes).

    .. math:: W_p^p = \int_0^1 \big|F_x^{-1}(u) - F_y^{-1}(u)\big|^p\,du,

    evaluated exactly as a finite sum over the merged breakpoints of the two step quantile
    functions (p = 1 equals ``scipy.stats.wasserstein_distance``).
    """
    w, a, b = _quantile_pairs(x, y)
    return float(np.sum(w * np.abs(a - b) ** p) ** (1.0 / p))


def w2_1d(x, y) -> float:
    r"""Exact 2-Wasserstein distance between two 1-D empirical measures (any sizes).

    .. math:: W_2^2 = \int_0^1 \big(F_x^{-1}(u) - F_y^{-1}(u)\big)^2\,du

    with the left-continuous step quantile functions of the sorted samples (for equal sizes:
    the root mean square difference of the order statistics).

    Parameters
    ----------
    x, y : array_like, shape (n_x,), (n_y,)

    Returns
    -------
    float
    """
    w, a, b = _quantile_pairs(x, y)
    return float(math.sqrt(np.sum(w * (a - b) ** 2)))


def w2_assignment(x, y) -> float:
    r"""Exact W2 between two equal-size empirical measures in R^m by optimal assignment.

    .. math:: W_2^2 = \min_{\pi\in S_n}\frac1n\sum_i\|x_i - y_{\pi(i)}\|^2 .

    Parameters
    ----------
    x, y : array_like, shape (n, m)

    Returns
    -------
    float
    """
    from scipy.optimize import linear_sum_assignment

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    if x.shape != y.shape:
        raise SettingsError(f"w2_assignment needs equal-size samples of equal dimension, got "
                            f"{x.shape} and {y.shape}; subsample the larger one.")
    # |x - y|^2 = |x|^2 + |y|^2 - 2 x.y, clipped at 0 against round-off.
    cost = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    np.maximum(cost, 0.0, out=cost)
    rows, cols = linear_sum_assignment(cost)
    return float(math.sqrt(cost[rows, cols].mean()))


def w2(x, y) -> float:
    """W2 between two empirical measures: 1-D formula for m = 1, assignment for m > 1.

    Parameters
    ----------
    x, y : array_like, shape (n,) or (n, m); for m > 1 the sizes must be equal.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    mx = 1 if x.ndim == 1 else x.shape[1]
    my = 1 if y.ndim == 1 else y.shape[1]
    if mx != my:
        raise SettingsError(f"w2: samples have dimensions {mx} and {my}.")
    if mx == 1:
        return w2_1d(x, y)
    return w2_assignment(x, y)


def w2_against_dmft(rows, dmft_sample, rng, floor_reps: int = 4) -> dict:
    """W2 of the simulated rows against the DMFT sample, with its sampling floor.

    m = 1: ``w2`` = W2(rows, whole DMFT sample) by the exact quantile formula (any sizes; with
    S >> d this is W2(empirical law of the rows, Law) up to O(S^{-1/2})); ``floor`` = W2(B, rest)
    for a random subsample B of size d and the remaining S - d points, i.e. the same estimator
    applied to an exact i.i.d. sample of the DMFT law, averaged over ``floor_reps`` draws.

    m > 1: equal sizes are needed for the assignment solver: ``w2`` = W2(rows, A) and ``floor``
    = W2(B, A) for disjoint random subsamples A, B of size d (``floor_reps`` draws of (A, B); the
    first A is the one used for ``w2``).

    Parameters
    ----------
    rows : array (d, m)
        Rows of theta^t of one simulation.
    dmft_sample : array (S, m)
        Samples of the DMFT theta-process at the same time; S >= 2 d.
    rng : numpy.random.Generator
    floor_reps : int

    Returns
    -------
    dict with ``w2`` and ``floor`` (float), ``floor_all`` (list).
    """
    rows = np.asarray(rows, dtype=float).reshape(len(rows), -1)
    sample = np.asarray(dmft_sample, dtype=float).reshape(len(dmft_sample), -1)
    d, S = rows.shape[0], sample.shape[0]
    if S < 2 * d:
        raise SettingsError(f"the DMFT sample has {S} points but the floor needs 2 d = {2 * d}; "
                            f"raise --theta-samples to at least {2 * d}.")
    floors = []
    if rows.shape[1] == 1:
        a = w2_1d(rows[:, 0], sample[:, 0])
        for _ in range(floor_reps):
            perm = rng.permutation(S)
            floors.append(w2_1d(sample[perm[:d], 0], sample[perm[d:], 0]))
    else:
        perm = rng.permutation(S)
        A = sample[perm[:d]]
        a = w2_assignment(rows, A)
        for i in range(floor_reps):
            if i:
                perm = rng.permutation(S)
                A = sample[perm[:d]]
            floors.append(w2_assignment(sample[perm[d:2 * d]], A))
    return {"w2": a, "floor": float(np.mean(floors)), "floor_all": floors}


def loglog_slope(d, values) -> float:
    """Least-squares slope of log(values) against log(d) (NaN if fewer than 2 positive points)."""
    d = np.asarray(d, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v) & (v > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(d[ok]), np.log(v[ok]), 1)[0])


def w2_scan(model, settings, *, dims=(256, 512, 1024, 2048), times=None, seeds=4, method="sgf",
            batch=None, eta=None, paths=20000, theta_samples=None, dmft=None, floor_reps=4,
            progress=False):
    r"""W2(rows of theta^t, DMFT law of theta^t) against d at chosen times (Theorem 2).

    Parameters
    ----------
    model : Model
    settings : Settings
    dims : sequence of int
        Dimensions d; every simulation records all d rows of theta.
    times : sequence of float, optional
        Times at which W2 is evaluated (snapped to the grid); default (T/2, T).
    seeds : int
        Simulations per d; W2 values are averaged over seeds (standard error reported).
    floor_reps : int
        Draws of the sampling floor per seed (see :func:`w2_against_dmft`).
    method : {"sgf", "sgd"}
        The simulated dynamics (Theorem 2 is about the SGF).
    paths : int
        DMFT Monte Carlo paths of the solver.
    theta_samples : int, optional
        DMFT theta-process samples; default max(paths, 2 max(dims)).
    dmft : Result, optional
        A precomputed ``solve`` result with ``theta_samples`` (skips the solve).

    Returns
    -------
    dmftgen.results.Result
        ``t`` (K,), ``d`` (D,), ``w2``, ``w2_sem``, ``floor``, ``floor_sem`` (K, D) (means and
        standard errors over seeds / floor draws), ``excess`` (K, D) = sqrt(max(mean w2^2 -
        mean floor^2, 0)), ``slope``, ``floor_slope``, ``excess_slope`` (K,) (log-log least
        squares); ``status``; ``meta``: method, seeds, theta_samples, messages (one line per
        failed run). ``to_dataset()`` labels the arrays by (t, d). A DMFT solve that stopped
        before T (diverged, ...) leaves no law to compare with: then no simulation is run, the
        arrays have no times (``t`` empty) and ``status`` / ``message`` are the DMFT's.

    Raises
    ------
    SettingsError
        Bad options (checked before anything is computed): fewer than two different dimensions,
        ``seeds`` < 1, no or out-of-grid times, too few theta samples, simulator options.
    KeyboardInterrupt
        Ctrl-C during the solve or a simulation: the scan stops at once (nothing partial).
    """
    dims = [int(d) for d in dims]
    if len(dims) < 2 or min(dims) < 2 or len(set(dims)) != len(dims):
        raise SettingsError(f"--d needs at least two different dimensions >= 2 (the log-log slope against d "
                            f"needs two), got {dims}; e.g. --d 256,512,1024.")
    dims = sorted(dims)
    grid = settings.times
    if times is None:
        times = (grid[-1] / 2, grid[-1])
    times = list(times)
    if not times:
        raise SettingsError("--times needs at least one time, e.g. --times 2.5,5 (default T/2,T).")
    idx = []
    for t in times:
        if not (0 <= t <= grid[-1] + 1e-12):
            raise SettingsError(f"--times: time {t:g} lies outside the grid [0, {grid[-1]:g}] (T = --T); choose times in range.")
        idx.append(int(np.argmin(np.abs(grid - t))))
    idx = sorted(set(idx))
    need = 2 * dims[-1]
    if theta_samples is None:
        theta_samples = max(int(paths), need)
    if theta_samples < need:
        raise SettingsError(f"--theta-samples {theta_samples} < 2 * max(d) = {need}: the sampling floor needs "
                            "two disjoint DMFT subsamples of size d.")
    if dmft is None:  # what the solve checks before computing (paths, memory), before anything runs
        from .dmft.options import SolveOptions
        from .dmft.solver import check_solve

        check_solve(model, settings, paths, None, SolveOptions())
    from .sim import resolve_run, simulate

    for d in dims:  # every simulation's options (seeds, method, batch, eta, memory) before the solve
        seeds = resolve_run(model, settings, d=d, seeds=seeds, method=method, batch=batch, eta=eta, replace=True,
                            data="gaussian", theta_rows=d)[2]
    messages = []
    status = "ok"
    if dmft is None:
        from .dmft import solve

        dmft = solve(model, settings, paths=paths, theta_samples=theta_samples, progress=progress)
    if dmft.status == "interrupted":  # Ctrl-C: stop now, compute and write nothing (exit 130)
        raise KeyboardInterrupt
    if not dmft.ok and "theta_samples" not in dmft:
        # the solve stopped early (diverged, ...): no law to compare with; report its status
        messages.append(f"the DMFT solve stopped early ({dmft.message.rstrip('. ')}); no W2 was computed")
        K, D = 0, len(dims)
        data = {"t": grid[:0], "d": np.array(dims)}
        data.update({k: np.full((K, D), np.nan) for k in ("w2", "w2_sem", "floor", "floor_sem", "excess")})
        data.update({k: np.full(K, np.nan) for k in ("slope", "floor_slope", "excess_slope")})
        meta = {"kind": "w2", "model": model.name, "settings": settings.as_dict(), "method": method,
                "seeds": seeds, "theta_samples": 0, "messages": messages}
        return Result(data, meta, status=dmft.status, message="; ".join(messages))
    if "theta_samples" not in dmft:
        raise SettingsError("the DMFT result has no `theta_samples`; solve with theta_samples > 0.")
    if not dmft.ok:
        status = dmft.status
        messages.append(f"DMFT: {dmft.status}: {dmft.message}")
    TS = np.asarray(dmft["theta_samples"], dtype=float)
    if TS.shape[1] < need:
        raise SettingsError(f"the DMFT result has {TS.shape[1]} theta samples; need 2 * max(d) = {need}.")

    K, D = len(idx), len(dims)
    w2v = np.full((K, D, seeds), np.nan)
    flo = [[[] for _ in range(D)] for _ in range(K)]
    for j, d in enumerate(dims):
        sim = simulate(model, settings, d=d, seeds=seeds, method=method, batch=batch, eta=eta,
                       theta_rows=d, progress=progress)
        if sim.status == "interrupted":  # Ctrl-C: stop now, not only this simulation (exit 130)
            raise KeyboardInterrupt
        if not sim.ok:
            status = sim.status
            messages.append(f"simulation d={d}: {sim.status}: {sim.message}")
        rows = sim["theta_rows"]  # (seeds, T', d, m)
        for q, k in enumerate(idx):
            if k >= rows.shape[1] or k >= TS.shape[0]:
                continue
            for i in range(rows.shape[0]):
                rng = np.random.default_rng(np.random.SeedSequence(settings.seed, spawn_key=(7, j, q, i)))
                out = w2_against_dmft(rows[i, k], TS[k], rng, floor_reps=floor_reps)
                w2v[q, j, i] = out["w2"]
                flo[q][j] += out["floor_all"]

    def mean_sem(a):
        a = np.asarray(a, dtype=float)
        a = a[np.isfinite(a)]
        if a.size == 0:
            return np.nan, np.nan
        return float(a.mean()), (float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else np.nan)

    res_w2 = np.full((K, D), np.nan)
    res_w2s = np.full((K, D), np.nan)
    res_f = np.full((K, D), np.nan)
    res_fs = np.full((K, D), np.nan)
    res_x = np.full((K, D), np.nan)
    for q in range(K):
        for j in range(D):
            res_w2[q, j], res_w2s[q, j] = mean_sem(w2v[q, j])
            res_f[q, j], res_fs[q, j] = mean_sem(flo[q][j])
            # excess from mean squares: E W2^2(sim) - E W2^2(exact sample) ~ squared law mismatch
            ms_w = np.nanmean(w2v[q, j] ** 2) if np.isfinite(w2v[q, j]).any() else np.nan
            ms_f = np.mean(np.square(flo[q][j])) if flo[q][j] else np.nan
            res_x[q, j] = math.sqrt(max(ms_w - ms_f, 0.0)) if np.isfinite(ms_w - ms_f) else np.nan
    data = {"t": grid[idx], "d": np.array(dims),
            "w2": res_w2, "w2_sem": res_w2s, "floor": res_f, "floor_sem": res_fs, "excess": res_x}
    for key, name in (("floor", "floor_slope"), ("excess", "excess_slope"), ("w2", "slope")):
        data[name] = np.array([loglog_slope(dims, data[key][q]) for q in range(K)])
    meta = {"kind": "w2", "model": model.name, "settings": settings.as_dict(), "method": method,
            "seeds": seeds, "theta_samples": int(TS.shape[1]), "messages": messages}
    return Result(data, meta, status=status, message="; ".join(messages))


def scan_payload(scan) -> dict:
    """The scan as the flat dict of ``w2.json`` (d, t, method, seeds, theta_samples, status,
    messages, then the arrays)."""
    out = {"d": scan["d"], "t": scan.t}
    out.update({k: scan.meta[k] for k in ("method", "seeds", "theta_samples")})
    out.update(status=scan.status, messages=scan.meta["messages"])
    out.update({k: v for k, v in scan.data.items() if k not in ("t", "d")})
    return out


def plot_w2(scan, title: str = ""):
    """Figure (object-oriented matplotlib, no pyplot: the caller's backend is never switched) of W2
    against d on log-log axes, one line per time."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=120)
    ax = fig.subplots()
    d = scan["d"]
    for q, t in enumerate(scan["t"]):
        col = f"C{q}"
        ax.errorbar(d, scan["w2"][q], yerr=2 * np.nan_to_num(scan["w2_sem"][q]), fmt="o-", color=col,
                    capsize=3, label=f"t = {t:g}: W2(sim rows, DMFT)  slope {scan['slope'][q]:+.2f}")
        ax.plot(d, scan["floor"][q], "--", color=col, alpha=0.7,
                label=f"t = {t:g}: floor, exact DMFT sample of size d  slope {scan['floor_slope'][q]:+.2f}")
    ref = scan["w2"][-1][0] if np.isfinite(scan["w2"][-1][0]) else 1.0
    ax.plot(d, ref * (d / d[0]) ** -0.5, ":", color="0.4", label=r"reference slope $d^{-1/2}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(d)
    ax.set_xticklabels([str(int(x)) for x in d])
    from matplotlib.ticker import NullLocator

    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("dimension d  (n = δ d samples)")
    ax.set_ylabel(r"$W_2$(empirical law of rows of $\theta^t$, DMFT law)")
    ax.set_title(title or "Theorem 2: W2 against d", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="best")
    fig.tight_layout()
    return fig
