"""`dmftgen.stationary(model, settings)`: the stationary state of the discrete DMFT as a Result.

    from dmftgen import Settings, load_model, stationary
    res = stationary(load_model("logistic"), Settings(delta=2, tau=0.5, lam=0.1, dt=0.2))
    print(res.status, res["test_loss"][0], res["test_loss_err"][0], res["relaxation_time"][0])

Two routes, one result:

* tau = 0: the static fixed point (:mod:`dmftgen.dmft.stationary_static`) -- the state of the
  empirical-risk minimiser (for convex losses), exact at every dt; lag kernels K(u), R(u) from its
  frequency-domain linear response.
* tau > 0: the lag-kernel fixed point (:func:`dmftgen.dmft.stationary_dmft.solve_stationary`) at
  the step ``settings.dt`` (the stationary state of Euler--Maruyama SGF at that step, which
  depends on dt at O(dt)), started from the tau = 0 solution. A declared regulariser H goes
  through its Monte Carlo theta-side (:mod:`dmftgen.dmft.stationary_theta_mc`), started from the
  tau = 0 state of the model without H, at every tau >= 0: the static equations above assume a
  Gaussian theta row (h = lam theta), and at tau = 0 the noiseless paths of the lag route settle
  to the regularised ERM (tested on a quadratic H against the exact ridge ERM; its iteration and
  window errors are then those of the lag route, not zero).

Error bars: every ``*_err`` is sqrt(stat^2 + iteration^2 + window^2), and ``meta.error_budget``
has the three parts per observable:

* stat: ``replicas`` independent solves (own random numbers, ``paths / replicas`` paths or
  ``samples`` draws each), between-replica standard error sd / sqrt(R), so the feedback of kernel
  errors into the paths is included (within-solve batch means are ~1.5x too small,
  docs/longtime.md). The first replica's converged state starts the others (then the mean so far).
* iteration (tau > 0): the last iterate x_k is off the fixed point by ~2 |G(x_k) - x_k|; per
  observable the larger of 2 res_k max_j |obs_j - obs_{j-1}| / |x_j - x_{j-1}| (sensitivity seen
  along the iteration) and |obs_k - obs_{k-1}| rho / (1 - rho), rho = max(0.5, res_k / res_{k-1}).
  A bias shared by the replicas: their mean, not divided by sqrt(R). Zero at tau = 0 (solved to
  1e-8).
* window (tau > 0): 2 mu |D| (dmftgen.dmft.stationary_dmft): D the change of the observable when
  the geometric continuations of R and K beyond the window are dropped, mu their relative error
  measured inside the window. Zero at tau = 0 (no memory truncation in the static equations).

Path averages (tau > 0): train loss, metrics, Gamma, E[r ell^T], E[ell ell^T] come from one pass on
fresh paths at the converged kernels (dmftgen.dmft.stationary_dmft; the iteration's own paths are
optimistic because the kernels are fitted to them); option ``cross_fit`` takes Q, M (hence the
test observables) from the theta-side at the kernels that fresh pass estimates.

Non-convex models (tau = 0): the static fixed point is searched from ``starts`` initial states
(M = 0, +-rho_std, and for m >= 2 opposite and specialised units) on common draws; the distinct
points (up to a permutation of the units) are listed in ``meta.fixed_points`` with their
objective delta E[L] + lam tr(Q) / 2, a warning is added when there are several, and the solve
continues from the lowest objective. Starts that run away are in ``meta.failed_starts``.

Result layout (the contract of every command; one "time", t = [inf], the t -> infinity limit):
``train_loss``, ``test_loss``, ``train_/test_<metric>``, ``Q`` (1, m, m), ``M`` (1, m, k),
``Gamma``, ``E_r_ell``, ``E_ell_ell``, ``relaxation_time`` (mean lag of the response R, in time
units) each with ``*_err``; the lag kernels over ``lag`` (W+1,) (replica means): ``K_lag``
(K(0) = Gamma, K(u) ~ R_ell(u) dt), ``R_lag`` (theta response R_theta(u)), ``S_lag`` (theta-noise
covariance of the increments), ``C_lag`` (C_theta(u)); ``chi`` = dt sum_n R(n) = (lam + sum_u K(u))^{-1};
``theta_samples`` (1, S, m) and ``theta_star_samples`` (S, k): draws of the law of a theta row
(Gaussian given theta*: theta = M rho^{-1} theta* + fluctuation of covariance Q - M rho^{-1} M^T;
with a declared H, not Gaussian: the last step of the fresh theta-paths of the replicas, and
chi = dt sum_n R(n) from their tangents);
``rho``. Status "ok", "not-converged" (tolerance not reached), "window-too-short" (the response does
not decay within the memory window: stationary_lag.window_spans_decay) or "no-stationary-state"
(interpolation without ridge, an unstable tau or step: the paths blow up, or no restoring force).
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..config import whole
from ..errors import SettingsError
from ..results import Result, versions
from ..threads import solver_threads
from .errorbars import replica_error
from .stationary_lag import window_spans_decay

STATUS_NO_STATE = "no-stationary-state"
#: the memory window does not span the response's decay (stationary_lag.window_spans_decay)
STATUS_WINDOW = "window-too-short"

#: Defaults of the options (``stationary(..., **options)``; the command's flags).
DEFAULTS = {"paths": 8000, "replicas": 4, "window": 30.0, "samples": 40000, "theta_samples": 2000,
            "tol": 3e-4, "max_iter": 100, "damping": 0.0, "anderson": 4, "groups": 10, "targets": 2,
            "starts": 4, "cross_fit": False}


def _relaxation_time(R, dt, extend=True):
    """Mean lag of the response, sum_n n dt |R(n)|_F / sum_n |R(n)|_F (= T for R = e^{-t/T}).

    ``extend`` (default): with |R| continued geometrically beyond the window (decay rate of its
    last eighth) up to 10 times the window, as the solve continues R.
    """
    nr = np.sqrt((R ** 2).sum(axis=(1, 2)))
    W = nr.size - 1
    if extend and W >= 16:
        b = W // 8
        q = (nr[W - b + 1:].sum() / nr[W - 2 * b + 1: W - b + 1].sum()) ** (1.0 / b)
        if 0.0 < q < 1.0:
            nr = np.concatenate([nr, nr[-1] * q ** np.arange(1, 9 * W + 1)])
    lags = dt * np.arange(nr.size)
    return float((lags * nr).sum() / nr.sum()) if nr.sum() > 0 else float("nan")


def _test(kern, model, Q, M, rho, p):
    from ..observables import test_observables

    out = test_observables(kern, model, Q[None], M[None], rho, p)
    return {k: float(v[0]) for k, v in out.items() if k != "test_loss_mc"}


def _replica_tau0(kern, model, settings, p, opts, r, init):
    from .stationary_static import lag_kernels_static, multistart, static_fixed_point

    points = None
    if r == 0 and init is None and opts["starts"] > 1:
        # several starts on the same draws: a non-convex model can have several stationary points;
        # the solve continues from the lowest regularised empirical risk and lists them all
        points, failed = multistart(kern, model, settings, p, samples=min(opts["samples"], 10000),
                                    seed=settings.seed, starts=opts["starts"])
        points = {"points": points, "failed": failed}
        if points["points"]:
            init = points["points"][0]["state"]
    st = static_fixed_point(kern, model, settings, p, samples=opts["samples"], seed=settings.seed,
                            replica=r, init=init, max_iter=max(opts["max_iter"], 200),
                            tol=min(opts["tol"], 1e-8))
    if st["status"] == STATUS_NO_STATE:
        return st
    K, R = lag_kernels_static(st["J_samples"][:512], st["chi"], settings.lam, settings.delta, settings.dt,
                              opts["window"])
    W = K.shape[0] - 1
    m = st["Q"].shape[0]
    Ell = st["E_ell_ell"]
    st.update(K=K, R=R, S=np.broadcast_to(Ell * settings.dt ** 2 / settings.delta, (W + 1, m, m)).copy(),
              C_theta=np.broadcast_to(st["Q"], (W + 1, m, m)).copy(), lags=settings.dt * np.arange(W + 1),
              converged=st["status"] == "ok", state={"chi": st["chi"], "M": st["M"], "c": st["c"]},
              fixed_points=points)
    return st


def _replica_tau(kern, model, settings, p, opts, r, init):
    from .stationary_dmft import init_from_static, solve_stationary
    from .stationary_static import lag_kernels_static, static_fixed_point

    if init is None:
        st = static_fixed_point(kern, model, settings.replace(tau=0.0), p, samples=min(opts["samples"], 8000),
                                seed=settings.seed, replica=r)
        if st["status"] == STATUS_NO_STATE:
            init = "auto"  # no tau = 0 state (e.g. ridge-less): start from a short causal solve
        else:
            K0, _ = lag_kernels_static(st["J_samples"][:128], st["chi"], settings.lam, settings.delta,
                                       settings.dt, opts["window"], tol=1e-6)
            W = max(2, int(round(opts["window"] / settings.dt)))
            init = init_from_static(st, K0, settings.tau, settings.delta, settings.dt, W)
    P = max(opts["paths"] // opts["replicas"], 2 * opts["groups"])
    return solve_stationary(model, settings, paths=P, window=opts["window"], init=init, tol=opts["tol"],
                            max_iter=opts["max_iter"], damping=opts["damping"], groups=opts["groups"],
                            targets=opts["targets"], replica=r, anderson=opts["anderson"], window_check=r == 0,
                            cross_fit=bool(opts["cross_fit"]))


def resolve_options(settings, options: dict) -> dict:
    """The options of :func:`stationary` (DEFAULTS updated by ``options``) as numbers, each in its
    range, validated without running anything: one SettingsError naming the option and its range
    (also used by the sweep before any point runs)."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise SettingsError(f"unknown stationary option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}.")
    opts = dict(DEFAULTS, **options)

    def bad(key, need):
        return SettingsError(f"stationary: {key} = {opts[key]!r}: {need}.")

    for key, low in (("paths", 1), ("replicas", 2), ("samples", 1), ("theta_samples", 0), ("max_iter", 1),
                     ("groups", 1), ("targets", 1), ("anderson", 0), ("starts", 1)):
        try:  # numbers, or their text (the sweep's grid values)
            v = None if isinstance(opts[key], bool) else whole(opts[key])
        except (TypeError, ValueError, OverflowError):
            v = None
        if v is None or v < low:
            raise bad(key, f"give a whole number >= {low}" + (" (error bars need two replicas)" if key == "replicas"
                                                               else ""))
        opts[key] = v
    for key in ("window", "tol", "damping"):
        try:
            opts[key] = float(opts[key])
        except (TypeError, ValueError):
            raise bad(key, "give a number") from None
    if not (math.isfinite(opts["window"]) and opts["window"] > 2 * settings.dt):
        raise bad("window", f"give a finite memory window longer than 2 dt = {2 * settings.dt:g} (time units)")
    if not 0.0 < opts["tol"] < 1.0:
        raise bad("tol", "give a relative tolerance in (0, 1), e.g. 3e-4")
    if not 0.0 <= opts["damping"] < 1.0:
        raise bad("damping", "give a damping in [0, 1)")
    return opts


@solver_threads  # dynamic schedule, BLAS on one thread (dmftgen/threads.py)
def stationary(model, settings, **options) -> Result:
    """Stationary state of the discrete DMFT of ``model`` at ``settings`` (module docstring).

    Parameters
    ----------
    model : dmftgen.model.Model
        Any built-in or declared model with m <= 3 and any number of teacher columns; ridge
        h = lam theta, and a declared regulariser H (lag route with a Monte Carlo theta-side, at
        tau = 0 too).
    settings : dmftgen.config.Settings
        delta, tau >= 0, lam, dt (the step whose stationary state is computed; at tau = 0 the
        state does not depend on it), seed, params. ``T`` is not used.
    **options
        paths (8000, tau > 0: r-paths in total), replicas (4), window (30: memory truncation in
        time units), samples (40000, tau = 0: draws per replica), theta_samples (2000), tol
        (3e-4: relative residual |G(x) - x| of the kernels; tau = 0 uses min(tol, 1e-8)),
        max_iter (100), damping (0: plain steps are undamped), anderson (4: Anderson memory, 0
        for plain iteration), groups (10), targets (2: adjoint targets per path), starts (4:
        multi-start search at tau = 0, 1 to skip it), cross_fit (False: Q and M from the theta-side
        at the kernels of the fresh final pass, see dmftgen.dmft.stationary_dmft).

    Returns
    -------
    dmftgen.results.Result
        See the module docstring for the keys; ``meta`` has the settings, options, per-replica
        iterations, residuals and times, and the total wall and CPU time.
    """
    from ..codegen import load_kernels
    from .stationary_static import check_supported

    opts = resolve_options(settings, options)
    kern = load_kernels(model)
    check_supported(kern, model)
    p = model.param_vector(settings.params)
    t0, c0 = time.perf_counter(), time.process_time()
    # tau = 0 with a declared H: the static equations assume a Gaussian theta row, so the lag
    # route with its Monte Carlo theta-side (whose noiseless paths settle to the regularised ERM)
    one = _replica_tau0 if settings.tau == 0 and not getattr(kern, "HAS_REG", False) else _replica_tau
    reps, init = [], None
    for r in range(opts["replicas"]):
        out = one(kern, model, settings, p, opts, r, init)
        reps.append(out)
        if out["status"] == STATUS_NO_STATE:
            break
        # the next replica starts from the mean of the converged states so far (closest to its own
        # fixed point, which differs from theirs by Monte Carlo error only)
        init = {key: np.mean([x["state"][key] for x in reps], axis=0) for key in out["state"]}
        if out.get("secants") is not None:  # tau > 0: Anderson history of the last replica's map
            init["secants"] = out["secants"]
    meta = {"kind": "stationary", "model": model.name, "source_hash": kern.SOURCE_HASH,
            "settings": settings.as_dict(), "options": opts, "versions": versions(),
            "route": "static fixed point (tau = 0, ERM)" if one is _replica_tau0 else
                     "lag-kernel fixed point at step dt" + (", Monte Carlo theta-side (declared H)"
                                                            if getattr(kern, "HAS_REG", False) else ""),
            "replica_iterations": [int(x.get("iterations", 0)) for x in reps],
            "replica_residuals": [float(x["residuals"][-1]) if x.get("residuals") else None for x in reps],
            "replica_residual_seq": [[float(v) for v in x.get("residuals", [])] for x in reps],
            "replica_time_s": [float(x.get("time_s", 0.0)) for x in reps if "time_s" in x],
            }
    if reps[-1]["status"] == STATUS_NO_STATE:
        meta["timings"] = {"total_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
        return Result({"t": np.array([np.inf])}, meta, status=STATUS_NO_STATE,
                      message=reps[-1].get("message", "no stationary state (the fixed point runs away)"))
    data = _combine(kern, model, settings, p, reps, opts)
    meta["error_budget"] = data.pop("_budget")
    meta["error_dof"] = len(reps) - 1  # of the statistical part: compare with Student's t, not a normal
    meta["errors"] = (
        f"*_err = sqrt(stat^2 + iteration^2 + window^2): stat the between-replica standard error over "
        f"{len(reps)} independent solves (kernel feedback included); " + (
            "iteration and window zero (the tau = 0 static fixed point is solved to 1e-8 and has no "
            "memory truncation)" if one is _replica_tau0 else
            "iteration = the distance of the last iterate from the fixed point (2 x residual / last step x "
            "the last change of the observable); window = 2 mu |D|, D the change of the observable when "
            "the geometric continuations of R and K beyond the window are dropped (one pass on the same "
            "random numbers), mu the relative error of that continuation measured inside the window "
            "(from W/2 predicting W/2..W). meta.error_budget has the three parts per observable; "
            "meta.window_tail the relative tail masses of R and K beyond the window and mu"))
    if one is _replica_tau:
        meta["window_tail"] = [x.get("window_tail") for x in reps]
    found = reps[0].get("fixed_points")
    pts = found["points"] if found else None
    if found is not None:
        meta["fixed_points"] = [{"Q": q["Q"].tolist(), "M": q["M"].tolist(), "train_loss": q["train_loss"],
                                 "objective": q["objective"], "starts": q["starts"]} for q in pts]
        meta["failed_starts"] = [{"start": j, "status": s} for j, s in found["failed"]]
    Rn = np.sqrt((data["R_lag"] ** 2).sum(axis=(1, 2)))
    meta["warnings"] = []
    if pts is not None and len(pts) > 1:
        meta["warnings"].append(
            f"{len(pts)} distinct stationary points from {opts['starts']} starts (non-convex model; up to a "
            "permutation of the units): " + "; ".join(
                f"objective {q['objective']:.6g}, train loss {q['train_loss']:.5g}, Q diag "
                f"{np.round(np.diag(q['Q']), 4).tolist()}, M {np.round(np.ravel(q['M']), 4).tolist()}" for q in pts)
            + ". Reported: the lowest objective delta E[L] + lam tr Q / 2 (meta.fixed_points lists them)")
    if Rn[-1] > 0.05 * Rn[1]:
        meta["warnings"].append(f"the response R has decayed only to {Rn[-1] / Rn[1]:.2g} of R(1) at the end of "
                                f"the window ({opts['window']:g}): use a larger --window")
    meta["timings"] = {"total_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    bad = [x for x in reps if x["status"] != "ok"]
    status = "not-converged" if bad else "ok"
    message = "" if not bad else (f"{len(bad)} of {len(reps)} replicas did not reach tol = {opts['tol']:g} "
                                  f"in {opts['max_iter']} iterations (last residuals "
                                  f"{[round(r, 5) for r in meta['replica_residuals'] if r is not None]})")
    spans, why = window_spans_decay(data["R_lag"]) if one is _replica_tau else (True, "")
    if not spans and status == "ok":
        status = STATUS_WINDOW
        message = (f"{why}; the relaxation time is {float(data['relaxation_time'][0]):.3g} (at least, with the "
                   f"tail cut): use a --window of several relaxation times (now {opts['window']:g}), or a "
                   "larger --lam")
    return Result(data, meta, status=status, message=message)


def _observables(kern, model, settings, p, x, rho):
    """The reported one-time observables of one replica's solve (dict of floats / arrays)."""
    d = {"train_loss": x["train_loss"], "Q": x["Q"], "M": x["M"], "Gamma": x["Gamma"],
         "E_r_ell": x["E_r_ell"], "E_ell_ell": x["E_ell_ell"],
         "relaxation_time": _relaxation_time(x["R"], settings.dt)}
    for name in model.metrics:
        d[f"train_{name}"] = x[f"train_{name}"]
    d.update(_test(kern, model, np.asarray(x["Q"]), np.asarray(x["M"]), rho, p))
    return d


def _combine(kern, model, settings, p, reps, opts):
    """Replica means and between-replica standard errors in the Result layout."""
    rho = reps[0]["rho"]
    k = rho.shape[0]
    rho_inv = np.linalg.inv(rho) if k else np.zeros((0, 0))
    per, iters = [], []
    for x in reps:
        d = _observables(kern, model, settings, p, x, rho)
        per.append(d)
        # iteration error of one replica, the larger of two estimates:
        # (a) the last input x_k is off the fixed point by about 2 |G(x_k) - x_k| (contraction
        #     g <= 0.5 of the map) and an observable's sensitivity to x is at least its largest
        #     change per unit step along the iteration: 2 res_k max_j |obs_j - obs_{j-1}| / step_j;
        # (b) if each observable's error contracts by rho <= max(0.5, res_k / res_{k-1}) per pass,
        #     e_k <= rho / (1 - rho) |obs_k - obs_{k-1}|.
        # Checked against a solve to tol 1e-7 on the same random numbers (tests/test_stationary.py).
        it = {}
        hist, steps = x.get("obs_hist"), x.get("steps")
        if hist is not None and len(hist) > 1:
            ds = [_observables(kern, model, settings, p, dict(x, **h), rho) for h in hist]
            res = x["residuals"]
            rate = min(0.9, max(0.5, res[-1] / res[-2]))
            for key in d:
                sens = np.max([np.abs(np.asarray(ds[j][key], float) - np.asarray(ds[j - 1][key], float))
                               / max(steps[j - 1], 1e-300) for j in range(1, len(ds))], axis=0)
                last = np.abs(np.asarray(ds[-1][key], float) - np.asarray(ds[-2][key], float))
                it[key] = np.maximum(2.0 * res[-1] * sens, last * rate / (1.0 - rate))
            it["Q"] = np.maximum(it["Q"], 2.0 * np.abs(np.asarray(x.get("Q_iter", x["Q"])) - np.asarray(x["Q_in"])))
        for key in d:
            v = np.abs(np.asarray(d[key], float))
            if key not in it:  # tau = 0: solved to 1e-8; tau > 0 converged at its first pass: 2 res |value|
                it[key] = 2.0 * float(x["residuals"][-1]) * v if "obs_hist" in x else np.zeros_like(v)
        iters.append(it)
    # window error (tau > 0): the geometric continuations beyond the window change an observable by
    # D (one pass without them, on the same random numbers, first replica: the same state up to
    # Monte Carlo error in all replicas); the fixed point amplifies a one-pass change by at most 2,
    # and the continuation errs by a fraction mu of itself, mu measured inside the window (the
    # continuation from W/2 predicting lags W/2..W, the larger of R and K): 2 mu |D|. Test
    # observables through (Q, M); the relaxation time (whose R is continued the same way) likewise.
    win = {key: np.zeros_like(np.asarray(v, float)) for key, v in per[0].items()}
    wd = reps[0].get("window_delta")
    if wd is not None:
        x0 = reps[0]
        mu = max(x0["window_tail"]["mispredict_R"], x0["window_tail"]["mispredict_K"])
        for key in win:
            if key in wd:
                win[key] = 2.0 * mu * np.abs(wd[key])
        t0 = _test(kern, model, np.asarray(x0["Q"]), np.asarray(x0["M"]), rho, p)
        t1 = _test(kern, model, np.asarray(x0["Q"]) + wd["Q"], np.asarray(x0["M"]) + wd["M"], rho, p)
        for key in t0:
            win[key] = 2.0 * mu * np.abs(np.asarray(t1[key]) - np.asarray(t0[key]))
        win["relaxation_time"] = 2.0 * mu * np.abs(_relaxation_time(x0["R"], settings.dt)
                                                   - _relaxation_time(x0["R"], settings.dt, extend=False))
    data = {"t": np.array([np.inf]), "rho": rho}
    budget = {}
    for key in per[0]:
        arr = np.array([np.asarray(d[key], float) for d in per])
        stat = replica_error(arr)
        # iteration and window errors are biases shared by the replicas (they start from each
        # other's kernels): their replica mean, not divided by sqrt(R); added in quadrature
        itr = np.mean([d[key] for d in iters], axis=0)
        win_k = win[key]
        data[key] = arr.mean(0)[None]
        data[key + "_err"] = np.sqrt(stat ** 2 + itr ** 2 + win_k ** 2)[None]
        budget[key] = {"stat": np.asarray(stat).tolist(), "iteration": np.asarray(itr).tolist(),
                       "window": np.asarray(win_k).tolist()}
    data["_budget"] = budget
    W1 = min(x["K"].shape[0] for x in reps)
    for key, src in (("K_lag", "K"), ("R_lag", "R"), ("S_lag", "S"), ("C_lag", "C_theta")):
        data[key] = np.mean([x[src][:W1] for x in reps], axis=0)
    data["lag"] = settings.dt * np.arange(W1)
    Ks = data["K_lag"].sum(0) + (np.mean([x["K_tail"] for x in reps], axis=0) if "K_tail" in reps[0] else 0.0)
    m = Ks.shape[0]
    if "theta_rows" in reps[0]:  # a declared H: chi = dt sum_n R(n), R from the theta-paths' tangents
        data["chi"] = np.mean([x["chi"] for x in reps], axis=0)
    else:
        data["chi"] = np.linalg.inv(settings.lam * np.eye(m) + Ks) if np.linalg.det(
            settings.lam * np.eye(m) + Ks) != 0 else np.full((m, m), np.nan)
    S = opts["theta_samples"]
    if "theta_rows" in reps[0]:
        # a declared H: the law of a theta row is not Gaussian; its samples are the theta-paths
        # themselves (the last step of every path of every replica's fresh set, with their theta*)
        data["theta_samples"] = np.concatenate([x["theta_rows"] for x in reps])[:S][None]
        data["theta_star_samples"] = np.concatenate([x["theta_star_rows"] for x in reps])[:S]
        return data
    # law of a theta row: Gaussian given theta* (the theta-side is linear for h = lam theta)
    Q, Mo = data["Q"][0], data["M"][0]
    cfl = Q - (Mo @ rho_inv @ Mo.T if k else 0.0)
    w, v = np.linalg.eigh(0.5 * (cfl + cfl.T))
    L = v * np.sqrt(np.clip(w, 0.0, None))
    rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 29]))
    ths = math.sqrt(rho[0, 0]) * rng.standard_normal((S, k)) if k else np.zeros((S, 0))
    th = rng.standard_normal((S, m)) @ L.T + (ths @ (Mo @ rho_inv).T if k else 0.0)
    data["theta_samples"] = th[None]
    data["theta_star_samples"] = ths
    return data


__all__ = ["stationary", "DEFAULTS", "STATUS_NO_STATE"]
