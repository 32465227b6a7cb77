"""``simulate``: finite-size ground truth (SGF or minibatch SGD) averaged over seeds."""
from __future__ import annotations

import math
import platform
import sys
import time

import numpy as np

from ..config import whole
from ..errors import SettingsError
from .data import DATA_KINDS, DYNAMICS, draw_data, stream
from .sgd import run_sgd, sgd_step_indices
from .sgf import run_sgf

METHODS = ("sgf", "sgd")


def _as_int(name, v, lo, hint):
    """``v`` as an int >= ``lo`` (an integer, or a whole number as float or text: the sweep's grid
    values; :func:`dmftgen.config.whole`), else a SettingsError naming ``name``."""
    try:
        if isinstance(v, bool) or v is None:
            raise TypeError
        v = whole(v)
    except (TypeError, ValueError):
        raise SettingsError(f"`{name}` must be an integer, got {v!r}. {hint}") from None
    if v < lo:
        raise SettingsError(f"`{name}` must be >= {lo}, got {v}. {hint}")
    return v


def _physical_memory() -> float | None:
    try:
        import os
        return float(os.sysconf("SC_PAGE_SIZE")) * float(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def resolve_run(model, settings, *, d, seeds, method, batch, eta, replace, data, theta_rows,
                matrix_free=False):
    """Validate the simulator options; returns (d, n, seeds, method, batch, eta, theta_rows, p).

    Raises
    ------
    SettingsError
        With a message naming the option and the fix.
    """
    from ..config import Settings
    if not isinstance(settings, Settings):
        raise SettingsError(f"`settings` must be a dmftgen.Settings, got {type(settings).__name__}.")
    d = _as_int("d", d, 2, "The dimension d is the number of rows of theta; use e.g. --d 1024.")
    seeds = _as_int("seeds", seeds, 1, "Use e.g. --seeds 4.")
    if method not in METHODS:
        raise SettingsError(f"unknown method `{method}`; use one of {', '.join(METHODS)}.")
    if data not in DATA_KINDS:
        raise SettingsError(f"unknown data law `{data}`; use one of {', '.join(DATA_KINDS)}.")
    # settings.delta > 0, tau >= 0, dt > 0 are checked by Settings itself; re-check cheaply in
    # case a caller built the object around its validation.
    if not settings.delta > 0:
        raise SettingsError(f"`delta` (= n/d) must be > 0, got {settings.delta}.")
    if not settings.tau >= 0:
        raise SettingsError(f"`tau` (= eta/B) must be >= 0, got {settings.tau}.")
    if not settings.dt > 0:
        raise SettingsError(f"`dt` (time step) must be > 0, got {settings.dt}.")
    n = int(round(settings.delta * d))
    if n < 1:
        raise SettingsError(f"n = round(delta * d) = round({settings.delta} * {d}) = {n} samples; "
                            f"increase --d or --delta.")
    theta_rows = _as_int("theta_rows", theta_rows, 0, "It is the number of rows of theta to record.")
    if theta_rows > d:
        raise SettingsError(f"`theta_rows` = {theta_rows} exceeds d = {d}.")
    p = model.param_vector(settings.params)  # SettingsError on unknown parameter names
    need = 8.0 * n * d
    phys = _physical_memory()
    if not matrix_free and phys and need > 0.8 * phys:
        raise SettingsError(f"X (n x d = {n} x {d}) needs {need / 2**30:.1f} GiB, more than 80 % of "
                            f"this machine's {phys / 2**30:.1f} GiB; use a smaller d, or `dmftgen "
                            f"simulate --method sgf --matrix-free` (compare and w2 store X).")
    # every seed's record is kept until the average: train/test loss and metrics, Q, M and the
    # recorded theta rows at each of the N + 1 times (``--seeds 1e8`` asked for ~0.5 TB)
    width = 2 + 2 * len(model.metrics) + model.m * model.m + model.m * model.k + theta_rows * (model.m + model.k)
    rec = 8.0 * seeds * (settings.n_steps + 1) * width
    if phys and rec > 0.8 * phys:
        raise SettingsError(f"`seeds` = {seeds}: the seeds' records ({settings.n_steps + 1} times each) need "
                            f"{rec / 2**30:.1f} GiB, more than 80 % of this machine's {phys / 2**30:.1f} GiB; "
                            "use fewer seeds (the error bars shrink like seeds^-1/2) or a coarser grid.")
    if matrix_free and method != "sgf":
        raise SettingsError("matrix-free mode is implemented for --method sgf only (SGD touches a "
                            "few rows per step; store X, or use the SGF at the same tau).")
    if method == "sgf":
        if batch is not None or eta is not None:
            raise SettingsError("`batch` and `eta` only apply to --method sgd; the SGF is set by "
                                "tau and dt alone.")
        return d, n, seeds, method, None, None, theta_rows, p
    # -- SGD: tau = eta / B
    tau = settings.tau
    if batch is not None:
        batch = _as_int("batch", batch, 1, "It is the minibatch size B.")
        if batch > n:
            raise SettingsError(f"`batch` = {batch} exceeds the number of samples n = {n} "
                                f"(= round(delta * d)); use a batch <= n.")
    if eta is not None:
        eta = float(eta)
        if not (math.isfinite(eta) and eta > 0):
            raise SettingsError(f"`eta` (learning rate) must be > 0, got {eta}.")
    if tau == 0:
        raise SettingsError("SGD needs tau = eta/B > 0; for gradient flow (tau = 0) use --method sgf.")
    if batch is None and eta is None:
        batch = 1
    if eta is None:
        eta = tau * batch
    elif batch is None:
        batch = int(round(eta / tau))
        if batch < 1 or abs(eta / batch - tau) > 1e-9 * tau:
            raise SettingsError(f"`eta` = {eta} is not tau * B for an integer batch B (tau = {tau}); "
                                f"give --batch too, or set eta = tau * B.")
        if batch > n:
            raise SettingsError(f"`eta`/tau = {batch} exceeds the number of samples n = {n}.")
    elif abs(eta / batch - tau) > 1e-9 * tau:
        raise SettingsError(f"eta / batch = {eta}/{batch} = {eta / batch:g} differs from tau = {tau}; "
                            f"SGD has temperature tau = eta/B: drop one of --eta/--batch or fix --tau.")
    return d, n, seeds, method, batch, eta, theta_rows, p


def _versions() -> dict:
    from ..results import versions
    v = versions()
    v["python"] = platform.python_version()
    return v


def _mean_sem(a: np.ndarray):
    """Mean over axis 0 and its standard error std(ddof=1)/sqrt(S) (NaN for a single seed).

    (mean - E)/sem is Student t with S - 1 degrees of freedom for Gaussian seeds (``meta
    ["seeds_used"]`` - 1); one seed has no error bar (NaN: ``compare`` reports "n/a").
    """
    S = a.shape[0]
    mean = a.mean(axis=0)
    if S < 2:
        return mean, np.full_like(mean, np.nan)
    return mean, a.std(axis=0, ddof=1) / math.sqrt(S)


def simulate(model, settings, *, d=1024, seeds=4, method="sgf", batch=None, eta=None,
             replace=True, data="gaussian", theta_rows=0, progress=False, matrix_free=False,
             schedule=None):
    r"""Simulate SGF (Euler--Maruyama) or minibatch SGD of ``model`` and average over seeds.

    Parameters
    ----------
    model : dmftgen.model.Model
        The declared model; its generated kernels are loaded with ``load_kernels``.
    settings : dmftgen.Settings
        delta, tau, lam, T, dt, seed, params. n = round(delta d); records at t_k = k dt.
    d : int
        Dimension (rows of theta), >= 2.
    seeds : int
        Independent runs (data and dynamics); seed index i uses streams
        ``SeedSequence(settings.seed, spawn_key=(i, role))``.
    method : {"sgf", "sgd"}
        ``sgf``: Euler--Maruyama of docs/theory.md §1 with step dt. ``sgd``: minibatch SGD with
        learning rate eta and batch B, tau = eta/B, clock t = k eta/d; the state is recorded at the
        steps nearest to the grid times (actual times in ``meta["t_actual"]``).
    batch, eta : int, float, optional
        SGD only. Default B = 1 and eta = tau B.
    replace : bool
        SGD minibatches with replacement (i.i.d. indices) or without (uniform B-subsets).
    data : {"gaussian", "rademacher"}
        Law of the entries of X (variance 1/d).
    theta_rows : int
        Also record the first ``theta_rows`` rows of theta (array ``theta_rows`` of shape
        (seeds, T+1, theta_rows, m)) for distribution comparisons.
    progress : bool
        Show a tqdm progress bar on stderr.
    matrix_free : bool
        SGF only: do not store X; regenerate it block by block from the seed at every step
        (memory O((n + d) m), time dominated by drawing n d normals per step). Same X as the
        stored mode, so the same numbers up to floating-point summation order.
    schedule : str or callable, optional
        Learning-rate schedule gamma(t) >= 0 on the SGF clock, a formula in ``t`` (``"1/(1+t)"``)
        or a vectorised callable: SGD uses eta_k = eta gamma(k eta/d); the SGF the equivalent
        ell_t = gamma(t) ell, h_t = gamma(t) h (drift x gamma, noise covariance x gamma^2).

    Returns
    -------
    dmftgen.results.Result
        Arrays ``t``, ``train_loss``, ``test_loss``, ``train_<metric>``, ``test_<metric>``,
        ``Q`` (T+1, m, m), ``M`` (T+1, m, k), each with ``*_sem``; ``meta``; ``status`` "ok",
        "diverged" or "interrupted" (Ctrl-C); then the arrays stop at the last time finished by
        every seed run so far.

    Notes
    -----
    Train observables are means over the n training samples of the generated ``loss_row`` /
    ``metrics_row`` at r = X theta; test observables are Gaussian expectations at
    (Q, M, rho_hat = theta*^T theta*/d) per seed (``dmftgen.observables.test_observables``, exact
    for Gaussian inputs). The SGF uses delta = n/d of the drawn data, so that its drift is exactly
    the gradient of the empirical risk (1/n) sum_i L_i.
    """
    from ..codegen import load_kernels
    from ..observables import test_observables

    d, n, seeds, method, batch, eta, theta_rows, p = resolve_run(
        model, settings, d=d, seeds=seeds, method=method, batch=batch, eta=eta, replace=replace,
        data=data, theta_rows=theta_rows, matrix_free=matrix_free)
    from .schedule import as_schedule
    sched = as_schedule(schedule)
    times = settings.times
    if sched is not None:
        sched(times)  # SettingsError now, not in the middle of a run
    kern = load_kernels(model)
    N = len(times) - 1
    delta_eff = n / d
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=seeds * N, desc=f"{method} {model.name} d={d}", unit="step" if method == "sgf"
                   else "rec", file=sys.stderr, leave=False, mininterval=0.5)

    paths = []
    tests = []
    rhos = []
    status, message = "ok", ""
    t0 = time.perf_counter()
    for i in range(seeds):
        D = draw_data(model, p, n, d, settings.seed, i, data, matrix_free=matrix_free)
        rng = stream(settings.seed, i, DYNAMICS)
        tick = (lambda _k: bar.update(1)) if bar is not None else None
        if method == "sgf":
            path, _ = run_sgf(kern, D, p, delta=delta_eff, tau=settings.tau, lam=settings.lam,
                              dt=settings.dt, n_steps=N, rng=rng, theta_rows=theta_rows, tick=tick,
                              schedule=sched)
        else:
            path, _ = run_sgd(kern, D, p, lam=settings.lam, eta=eta, batch=batch, replace=replace,
                              times=times, rng=rng, theta_rows=theta_rows, tick=tick,
                              schedule=sched)
        nd = path.n_done
        rhos.append(D.rho.tolist())
        paths.append(path)
        tests.append(test_observables(kern, model, path.Q[:nd], path.M[:nd], D.rho, p) if nd else {})
        if path.status == "interrupted":
            # interrupted (Ctrl-C): stop here and keep the finished part of the finished seeds
            status = path.status
            message = (f"seed index {i} of {seeds}: {path.message}. Kept the first {nd} recorded "
                       f"times (t <= {times[nd - 1]:.6g})" if nd else
                       f"seed index {i} of {seeds}: {path.message}. No time was finished.")
            break
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0

    # Diverged seeds are excluded from the averages and counted (meta "diverged_seeds"); the run
    # is "diverged" only when every seed diverged (then all seeds up to the earliest blow-up).
    diverged = [i for i, pp in enumerate(paths) if pp.status == "diverged"]
    keep = [i for i, pp in enumerate(paths) if pp.status != "diverged"]
    if diverged and keep:
        first = paths[diverged[0]]
        message = (f"{len(diverged)} of {len(paths)} seeds diverged and are excluded from the averages "
                   f"(seed indices {diverged}; first: {first.message})")
    elif diverged:
        status = "diverged"
        R0 = min(pp.n_done for pp in paths)
        message = (f"every seed diverged; seed index {diverged[0]} of {seeds}: {paths[diverged[0]].message}. "
                   + (f"Kept the first {R0} recorded times (t <= {times[R0 - 1]:.6g})" if R0 else
                      "No time was finished."))
        keep = list(range(len(paths)))
    tests = [tests[i] for i in keep]
    paths = [paths[i] for i in keep]
    R = min(pp.n_done for pp in paths)
    S = len(paths)
    arrays = {"t": times[:R].copy()}

    def put(name, stack):
        mean, sem = _mean_sem(stack)
        arrays[name] = mean
        arrays[name + "_sem"] = sem

    put("train_loss", np.stack([pp.train_loss[:R] for pp in paths]))
    put("test_loss", np.stack([te["test_loss"][:R] if R else np.zeros(0) for te in tests]))
    for q, name in enumerate(kern.METRICS):
        put(f"train_{name}", np.stack([pp.train_metrics[:R, q] for pp in paths]))
        put(f"test_{name}", np.stack([te[f"test_{name}"][:R] if R else np.zeros(0) for te in tests]))
    put("Q", np.stack([pp.Q[:R] for pp in paths]))
    put("M", np.stack([pp.M[:R] for pp in paths]))
    if theta_rows:
        arrays["theta_rows"] = np.stack([pp.rows[:R] for pp in paths])

    meta = {
        "kind": "simulation",
        "model": model.name,
        "source_hash": kern.SOURCE_HASH,
        "settings": settings.as_dict(),
        "d": d, "n": n, "delta_eff": delta_eff,
        "seeds": seeds, "seeds_run": S + (len(diverged) if status == "ok" else 0),
        "seeds_used": S, "diverged_seeds": diverged,
        "method": method, "batch": batch, "eta": eta,
        "replace": bool(replace) if method == "sgd" else None,
        "data": data, "theta_rows": theta_rows, "matrix_free": bool(matrix_free),
        "schedule": None if sched is None else sched.text,
        "params": dict(zip(model.param_names, map(float, p))),
        "rho_hat": rhos,
        "wall_s": wall,
        "versions": _versions(),
    }
    if method == "sgd":
        t_act = paths[0].t[:R]
        meta["steps"] = int(sgd_step_indices(times[-1:], eta, d)[0])
        if np.any(np.abs(t_act - arrays["t"]) > 1e-12 * max(1.0, times[-1])):
            meta["t_actual"] = t_act.tolist()
    from ..results import Result
    from ..stability import flag_instability
    return flag_instability(Result(arrays, meta, status=status, message=message), kern, model, settings)
