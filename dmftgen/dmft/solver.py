"""The DMFT solve (docs/theory.md sections 2-3): ``solve``, one solve's state, and replicas.

The scheme is the exact large-d limit of the Euler--Maruyama SGF at the same step dt. The pieces,
one job per module:

==========================  ===================================================================
:mod:`.options`             ``SolveOptions``: the typed, validated options
:mod:`.streams`             the random streams (static draws, input normals, Brownian increments)
:mod:`.modes`               deterministic tangents / nu (what the model allows)
:mod:`.tangents`            how many paths carry the adjoint tangents; the control variate
:mod:`.rside`               the r-side path engine: accumulators and the generated ``dmft_paths``
:mod:`.theta`, :mod:`.theta_mc`   the theta-side: deterministic (h = lam theta) and Monte Carlo
                            (declared H), one interface; the r-side Gaussian input
:mod:`.sampler`             the causal factor L L^T = S_U (Cholesky, or QR near tau = 0)
:mod:`.estimators`          kernel estimators (Gamma, K_ell rows, S_U, nu by Stein or pathwise)
:mod:`.errorbars`           batch means, jackknife, propagation, replica combination
:mod:`.forward`, :mod:`.fixed_point`, :mod:`.extrapolation`   the drivers (sweep, fixed point, Richardson)
:mod:`.assemble`            the Result of a finished solve; :mod:`.checks` its self-checks
==========================  ===================================================================
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import SettingsError, UnsupportedModelError
from ..results import Result
from ..stability import flag_instability
from ..threads import solver_threads
from . import streams as _streams
from .assemble import result as _result
from .checks import pooled, verdict
from .errorbars import combine_replicas, fold_two_time
from .memory import check_memory
from .modes import detect
from .options import SolveOptions
from .rside import RSide
from .tangents import control_variate
from .theta import ThetaSide

METHODS = ("sweep", "fixed-point")


def check_paths(paths: int, opts: SolveOptions) -> None:
    """SettingsError unless ``paths`` gives every path group >= 2 paths, in every replica
    (``opts.replicas``, "auto" resolved as the solve does); also used by the sweep before it runs."""
    paths, G = int(paths), opts.groups
    if paths < 2 * G:
        raise SettingsError(f"paths={paths} (--paths) is too few for {G} path groups; use paths >= {2 * G} "
                            "(typically 10^4 or more).")
    R = opts.n_replicas(paths)
    if R > 1 and paths // R < 2 * G:
        raise SettingsError(f"replicas={R}: each replica needs >= {2 * G} paths; "
                            f"use more paths (--paths) or fewer replicas (--replicas).")


def check_solve(model, settings, paths, method, opts: SolveOptions) -> str:
    """Everything :func:`solve` checks before computing, without running anything (also the sweep's
    check of each point before any runs): the method, the paths per group and replica
    (:func:`check_paths`), the memory at ``settings`` (:func:`dmftgen.dmft.memory.check_memory`).
    Returns the method ("sweep" for None)."""
    method = method or "sweep"
    if method not in METHODS:
        raise SettingsError(f"method {method!r}: use 'sweep' or 'fixed-point'.")
    check_paths(paths, opts)
    check_memory(model, settings, paths, opts, method)
    return method


class Solve:
    """The state of one DMFT solve: settings, options, draws, modes, the r-side and theta-side.

    Parameters
    ----------
    model, settings : Model, Settings
    paths : int
        P, the Monte Carlo r-paths (in ``opts.groups`` groups).
    method : {"sweep", "fixed-point"}
    theta_samples : int
        Samples of the law of a theta row to return (0: none).
    progress : bool
        tqdm bar.
    opts : SolveOptions
    replica, n_replicas : int
        Replica index r (its own random streams for r > 0) of R = ``n_replicas`` (the tangent
        budget is shared among them).
    """

    def __init__(self, model, settings, paths, method, theta_samples, progress, opts, replica=0,
                 n_replicas=1):
        from ..codegen import load_kernels

        self.t_start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.model, self.settings, self.opts = model, settings, opts
        self.kern = kern = load_kernels(model)
        self.reg = bool(getattr(kern, "HAS_REG", False))
        if self.reg and method != "sweep":
            raise SettingsError(
                f"model `{model.name}` declares a regulariser H (Monte Carlo theta-side): only "
                "method='sweep' is implemented for it.")
        if not hasattr(kern, "dmft_paths"):
            raise UnsupportedModelError(
                f"generated/{model.name}.py has no DMFT sweep kernel; run: python -m dmftgen generate {model.name}")
        if method not in METHODS:
            raise SettingsError(f"method {method!r}: use 'sweep' or 'fixed-point'.")
        paths = int(paths)
        G = opts.groups
        check_paths(paths, opts)
        if int(theta_samples) < 0:
            raise SettingsError(f"theta_samples={theta_samples} must be >= 0.")
        if opts.threads:
            import numba
            numba.set_num_threads(int(opts.threads))
        self.p = model.param_vector(settings.params)
        self.method, self.P, self.G = method, paths, G
        self.theta_samples, self.progress = int(theta_samples), progress
        self.m, self.kk = int(kern.M), int(kern.K)
        self.N = settings.n_steps
        self.dt, self.delta, self.tau, self.lam = settings.dt, settings.delta, settings.tau, settings.lam
        self.init_std = model.init_std_value(self.p)
        self.teacher_std = model.teacher_std_value(self.p)
        self.sigma0 = self.init_std ** 2 * np.eye(self.m)
        self.rho = self.teacher_std ** 2 * np.eye(self.kk)
        self.bounds = np.linspace(0, paths, G + 1).round().astype(np.int64)
        self.streams = _streams.draw(model, settings.seed, int(replica), paths, self.N, self.m, self.kk,
                                     int(kern.NZ), self.dt, self.init_std, self.teacher_std, opts.refine,
                                     static_qmc=opts.static_qmc, histories=opts.histories)
        self.n_replicas = int(n_replicas)
        self.modes = detect(kern, self.p, self.streams.s, self.streams.z, self.bounds, self.N, opts, self.reg,
                            self.tau, self.n_replicas)
        self.rside = RSide(kern, self.p, self.streams, self.bounds, settings, self.m, self.kk, self.modes,
                           control_variate(opts, self.tau, self.n_replicas), row_sums=self.use_row_sums())
        # filled by the driver (rows: the self-checks' checks.RowRecord in row mode)
        self.th = self.S_U = self.L_S = self.W_in = self.gram = self.k_done = self.rows = None
        self.n_clipped, self.timing, self.residuals, self.converged = 0, {}, [], None

    def use_row_sums(self):
        """Row mode (issue 12): the plain forward sweep keeps only row k of the per-group two-time
        sums su_sum / kl_sum (not the fixed point, the Monte Carlo theta-side, nor the group
        jackknife of replicas=1, which need every row of every group at the end)."""
        return (self.method == "sweep" and not self.reg
                and not (self.opts.jackknife and self.n_replicas == 1))

    def new_theta(self, qr=False):
        """A fresh theta-side: deterministic, or Monte Carlo for a declared regulariser (whose
        joint Gaussian input is factored by QR if ``qr``)."""
        if self.reg:
            from .theta_mc import make_theta_mc

            return make_theta_mc(self.kern, self.p, self.settings, self.m, self.kk, self.init_std,
                                 self.teacher_std, self.streams.rng_theta_paths, self.streams.rng_zeta,
                                 self.opts, self.P, self.G, qr)
        return ThetaSide(self.N, self.m, self.kk, self.lam, self.dt, self.delta, self.rho, self.sigma0,
                         A=self.modes.A, D=self.modes.D)

    def run(self):
        """(finished grid points, converged) of the driver of ``method``."""
        if self.method == "sweep":
            from .forward import sweep

            return sweep(self), True
        from .fixed_point import fixed_point

        reached = fixed_point(self)
        return reached, self.converged

    def result(self, reached, status, message) -> Result:
        return _result(self, reached, status, message)


@solver_threads  # dynamic schedule, BLAS on one thread (dmftgen/threads.py)
def solve(model, settings, *, paths: int = 20000, method: str | None = "sweep", theta_samples: int = 0,
          progress: bool = False, richardson: bool = False, allow_outside_theory: bool = False,
          **options) -> Result:
    """Solve the discrete-time DMFT of the SGF of ``model`` on the grid of ``settings``.

    Parameters
    ----------
    model : dmftgen.model.Model
    settings : dmftgen.config.Settings
        delta, tau, lam, T, dt, seed, params; grid t_k = k dt, k = 0..N.
    paths : int
        Monte Carlo r-paths P (the solver's error bars scale as P^{-1/2}).
    method : {"sweep", "fixed-point"}
        "sweep": causal forward sweep (each time row uses earlier rows only; no iteration).
        "fixed-point": damped iteration over whole trajectories on common random numbers
        (``damping``, ``tol``, ``max_iter``, ``sampler``), a cross-check.
    theta_samples : int
        If > 0, also return ``theta_samples`` (N+1, S, m): S draws of the law of a theta row at
        every time (with ``theta_star_samples`` (S, k)), for W2 comparisons.
    progress : bool
        tqdm progress bar.
    richardson : bool
        Solve at dt and dt/2 and return the Richardson combination
        (:func:`dmftgen.dmft.extrapolation.richardson`).
    allow_outside_theory : bool
        Run a model whose ell jumps in r (refused otherwise, see dmftgen.dmft.assumptions); the
        result's status is then ``outside_theory`` (unless it failed otherwise).
    **options
        The fields of :class:`dmftgen.dmft.options.SolveOptions` (groups, tangent_paths,
        tangent_budget, tangent_cv, pivot_tol, gram, qr_tol, nu, damping, max_iter, tol, sampler,
        blowup, threads, jackknife, replicas, theta_paths, refine); an unknown name is a
        SettingsError.

    Returns
    -------
    dmftgen.results.Result
        t, train_loss, test_loss, train_/test_<metric> (each with *_err), Q, M (with _err),
        C_theta, R_theta, K_ell, Gamma, R_ell, nu, S_U, Phi0, Phi_star, E_r_ell, E_ell_ell, and
        optionally theta_samples; status "ok" / "diverged" / "not-converged" / "inaccurate" /
        "unstable" / "interrupted".
    """
    from .assumptions import require_theory

    outside = require_theory(model, allow=allow_outside_theory)
    opts = SolveOptions.from_kwargs(options)
    check_solve(model, settings.replace(dt=settings.dt / 2) if richardson else settings, paths, method, opts)
    if richardson:
        from .extrapolation import richardson as extrapolated

        res = extrapolated(model, settings, paths=paths, method=method, progress=progress,
                           allow_outside_theory=allow_outside_theory, **options)
    else:
        res = _solve(model, settings, paths, method or "sweep", theta_samples, progress, opts)
    if outside:
        res.meta["outside_theory"] = outside
        if res.status in ("ok", "inaccurate"):
            extra = f"; {res.message}" if res.status == "inaccurate" else ""
            res.status, res.message = "outside_theory", f"run outside the theory: {outside}{extra}"
    return res


def _solve(model, settings, paths, method, theta_samples, progress, opts):
    # method None means the sweep: exact at every tau (Cholesky of S_U for tau > 0, QR of the
    # increments near tau = 0; tests/test_selfchecks.py: gradient flow, m = 2, against SGF)
    R = opts.n_replicas(paths)
    opts = opts.but(replicas=R)
    if R > 1:
        return _solve_replicas(model, settings, paths, method, theta_samples, progress, opts)
    return _solve_one(model, settings, paths, method, theta_samples, progress, opts)


def _solve_one(model, settings, paths, method, theta_samples, progress, opts, replica=0, n_replicas=1):
    sv = Solve(model, settings, paths, method, theta_samples, progress, opts, replica, n_replicas)
    N = sv.N
    interrupted = False
    try:
        reached, conv = sv.run()
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: the sweep's finished rows are a valid record
        if sv.k_done is None:
            raise
        reached, conv, interrupted = sv.k_done, True, True
    if interrupted:
        status = "interrupted"
        message = (f"interrupted at t = {settings.times[reached]:g}; results are kept up to t = "
                   f"{settings.times[reached - 1] if reached else 0.0:g}" if reached else
                   "interrupted before the first time was finished")
    elif reached <= N:
        t_r = settings.times[reached - 1] if reached else 0.0
        status = "diverged"
        message = (f"the DMFT dynamics blew up at t = {settings.times[reached]:g} (step {reached}); "
                   f"results are kept up to t = {t_r:g}.")
    elif not conv:
        status = "not-converged"
        message = (f"fixed point did not converge in {len(sv.residuals)} iterations "
                   f"(last relative change {sv.residuals[-1]:.3g} > tol {opts.tol:g}).")
    else:
        status, message = "ok", ""
    return flag_instability(sv.result(reached, status, message), sv.kern, model, settings)


def _solve_replicas(model, settings, paths, method, theta_samples, progress, opts):
    """R independent solves with paths/R paths each (own kernels, theta-side, random streams),
    combined by :func:`dmftgen.dmft.errorbars.combine_replicas`. Unlike batch means within one
    solve, their spread includes the feedback of kernel errors into later paths (shared by all
    groups of one solve). The bias of the finite-P system grows like R/P and is not in the error
    bars: mostly negligible for paths/R >= 10^3, but not at long horizons without a ridge (linreg,
    lam 0, T 100: the test loss's plateau 0.0066 below the exact floor with 1000 paths per replica,
    ~1.8 error bars; 0.0021 with 4000; docs/longtime.md). Where it matters, compare two path counts.

    Issue 12: the replicas' two-time results are summed as they finish
    (:func:`~dmftgen.dmft.errorbars.fold_two_time`: memory 5 K^2 m^2, not 5 R K^2 m^2), and the
    test observables are evaluated once, at the replica mean of (Q, M), with the between-replica
    error propagated to first order (``observables.replica_test_observables``; the replicas skip
    them, see :func:`dmftgen.dmft.assemble.result`)."""
    R = int(opts.replicas)
    check_paths(paths, opts)
    # each replica's checks at alpha / (2 R), the checks pooled over the replicas at alpha / 2: the
    # solve's status keeps the family-wise rate alpha (checks.pooled)
    sub = opts.but(replicas=1, jackknife=False, check_alpha=opts.check_alpha / (2 * R))
    # theta samples from every replica (S/R each)
    S = int(theta_samples)
    per = [S // R + (1 if r < S % R else 0) for r in range(R)]
    res, full = [], []  # the replicas' Results, their checks with the per-entry residuals
    two = {}  # running sums of the two-time arrays (issue 12: memory 5 K^2 m^2, not 5 R K^2 m^2)
    w0, c0 = time.perf_counter(), time.process_time()
    for r in range(R):
        one = _solve_one(model, settings, paths // R, method, per[r], progress, sub, r, R)
        full.append(one.meta.pop("_checks_full", None))
        if one.status == "interrupted":
            # Ctrl-C: stop at once; the finished part of this replica is what there is
            one.message += f" (replica {r + 1} of {R}; the remaining replicas were not run)"
            return one
        fold_two_time(two, one)
        res.append(one)
    from ..codegen import load_kernels

    kern = load_kernels(model)
    out = combine_replicas(res, paths, two=two, kern=kern, model=model, settings=settings)
    # the options the user gave (the replicas' own, in replica_meta, have replicas = 1 and their
    # share of check_alpha)
    out.meta["options"] = opts.as_dict()
    if all(f is not None for f in full):
        pool = pooled(full, opts.check_alpha / 2)
        out.meta["pooled_checks"] = pool
        if out.status == "ok":
            out.status, out.message = verdict(pool)
    # the whole solve's seconds (combine_replicas sums the replicas' parts; this adds its own)
    out.meta["timings"].update(total_s=time.perf_counter() - w0, cpu_s=time.process_time() - c0)
    # the replicas' growth test saw only their train loss: the test loss is checked here
    return flag_instability(out, kern, model, settings)


__all__ = ["solve", "Solve", "SolveOptions", "METHODS"]
