"""Orchestration of the discrete-time DMFT solve (docs/theory.md §2-3): sweep and fixed point.

The scheme is the exact large-d limit of the Euler--Maruyama SGF at the same step dt.

Gaussian input of the r-process (the "PSD-by-construction" representation)
--------------------------------------------------------------------------
For h = lam*theta the theta-side is linear, theta_k = Phi0[k] theta^0 + Phis[k] theta* +
sum_{m<k} R_theta[k, m] dU_m with dU ~ N(0, S_U) independent of (theta^0, theta*). The r-side
Gaussian w (covariance C_theta, cross-covariance M with r*) is therefore sampled as

    w_k = Phi0[k] g0 + Phis[k] r* + sum_{m<k} R_theta[k, m] xi_m,     xi ~ N(0, S_U),

per path, with g0 ~ N(0, Sigma0), r* ~ N(0, rho) and xi independent; its covariance is C_theta
by construction. xi = L eta is drawn from S_U, not from C_theta, with L a causal (lower-triangular)
factor, L L^T = S_U: row block m of L needs only S_U[m, <=m], which the paths have just produced.
For tau > 0 the white part tau dt <ell ell^T> keeps the Schur complements of S_U away from zero
and the incremental Cholesky of S_U is well conditioned. Near tau = 0 (white fraction
tau delta / (dt + tau delta) < 0.05), S_U is the Gram matrix of smooth increments; its Cholesky
squares the condition number and clipping tiny pivots loses directions later rows need (measured:
|L L^T - S_U| / |S_U| = 1.8 at tau = 0, committee, dt = 0.02). There L comes from a rank-revealing
QR of the increments themselves (``_linalg.GramQR``), exact to round-off (docs/theory.md section 8).
Every solve checks L L^T = S_U and the other identities of ``checks.py``.

Teacher drift nu (m x k) by Stein's lemma in discrete time [derived here]
--------------------------------------------------------------------------
(w, r*) is jointly Gaussian; write w_l = M[l] rho^{-1} r* + w_perp_l with w_perp independent of
r*. For ell_k as a function of r* at fixed (w_perp, z, dB), Stein's identity (valid for a
distributional derivative, so label jumps count) gives E[ell_k r*^T] = E[D_{r*} ell_k] rho with
the total derivative D_{r*} ell_k = d ell_k/d r*|_w + sum_{l<=k} (d ell_k / d w_l) M[l] rho^{-1}.
The first term averages to nu[k] (teacher drift at fixed w, memory included), the second to
sum_l K_ell[k, l] M[l] rho^{-1}. Hence

    nu[k] = ( E[ell_k r*^T] - sum_{l<=k} K_ell[k, l] M[l] ) rho^{-1}.

Only the Gaussianity of (w, r*) is used (theta^0 independent of theta* is not needed here, and
holds for all built-in models). For continuous labels the pathwise estimator
nu[k] = E[d_s ell_k + grad ell_k psi_k] is used (lower variance).

Cost and memory (P paths, K = T/dt steps, width m)
--------------------------------------------------
* r-side sweep (memory and Gaussian-input sums, S_U row): O(P K^2 m^2) time, O(P K m) memory
  (the paths' histories eta, dL; never the P x K x K tangents).
* Response tangents: the adjoint recursion (template ``dmft_paths``) gives the row K_ell[k, :k]
  of one path from its own a_0..a_{k-1} in O(k^2 m^3): O(P_J K^3 m^3 / 6) time but O(P_J K m^2)
  memory. P_J is chosen once for the whole solve (``tangents.py``): the tangents cost at most
  what the r-side sweep costs and at most ``tangent_budget`` multiply-adds, with at least 50 paths
  per group, shared among the replicas (an unbiased subset: K_ell gets noisier, not biased). The
  control variate (``tangent_cv``, default on for tau > 0; at tau = 0 it equals its own mean and
  is skipped) costs 2x per tangent path and cuts the R_ell noise 3-5x in sd (measured, logistic).
  LINEAR_ELL models with one constant Jacobian need no per-path tangents at all.
* theta-side: O(K^3 m^3) deterministic linear algebra (or Monte Carlo theta-paths for HAS_REG).
* Memory (``memory.py``): O(P K m) path histories + O(K^2 m^2) two-time kernels. The forward sweep
  keeps only the current row of the per-group two-time sums su_sum / kl_sum ("row mode", template
  docstring; ``checks.RowRecord`` records what the self-checks need from them row by row), and the
  replicas' two-time results are summed as they finish; before (issue 12) both were O(G K^2 m^2)
  and O(R K^2 m^2). The fixed point and the group jackknife (replicas=1) keep every row.
* P-independent part (issue 12, bench/bench_issue12.py): per replica N+1 kernel launches, the
  theta-side and the self-checks; once per solve the test observables, at the replica mean of
  (Q, M) on the 2^16 common sample, with the error propagated from the between-replica spread by
  a finite-difference gradient (``observables.replica_test_observables``; before: one full
  evaluation per replica, 4/5 of this part). On a shared machine the idle OpenMP worker spins
  between the N+1 launches (measured: an empty launch costs 11 us CPU with one thread, 370 us
  with two, 18 us with two and OMP_WAIT_POLICY=PASSIVE), and OpenBLAS threads do the same on the
  theta-side's small products (100 x 100: 9x the CPU with 2 threads): set OMP_WAIT_POLICY=PASSIVE
  and OPENBLAS_NUM_THREADS=1 there.
Measured (bench/bench_dmft.py, logistic, control variate on, effectively one core): the path
time grows linearly in P (1.5, 2.6, 4.4, 8.9 s for P = 5k..40k at K = 100, all paths tangent),
like K^2 with a fixed tangent subset (0.9, 3.5, 17.3 s for K = 100, 200, 400), like K^2.3-K^2.4
with tangents on all paths (1.0, 5.0, 26.3 s for K = 50, 100, 200).

Error bars
----------
Batch means over path groups (r-side averages) and a group jackknife through the theta-side map
(Q, M, test observables) ignore the feedback of kernel errors into later paths, which all groups
share: at long horizons they are ~1.2-1.5x too small (measured on linreg at t = 5). Hence the
default ``replicas="auto"``: R = min(8, paths // (2 groups)) independent solves of paths/R paths
each (the cost is linear in the number of paths, so R replicas of P/R paths cost about one solve
of P paths), and ``*_err`` is the between-replica standard error sd/sqrt(R), feedback included
(test observables: F at the replica mean, error = sd_r of grad F . (Q_r - Qbar, M_r - Mbar) / sqrt(R))
(Student t with R - 1 degrees of freedom: ``meta["err_dof"]``). ``replicas=1`` restores the
within-solve estimates (``err_dof`` = groups - 1). Calibration: NOTES of issue 10 / README.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..errors import SettingsError, UnsupportedModelError
from ..results import Result, versions
from ._linalg import GramQR, chol_append, det_tangent_row, psd_sqrt
from .checks import RowRecord, run_checks, verdict
from .memory import check_memory
from ..stability import flag_instability
from .tangents import tangent_paths_per_group, use_control_variate
from .theta import ThetaSide

_OPTIONS = {
    "groups": 20,            # independent path groups (batch means; prange iterations)
    "tangent_paths": None,   # paths carrying the adjoint tangent (None: automatic budget)
    "tangent_budget": 4e10,  # multiply-adds allowed for the tangents when automatic
    "pivot_tol": 1e-11,      # relative pivot clipping of the incremental Cholesky of S_U
    "gram": "auto",          # causal factor of S_U: "qr" (stable), "cholesky", "auto" (qr near tau = 0)
    "qr_tol": 1e-12,         # rank-revealing QR: residual norms below qr_tol |dL_k| add no direction
    "nu": "auto",            # "auto" | "stein" | "pathwise"
    "damping": 0.3,          # fixed point: new <- (1 - damping) * new + damping * old
    "max_iter": 200,
    "tol": 1e-8,             # fixed point: max relative change of the kernels
    "sampler": "eigh",       # fixed point: "eigh" (symmetric sqrt of S_U) or "cholesky" (causal)
    "blowup": 1e10,          # train loss / <ell ell> / Q beyond this counts as diverged
    "threads": None,         # numba threads (None: numba default)
    "jackknife": True,       # error bars of Q, M, test observables by group jackknife
    "replicas": "auto",      # independent sub-solves (own theta-side each): honest error bars
    "theta_paths": None,     # theta-paths for a nonlinear regulariser (None: automatic budget)
    "refine": 0,             # draw the noises on the grid dt/2^refine and aggregate (coupling)
    "tangent_cv": True,      # control variate for the Monte Carlo tangents (see template docs)
}


def _check_options(options):
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise SettingsError(f"unknown solve option(s) {sorted(unknown)}; known: {sorted(_OPTIONS)}.")
    opts = dict(_OPTIONS)
    opts.update(options)
    if opts["nu"] not in ("auto", "stein", "pathwise"):
        raise SettingsError(f"option nu={opts['nu']!r}: use 'auto', 'stein' or 'pathwise'.")
    if opts["gram"] not in ("auto", "qr", "cholesky"):
        raise SettingsError(f"option gram={opts['gram']!r}: use 'auto', 'qr' or 'cholesky'.")
    if opts["sampler"] not in ("eigh", "cholesky"):
        raise SettingsError(f"option sampler={opts['sampler']!r}: use 'eigh' or 'cholesky'.")
    if not 0.0 <= float(opts["damping"]) < 1.0:
        raise SettingsError(f"option damping={opts['damping']}: must be in [0, 1).")
    return opts


class _Solver:
    """One DMFT solve: random numbers, path arrays, theta-side, kernels, observables."""

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
        if method not in ("sweep", "fixed-point"):
            raise SettingsError(f"method {method!r}: use 'sweep' or 'fixed-point'.")
        paths = int(paths)
        G = int(opts["groups"])
        if G < 2:
            raise SettingsError(f"option groups={G}: need at least 2 path groups for error bars.")
        if paths < 2 * G:
            raise SettingsError(f"paths={paths} is too few for {G} path groups; use paths >= {2 * G} "
                                "(typically 10^4 or more).")
        if int(theta_samples) < 0:
            raise SettingsError(f"theta_samples={theta_samples} must be >= 0.")
        if opts["threads"]:
            import numba
            numba.set_num_threads(int(opts["threads"]))
        self.p = model.param_vector(settings.params)
        self.replica, self.n_replicas = int(replica), int(n_replicas)
        self.method, self.P, self.G = method, paths, G
        self.theta_samples, self.progress = int(theta_samples), progress
        self.m, self.kk, self.nz = int(kern.M), int(kern.K), int(kern.NZ)
        self.N = settings.n_steps
        self.dt, self.delta, self.tau, self.lam = settings.dt, settings.delta, settings.tau, settings.lam
        self.sq = math.sqrt(self.tau * self.delta)
        self.init_std = model.init_std_value(self.p)
        self.teacher_std = model.teacher_std_value(self.p)
        self.sigma0 = self.init_std ** 2 * np.eye(self.m)
        self.rho = self.teacher_std ** 2 * np.eye(self.kk)
        self.bounds = np.linspace(0, paths, G + 1).round().astype(np.int64)
        self._draw()
        self._modes()

    # -- random numbers (common to every fixed-point iterate) -------------------------------------
    def _draw(self):
        P, N, m, kk = self.P, self.N, self.m, self.kk
        # stream 4: the DMFT solver; replica r > 0 gets its own independent stream
        key = [self.settings.seed, 4] if self.replica == 0 else [self.settings.seed, 4, self.replica]
        ss = np.random.SeedSequence(key)
        r_static, r_eta, r_dB, r_theta = (np.random.default_rng(c) for c in ss.spawn(4))
        self.s = np.ascontiguousarray(self.teacher_std * r_static.standard_normal((P, kk)))
        self.g0 = self.init_std * r_static.standard_normal((P, m))
        z = np.empty((P, self.nz))
        for j, law in enumerate(self.model.noise.values()):
            z[:, j] = law.sample(r_static, P)
        self.z = np.ascontiguousarray(z)
        # With refine = L > 0 the noises are drawn on the grid dt / 2^L and summed (Brownian
        # increments) or summed / sqrt(2^L) (the standard normals of the Gaussian input), so that
        # solves at dt, dt/2, dt/4 ... with the same seed share one fine noise (coupled paths):
        # their differences, e.g. for convergence studies or Richardson, lose most MC noise.
        L = int(self.opts["refine"])
        f = 2 ** L
        eta = r_eta.standard_normal((P, N * f * m))
        dB = r_dB.standard_normal((P, N * f))
        if f > 1:
            eta = eta.reshape(P, N, f, m).sum(2).reshape(P, N * m) / math.sqrt(f)
            dB = dB.reshape(P, N, f).sum(2) / math.sqrt(f)
        self.eta = np.ascontiguousarray(eta)
        self.dB = math.sqrt(self.dt) * dB
        self.rng_theta = r_theta
        # extra streams used only with a Monte Carlo theta-side (HAS_REG); spawned separately so
        # that the streams above are unchanged for every other model
        r_tp, r_zeta = (np.random.default_rng(c) for c in np.random.SeedSequence(key + [1]).spawn(2))
        self.rng_theta_paths, self.rng_zeta = r_tp, r_zeta

    # -- what the symbolic layer knows -----------------------------------------------------------
    def _modes(self):
        kern, m, kk = self.kern, self.m, self.kk
        n = min(self.P, 512)
        self.A = None
        self.D = None
        if kern.LINEAR_ELL:
            # Deterministic tangents need one constant Jacobian (it may still depend on s or z).
            J = np.empty((n, m, m))
            r0 = np.zeros((n, m))
            kern.jac_ell_batch(r0, self.s[:n], self.z[:n], self.p, J)
            if np.allclose(J, J[0], rtol=1e-12, atol=1e-14):
                self.A = np.ascontiguousarray(J[0])
        if kk == 0:
            self.nu_mode = "none"
        elif self.opts["nu"] != "auto":
            self.nu_mode = self.opts["nu"]
        else:
            self.nu_mode = "stein" if kern.DISCONTINUOUS else "pathwise"
        if self.nu_mode == "pathwise" and self.A is not None and not self.reg:
            ds = np.empty((n, m, kk))
            out = np.empty((m, kk))
            rng = np.random.default_rng(1)
            for i in range(n):
                kern.dell_ds_row(rng.standard_normal(m), self.s[i], self.z[i], self.p, out)
                ds[i] = out
            if np.allclose(ds, ds[0], rtol=1e-12, atol=1e-14):
                self.D = ds[0].copy()
                self.nu_mode = "deterministic"
        N, G = self.N, self.G
        if self.reg:
            self.A = None  # K_ell enters a Monte Carlo theta-side: keep the r-side estimator uniform
        if self.A is not None:
            self.n_tan_g = 0
        else:
            nt = self.opts["tangent_paths"]
            if nt is not None and int(nt) < G:
                raise SettingsError(f"option tangent_paths={nt}: need at least one per path group ({G}).")
            # P_J for the whole solve, shared among the replicas (tangents.py)
            self.n_tan_g = tangent_paths_per_group(self.P * self.n_replicas, N, m, G, self.opts, self.tau,
                                                   self.n_replicas, int(np.diff(self.bounds).min()))
        self.do_psi = self.nu_mode == "pathwise"

    # -- arrays of one pass ----------------------------------------------------------------------
    def _alloc(self):
        P, N, m, kk, G = self.P, self.N, self.m, self.kk, self.G
        NN, NI = (N + 1) * m, N * m
        self.dL = np.zeros((P, NI))
        self.a_hist = np.zeros((max(self.n_tan_g * G, 1), max(N, 1), m, m))
        self.g_hist = np.zeros((max(self.n_tan_g * G, 1), N + 1, m, m))
        self.b_hist = np.zeros((P, N, m, kk) if self.do_psi else (1, 1, m, kk))
        self.loss_sum = np.zeros((G, N + 1))
        self.met_sum = np.zeros((G, N + 1, int(self.kern.NMET)))
        self.gam_sum = np.zeros((G, N + 1, m, m))
        # row mode (issue 12): the forward sweep keeps only row k of the two-time group sums
        # (template docstring; checks.RowRecord keeps what the self-checks need from them)
        rows = self.row_sums = self._use_row_sums()
        self.kl_sum = np.zeros((G, m if rows else NN, NN)) if self.n_tan_g else np.zeros((G, 1, 1))
        self.use_cv = use_control_variate(self.opts, self.tau) and self.n_tan_g > 0
        # With the control variate the kernel accumulates sum(Z - Zc) into kl_sum in place (one
        # (G, NN, NN) array instead of two). klcv_sum stays readable for the self-checks (which
        # compute kl_sum - klcv_sum per group) as a zero view that takes no memory.
        self._klcv_arg = np.zeros((1, 1, 1))
        self.klcv_sum = np.broadcast_to(np.zeros((1, 1, 1)), (G, NN, NN) if self.use_cv else (G, 1, 1))
        if not hasattr(self, "Gcv"):
            self.Gcv = np.zeros((N + 1, m, m))     # control-variate matrices in a_l
            self.Gcv_g = np.zeros((N + 1, m, m))   # ... and at the row's own time k
            self.kl_det = np.zeros((NN, NN)) if self.use_cv else None
        self.ells_sum = np.zeros((G, N + 1, m, kk))
        self.dsl_sum = np.zeros((G, N + 1, m, kk))
        self.su_sum = np.zeros((G, m if rows else NI, NI))
        self.rows = RowRecord(G, N, m, self.kk) if rows else None
        self.rl_sum = np.zeros((G, N + 1, m, m))
        self.ll_sum = np.zeros((G, N + 1, m, m))
        self.bad = np.full(G, N + 1, dtype=np.int64)

    def _use_row_sums(self):
        """Row mode: the plain forward sweep (not the fixed point, the Monte Carlo theta-side, nor
        the group jackknife of replicas=1, which need every row of every group at the end)."""
        return (self.method == "sweep" and not self.reg
                and not (self.opts["jackknife"] and self.n_replicas == 1))

    def _group_row(self, arr, k):
        """Per-group block row k of a two-time group sum (G, m, cols) in either layout."""
        return arr[:, : self.m] if self.row_sums else arr[:, k * self.m:(k + 1) * self.m]

    def _run_paths(self, k0, k1, wpre, W, use_W, R, RT):
        self.kern.dmft_paths(k0, k1, self.N, self.bounds, self.n_tan_g, self.delta, self.dt, self.sq,
                             wpre, W, use_W, self.eta, R, RT, self.s, self.z, self.dB, self.p,
                             self.do_psi, self.dL, self.a_hist, self.g_hist, self.b_hist, self.loss_sum,
                             self.met_sum, self.gam_sum, self.kl_sum, self.ells_sum, self.dsl_sum,
                             self.su_sum, self.rl_sum, self.ll_sum, self.bad,
                             self.use_cv, self.Gcv, self.Gcv_g, self._klcv_arg)

    def _theta(self):
        return ThetaSide(self.N, self.m, self.kk, self.lam, self.dt, self.delta, self.rho, self.sigma0,
                         A=self.A, D=self.D)

    # -- kernel estimates from group sums (optionally leaving group `drop` out) -------------------
    def _kernels(self, drop=None, upto=None):
        G = self.G
        sizes = np.diff(self.bounds).astype(float)
        w = np.ones(G)
        if drop is not None:
            w[drop] = 0.0
        npath = float(sizes @ w)
        ntan = float(self.n_tan_g * w.sum())

        def avg(arr, n):
            return np.tensordot(w, arr, axes=1) / n

        out = {"gamma": avg(self.gam_sum, npath), "ells": avg(self.ells_sum, npath),
               "dsl": avg(self.dsl_sum, npath),
               "S_U": None}
        S = avg(self.su_sum, npath * self.delta)
        S = np.tril(S) + np.tril(S, -1).T
        out["S_U"] = S
        out["kl"] = avg(self.kl_sum, ntan) if self.n_tan_g else None
        if self.n_tan_g and self.use_cv:
            # kl_sum already holds sum(Z - Zc) (the control variate is subtracted in the kernel)
            out["kl"] = out["kl"] + self.kl_det
        return out

    def _set_row(self, th, k, kern):
        m = self.m
        rk = slice(k * m, (k + 1) * m)
        kw = {"gamma": kern["gamma"][k], "ells": None, "dsl": None}
        if kern["kl"] is not None:
            kw["kl_off"] = kern["kl"][rk, : k * m]
        if self.nu_mode == "stein":
            kw["ells"] = kern["ells"][k]
        elif self.nu_mode == "pathwise":
            kw["dsl"] = kern["dsl"][k]
        th.set_kernels(k, **kw)

    def _theta_full(self, kern, upto=None):
        th = self._theta()
        N = self.N if upto is None else upto
        for k in range(N + 1):
            self._set_row(th, k, kern)
            if k < self.N:
                th.advance(k)
        return th

    # -- the causal forward sweep ----------------------------------------------------------------
    def sweep(self):
        if self.reg:
            return self.sweep_reg()
        P, N, m, kk = self.P, self.N, self.m, self.kk
        NN, NI = (N + 1) * m, N * m
        self._alloc()
        th = self._theta()
        L = np.zeros((NI, NI))
        S = np.zeros((NI, NI))
        W = np.zeros((NN, max(NI, 1)))
        wpre = np.zeros((P, N + 1, m))
        self.n_clipped = 0
        reached = N + 1
        # rows finished so far, for a Ctrl-C between rows (see _solve_one)
        self.th, self.S_U, self.L_S, self.k_done, self.timing, self.residuals = th, S, L, 0, {}, []
        bar = _bar(self.progress, N + 1, "DMFT sweep")
        t_paths = t_theta = 0.0
        inv_dP = 1.0 / (self.delta * P)
        gq = GramQR(P, NI, math.sqrt(inv_dP), float(self.opts["qr_tol"])) if self._use_qr() else None
        self.gram = "qr" if gq is not None else "cholesky"
        for k in range(N + 1):
            t0 = time.perf_counter()
            rk = slice(k * m, (k + 1) * m)
            if k > 0:
                self.n_clipped += self._factor_rows(L, S, gq, (k - 1) * m, k * m)
                W[rk, : k * m] = th.R[rk, : k * m] @ L[: k * m, : k * m]
            wpre[:, k, :] = self.g0 @ th.Phi0[rk].T
            if kk:
                wpre[:, k, :] += self.s @ th.Phis[rk].T
            if k > 0:
                self.Gcv_g[k] = self.Gcv[k - 1]
            if self.row_sums:
                self.su_sum[:] = 0.0
                self.kl_sum[:] = 0.0
            t1 = time.perf_counter()
            self._run_paths(k, k + 1, wpre, W, True, th.R, th.RT)
            t2 = time.perf_counter()
            t_paths += t2 - t1
            if self.bad.min() <= k:
                reached = k
                break
            gam = self.gam_sum[:, k].sum(0) / P
            kw = {"gamma": gam}
            if self.n_tan_g:
                kw["kl_off"] = self._kl_row(k, th)
            self.Gcv[k] = gam
            if self.nu_mode == "stein":
                kw["ells"] = self.ells_sum[:, k].sum(0) / P
            elif self.nu_mode == "pathwise":
                kw["dsl"] = self.dsl_sum[:, k].sum(0) / P
            th.set_kernels(k, **kw)
            if self.rows is not None:
                self.rows.add(self, k, th, W)
            if k < N:
                row = self._group_row(self.su_sum, k)[:, :, : (k + 1) * m].sum(0) * inv_dP
                S[rk, : (k + 1) * m] = row
                S[: (k + 1) * m, rk] = row.T
                th.advance(k)
            if not self._finite_row(k, th):
                reached = k
                break
            t_theta += time.perf_counter() - t2 + (t1 - t0)
            bar.update(1)
            self.k_done = k + 1
        bar.close()
        self.th, self.S_U, self.L_S = th, S, L
        self.W_in, self.wpre = W, wpre
        self.timing = {"paths_s": t_paths, "theta_s": t_theta}
        self.residuals = []
        return reached

    def _use_qr(self):
        """QR of the increments instead of the Cholesky of S_U when its pivots would be tiny.

        The Schur complement of S_U[k, k] given the past is at least its white part,
        tau delta dt <ell ell^T> / delta, against S_U[k, k] = (dt^2 + tau delta dt) <ell ell^T> / delta:
        a fraction f = tau delta / (dt + tau delta). Below f = 0.05 (and always at tau = 0, where
        S_U is the Gram matrix of smooth paths, numerically of low rank) the Cholesky errors
        compound along chains of small pivots; the QR factor stays exact to round-off."""
        g = self.opts["gram"]
        if g != "auto":
            return g == "qr"
        f = self.tau * self.delta / (self.dt + self.tau * self.delta)
        return f < 0.05

    def _factor_rows(self, L, S, gq, i0, i1):
        """Rows i0..i1-1 of the causal factor L (L L^T = S_U) by QR of dL or Cholesky of S."""
        if gq is None:
            return chol_append(L, S, i0, i1, float(self.opts["pivot_tol"]))
        return sum(gq.append(L, i, self.dL[:, i]) for i in range(i0, i1))

    def sweep_reg(self):
        """Forward sweep with a Monte Carlo theta-side (nonlinear h, see theta.ThetaMC).

        The r-side Gaussian (r*, w_0, ..., w_N) is drawn from the empirical second moments of the
        theta-paths (rho_hat, M_hat, C_hat: one Gram matrix) by a pivot-clipped incremental
        Cholesky L_J: (r*, w) = L_J zeta, causal because row block k of L_J needs only C[k, <=k].
        """
        from .theta import ThetaMC

        P, N, m, kk, G = self.P, self.N, self.m, self.kk, self.G
        NN, NI = (N + 1) * m, N * m
        tol = float(self.opts["pivot_tol"])
        nt = self.opts["theta_paths"]
        if nt is None:
            # as many theta-paths as r-paths, within the tangent budget (adjoint is O(P_theta K^3))
            nt = min(P, max(2000, int(self.opts["tangent_budget"] / (max(N, 1) ** 3 * m ** 3 / 6.0))))
        Pt = max(int(nt), 2 * G)
        rng = self.rng_theta_paths
        # (theta^0, theta*) samples with exactly the declared second moments (whitened then
        # recoloured): removes the O(P_theta^-1/2) error of rho_hat, which would otherwise shift
        # M and the test loss at every time.
        Z0 = rng.standard_normal((Pt, m + kk))
        Z0 -= Z0.mean(0)
        Lz = np.linalg.cholesky(Z0.T @ Z0 / Pt)
        Z0 = np.linalg.solve(Lz, Z0.T).T
        th = ThetaMC(self.kern, self.p, N, m, kk, self.lam, self.dt, self.delta,
                     self.init_std * Z0[:, :m], self.teacher_std * Z0[:, m:],
                     rng.standard_normal((Pt, NI)), G)
        NJ = kk + NN
        SJ = np.zeros((NJ, NJ))
        LJ = np.zeros((NJ, NJ))
        SJ[:kk, :kk] = th.rho
        SJ[kk:kk + m, :kk] = th.Mf[:m]
        SJ[:kk, kk:kk + m] = th.Mf[:m].T
        SJ[kk:kk + m, kk:kk + m] = th.C[:m, :m]
        qr = self._use_qr()
        self.gram = "qr" if qr else "cholesky"
        # (r*, w) from the theta-paths' Gram matrix: by QR of the path data [theta*, theta_0..]
        # (scaled 1/sqrt(P_theta)) when smooth (tau ~ 0) paths make it ill-conditioned
        gj = GramQR(Pt, NJ, 1.0 / math.sqrt(Pt), float(self.opts["qr_tol"])) if qr else None

        def factor_joint(i0, i1):
            if gj is None:
                return chol_append(LJ, SJ, i0, i1, tol)
            return sum(gj.append(LJ, i, th.ths[:, i] if i < kk else th.th[:, i - kk]) for i in range(i0, i1))

        self.n_clipped = factor_joint(0, kk + m)
        zeta = self.rng_zeta.standard_normal((P, NJ))
        self.s = np.ascontiguousarray(zeta[:, :kk] @ LJ[:kk, :kk].T)
        self.eta = np.ascontiguousarray(zeta[:, kk:kk + NI])
        Ww = np.zeros((NN, NN))
        wpre = np.zeros((P, N + 1, m))

        def extend(k):
            rk = slice(k * m, (k + 1) * m)
            jr = slice(kk + k * m, kk + (k + 1) * m)
            Ww[rk, :] = LJ[jr, kk:]
            wpre[:, k, :] = zeta[:, :kk] @ LJ[jr, :kk].T + zeta[:, jr] @ LJ[jr, jr].T

        extend(0)
        self._alloc()
        L = np.zeros((NI, NI))
        S = np.zeros((NI, NI))
        reached = N + 1
        bar = _bar(self.progress, N + 1, "DMFT sweep")
        t_paths = t_theta = 0.0
        inv_dP = 1.0 / (self.delta * P)
        gq = GramQR(P, NI, math.sqrt(inv_dP), float(self.opts["qr_tol"])) if qr else None
        for k in range(N + 1):
            rk = slice(k * m, (k + 1) * m)
            if k > 0:
                self.Gcv_g[k] = self.Gcv[k - 1]
            t1 = time.perf_counter()
            self._run_paths(k, k + 1, wpre, Ww, True, th.R, th.RT)
            t2 = time.perf_counter()
            t_paths += t2 - t1
            if self.bad.min() <= k:
                reached = k
                break
            kw = {"gamma": self.gam_sum[:, k].sum(0) / P}
            if self.n_tan_g:
                kw["kl_off"] = self._kl_row(k, th)
            self.Gcv[k] = kw["gamma"]
            if self.nu_mode == "stein":
                kw["ells"] = self.ells_sum[:, k].sum(0) / P
            elif self.nu_mode == "pathwise":
                kw["dsl"] = self.dsl_sum[:, k].sum(0) / P
            th.set_kernels(k, **kw)
            if k < N:
                row = self.su_sum[:, rk, : (k + 1) * m].sum(0) * inv_dP
                S[rk, : (k + 1) * m] = row
                S[: (k + 1) * m, rk] = row.T
                self.n_clipped += self._factor_rows(L, S, gq, k * m, (k + 1) * m)
                th.advance(k, L)
                rk1 = slice((k + 1) * m, (k + 2) * m)
                jr1 = slice(kk + (k + 1) * m, kk + (k + 2) * m)
                SJ[jr1, :kk] = th.Mf[rk1]
                SJ[:kk, jr1] = th.Mf[rk1].T
                SJ[jr1, kk:kk + (k + 2) * m] = th.C[rk1, : (k + 2) * m]
                SJ[kk:kk + (k + 2) * m, jr1] = th.C[rk1, : (k + 2) * m].T
                self.n_clipped += factor_joint(kk + (k + 1) * m, kk + (k + 2) * m)
                extend(k + 1)
            if not self._finite_row(k, th) or not np.all(np.isfinite(th.C[: (k + 2) * m, : (k + 2) * m])):
                reached = k
                break
            t_theta += time.perf_counter() - t2
            bar.update(1)
        bar.close()
        self.th, self.S_U, self.L_S = th, S, L
        self.timing = {"paths_s": t_paths, "theta_s": t_theta, "theta_paths": Pt}
        self.residuals = []
        return reached

    def _kl_row(self, k, th):
        """Monte Carlo K_ell[k, :k] from the tangent paths (with the control variate if on).

        The mean of the control variate uses exactly the matrices the kernel used: Gcv[l] = Gamma_l
        (l < k) and Gcv_g[k] = Gamma_{k-1}, all known before step k (sweep and fixed point alike)."""
        m = self.m
        rk = slice(k * m, (k + 1) * m)
        nt = self.n_tan_g * self.G
        kl = self._group_row(self.kl_sum, k)[:, :, : k * m].sum(0) / nt
        if self.use_cv and k > 0:
            row = np.zeros((m, (k + 1) * m))
            det_tangent_row(k, th.RT, self.Gcv, self.Gcv_g[k], self.delta, self.dt, row)
            self.kl_det[rk, : k * m] = row[:, : k * m]
            # kl_sum holds sum(Z - Zc): only the known mean of the control variate is added
            kl = kl + row[:, : k * m]
        return kl

    def _finite_row(self, k, th):
        m = self.m
        rk = slice(k * m, (k + 1) * m)
        lossk = self.loss_sum[:, k].sum() / self.P
        llk = np.trace(self.ll_sum[:, k].sum(0)) / self.P
        big = float(self.opts["blowup"])
        vals = [th.Kl[rk].ravel(), th.nu[k].ravel(), np.array([llk])]
        if np.isfinite(lossk):
            vals.append(np.array([lossk]))
        v = np.concatenate(vals)
        return bool(np.all(np.isfinite(v)) and np.all(np.abs(v) < big))

    # -- damped fixed point over whole trajectories ------------------------------------------------
    def fixed_point(self):
        P, N, m, kk = self.P, self.N, self.m, self.kk
        NI = N * m
        opts = self.opts
        alpha, tol, max_iter = float(opts["damping"]), float(opts["tol"]), int(opts["max_iter"])
        cur = {"gamma": np.zeros((N + 1, m, m)), "ells": np.zeros((N + 1, m, kk)),
               "dsl": np.zeros((N + 1, m, kk)), "S_U": np.zeros((NI, NI)),
               "kl": np.zeros(((N + 1) * m,) * 2) if self.n_tan_g else None}
        self.residuals = []
        self.n_clipped = 0
        bar = _bar(self.progress, max_iter, "DMFT fixed point")
        t_paths = t_theta = 0.0
        reached = N + 1
        converged = False
        for it in range(max_iter):
            t0 = time.perf_counter()
            th = self._theta_full(cur)
            if opts["sampler"] == "cholesky":
                L = np.zeros((NI, NI))
                self.n_clipped = chol_append(L, cur["S_U"], 0, NI, float(opts["pivot_tol"]))
            else:
                L = psd_sqrt(cur["S_U"])
            Wf = th.R[:, :NI] @ L
            wflat = (self.g0 @ th.Phi0.T) + self.eta @ Wf.T
            if kk:
                wflat += self.s @ th.Phis.T
            wpre = np.ascontiguousarray(wflat.reshape(P, N + 1, m))
            self._alloc()
            self.Gcv = np.ascontiguousarray(cur["gamma"])
            self.Gcv_g = np.zeros_like(self.Gcv)
            self.Gcv_g[1:] = self.Gcv[:-1]
            t1 = time.perf_counter()
            self._run_paths(0, N + 1, wpre, np.zeros((1, 1)), False, th.R, th.RT)
            if self.use_cv:
                row = np.zeros((m, (N + 1) * m))
                for k in range(1, N + 1):
                    det_tangent_row(k, th.RT, self.Gcv, self.Gcv_g[k], self.delta, self.dt, row)
                    self.kl_det[k * m:(k + 1) * m, : k * m] = row[:, : k * m]
            t2 = time.perf_counter()
            t_paths += t2 - t1
            if self.bad.min() <= N:
                reached = int(self.bad.min())
                self.th, self.S_U, self.L_S = th, cur["S_U"], L
                break
            new = self._kernels()
            res = 0.0
            for key in ("gamma", "kl", "ells", "dsl", "S_U"):
                if new[key] is None:
                    continue
                scale = max(float(np.abs(new[key]).max(initial=0.0)), 1e-300)
                res = max(res, float(np.abs(new[key] - cur[key]).max(initial=0.0)) / scale)
                if it > 0:
                    new[key] = (1.0 - alpha) * new[key] + alpha * cur[key]
            cur = new
            self.residuals.append(res)
            t_theta += time.perf_counter() - t2 + (t1 - t0)
            bar.update(1)
            if res < tol:
                converged = True
                break
        bar.close()
        self.timing = {"paths_s": t_paths, "theta_s": t_theta, "iterations": len(self.residuals)}
        if reached <= N:
            return reached
        # theta-side consistent with the last path pass (its kernels are `cur` up to tol)
        self.th = self._theta_full(cur)
        self.S_U = cur["S_U"]
        self.L_S = None
        self.converged = converged
        return reached

    # -- observables and result ------------------------------------------------------------------
    def result(self, reached, status, message):
        from ..observables import test_observables

        model, kern = self.model, self.kern
        N, m, kk, G, P = self.N, self.m, self.kk, self.G, self.P
        n = reached  # number of finished grid points
        th = self.th
        sizes = np.diff(self.bounds).astype(float)
        data = {"t": self.settings.times[:n]}

        def batch(arr):
            gm = arr / sizes.reshape((-1,) + (1,) * (arr.ndim - 1))
            mean = arr.sum(0) / P
            err = gm.std(0, ddof=1) / math.sqrt(G)
            return mean, err

        loss, loss_err = batch(self.loss_sum[:, :n])
        data["train_loss"], data["train_loss_err"] = loss, loss_err
        for q, name in enumerate(model.metrics):
            v, e = batch(self.met_sum[:, :n, q])
            data[f"train_{name}"], data[f"train_{name}_err"] = v, e
        S_U = self.S_U
        if self.reg:
            C = th.C[: n * m, : n * m]
            Q = np.stack([C[k * m:(k + 1) * m, k * m:(k + 1) * m] for k in range(n)]) if n else np.zeros((0, m, m))
        elif n == N + 1:
            Q = th.Q_diag(S_U)
            C = th.C_theta_flat(S_U)
        else:
            C = th.C_theta_flat(S_U[: max(n - 1, 0) * m, : max(n - 1, 0) * m] if n > 1 else np.zeros((0, 0)), n)
            Q = np.stack([C[k * m:(k + 1) * m, k * m:(k + 1) * m] for k in range(n)]) if n else np.zeros((0, m, m))
        if self.reg:
            Mo = th.Mf[: n * m].reshape(n, m, kk)
            rho = th.rho
        else:
            Mo = th.M_overlap()[:n]
            rho = self.rho
        data["Q"], data["M"] = Q[:n], Mo
        # a replica (n_replicas > 1) leaves them to _solve_replicas: evaluated once, on the mean
        tst = test_observables(kern, model, Q[:n], Mo, rho, self.p) if n and self.n_replicas == 1 else {}
        for key, v in tst.items():
            if key != "test_loss_mc":
                data[key] = v
        # error bars of theta-side quantities: group jackknife through the theta-side map
        Q_err = np.zeros_like(Q[:n])
        M_err = np.zeros_like(Mo)
        if (self.opts["jackknife"] or self.reg) and n == N + 1:
            if self.reg:
                # theta-side Monte Carlo: batch means over theta-path groups
                reps_Q, reps_M = th.group_moments()
                Gt = reps_Q.shape[0]
                fac = 1.0 / (Gt * (Gt - 1))
            else:
                reps_Q, reps_M = [], []
                for g in range(G):
                    kg = self._kernels(drop=g)
                    tg = self._theta_full(kg)
                    reps_Q.append(tg.Q_diag(kg["S_U"]))
                    reps_M.append(tg.M_overlap())
                reps_Q, reps_M = np.array(reps_Q), np.array(reps_M)
                Gt = G
                fac = (G - 1) / G
            dev = np.concatenate([(reps_Q - reps_Q.mean(0)).reshape(Gt, n, -1),
                                  (reps_M - reps_M.mean(0)).reshape(Gt, n, -1)], axis=2)
            cov = fac * np.einsum("gki,gkj->kij", dev, dev)
            Q_err = np.sqrt(fac * ((reps_Q - reps_Q.mean(0)) ** 2).sum(0))
            M_err = np.sqrt(fac * ((reps_M - reps_M.mean(0)) ** 2).sum(0))
            grads = self._test_gradients(Q, Mo, tst, rho)
            for key, gr in grads.items():
                data[key + "_err"] = np.sqrt(np.maximum(np.einsum("ki,kij,kj->k", gr, cov, gr), 0.0))
        else:
            for key in tst:
                if key != "test_loss_mc":
                    data[key + "_err"] = np.full(n, np.nan)
        data["Q_err"], data["M_err"] = Q_err, M_err
        # order parameters
        NNn = n * m
        Kl = th.Kl[:NNn, :NNn].reshape(n, m, n, m).transpose(0, 2, 1, 3)
        data["C_theta"] = C[:NNn, :NNn].reshape(n, m, n, m).transpose(0, 2, 1, 3)
        data["R_theta"] = th.R[:NNn, :NNn].reshape(n, m, n, m).transpose(0, 2, 1, 3)
        data["K_ell"] = Kl
        data["Gamma"] = np.stack([Kl[k, k] for k in range(n)]) if n else np.zeros((0, m, m))
        Rl = Kl / self.dt
        for k in range(n):
            Rl[k, k] = 0.0
        data["R_ell"] = Rl
        data["nu"] = th.nu[:n]
        data["nu_err"] = self._nu_err(th, n)
        ni = min(n, N) * m
        data["S_U"] = S_U[:ni, :ni].reshape(ni // m, m, ni // m, m).transpose(0, 2, 1, 3)
        if not self.reg:
            data["Phi0"] = th.Phi0[:NNn].reshape(n, m, m)
            data["Phi_star"] = th.Phis[:NNn].reshape(n, m, kk)
        data["rho"] = np.asarray(rho)
        data["E_r_ell"] = self.rl_sum[:, :n].sum(0) / P
        data["E_ell_ell"] = self.ll_sum[:, :n].sum(0) / P
        if self.theta_samples and n == N + 1:
            data.update(self._theta_samples())
        checks, check_data = run_checks(self, n, C, Q, Mo, rho)
        data.update(check_data)
        if status == "ok":
            status, message = verdict(checks)
        meta = {
            "model": model.name, "source_hash": kern.SOURCE_HASH, "settings": self.settings.as_dict(),
            "paths": P, "groups": G, "method": self.method, "nu_estimator": self.nu_mode,
            "tangents": "deterministic" if self.A is not None else f"adjoint on {self.n_tan_g * G} paths",
            "theta_side": "Monte Carlo theta-paths" if self.reg else "deterministic (h = lam theta)",
            "n_steps": N, "reached_steps": n, "t_reached": float(self.settings.times[n - 1]) if n else 0.0,
            "timings": dict(self.timing, total_s=time.perf_counter() - self.t_start,
                            cpu_s=time.process_time() - self.cpu_start),
            "residuals": list(self.residuals), "clipped_pivots": int(self.n_clipped),
            "gram": getattr(self, "gram", None), "checks": checks,
            "options": {k: v for k, v in self.opts.items()},
            "versions": versions(),
            "err_dof": G - 1,
            "errors": "one solve (replicas=1): r-side averages: batch means over path groups; Q, M, "
                      "test observables: group jackknife through the theta-side map (first order, "
                      "ignores the feedback of kernel errors into later paths: too small at long "
                      "horizons; the default replicas='auto' includes it)",
        }
        return Result(data, meta, status=status, message=message)

    def _nu_err(self, th, n):
        """Batch-means error of nu: the estimator evaluated on each path group (kernels fixed)."""
        m, kk, G = self.m, self.kk, self.G
        sizes = np.diff(self.bounds).astype(float).reshape(G, 1, 1, 1)
        if self.nu_mode == "stein":
            Mf = th.M_flat(n)
            KM = (th.Kl[: n * m, : n * m] @ Mf).reshape(n, m, kk)
            # K_ell[k, l] = 0 for l > k, so the full product is the causal sum over l <= k
            per = (self.ells_sum[:, :n] / sizes - KM) @ th.rho_inv
        elif self.nu_mode == "pathwise":
            per = self.dsl_sum[:, :n] / sizes
        else:
            return np.zeros((n, m, kk))
        return per.std(0, ddof=1) / math.sqrt(G)

    def _test_gradients(self, Q, Mo, base, rho):
        """d(test observable)/d(Q, M entries) by central differences on the common sample."""
        from ..observables import test_gradients

        return test_gradients(self.kern, self.model, Q, Mo, rho, self.p, base)

    def _theta_samples(self):
        """S samples of the law of a theta row at every time (exact Gaussian representation)."""
        N, m, kk, S = self.N, self.m, self.kk, self.theta_samples
        NI = N * m
        rng = self.rng_theta
        if self.reg:
            # the theta-paths ARE samples of the law of a theta row
            S = min(S, self.th.Pt)
            return {"theta_samples": self.th.th[:S].reshape(S, N + 1, m).transpose(1, 0, 2),
                    "theta_star_samples": self.th.ths[:S], "theta0_samples": self.th.th[:S, :m]}
        th0 = self.init_std * rng.standard_normal((S, m))
        ths = self.teacher_std * rng.standard_normal((S, kk))
        L = self.L_S if self.L_S is not None else psd_sqrt(self.S_U)
        dU = rng.standard_normal((S, NI)) @ L.T
        flat = th0 @ self.th.Phi0.T + dU @ self.th.R[:, :NI].T
        if kk:
            flat += ths @ self.th.Phis.T
        return {"theta_samples": flat.reshape(S, N + 1, m).transpose(1, 0, 2),
                "theta_star_samples": ths, "theta0_samples": th0}


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _bar(enabled, total, desc):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="step" if "sweep" in desc else "it", leave=False)


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
        (``damping``, ``tol``, ``max_iter``, ``sampler``), a cross-check and the gradient-flow
        fallback.
    theta_samples : int
        If > 0, also return ``theta_samples`` (N+1, S, m): S draws of the law of a theta row at
        every time (with ``theta_star_samples`` (S, k)), for W2 comparisons.
    progress : bool
        tqdm progress bar.
    richardson : bool
        Solve at dt and dt/2 and return the Richardson combination (see :func:`richardson`).
    allow_outside_theory : bool
        Run a model whose ell jumps in r (refused otherwise, see dmftgen.dmft.assumptions); the
        result's status is then ``outside_theory`` (unless it failed otherwise).
    **options
        groups (20): path groups (batch means, parallel units); tangent_paths (auto) and
        tangent_budget (4e10 multiply-adds): paths carrying the response tangents;
        tangent_cv (True): control variate for them; pivot_tol (1e-11): Cholesky pivot clipping;
        nu ("auto" | "stein" | "pathwise"); damping (0.3), max_iter (200), tol (1e-8),
        sampler ("eigh" | "cholesky"): fixed point; blowup (1e10): divergence threshold;
        threads: numba threads (set globally); jackknife (True): Q/M/test error bars;
        replicas ("auto": min(8, paths // (2 groups)), 1 if that is < 2): R independent solves
        of paths/R paths, between-replica errors (feedback of kernel errors included);
        theta_paths (auto): theta-paths for a declared regulariser H; refine (0): draw the noise
        on dt/2^refine and aggregate (couples solves at different dt).

    Returns
    -------
    dmftgen.results.Result
        t, train_loss, test_loss, train_/test_<metric> (each with *_err), Q, M (with _err),
        C_theta, R_theta, K_ell, Gamma, R_ell, nu, S_U, Phi0, Phi_star, E_r_ell, E_ell_ell, and
        optionally theta_samples; status "ok" / "diverged" / "not-converged".
    """
    from .assumptions import require_theory

    outside = require_theory(model, allow=allow_outside_theory)
    check_memory(model, settings.replace(dt=settings.dt / 2) if richardson else settings, paths, options,
                 method or "sweep")
    if richardson:
        res = globals()["richardson"](model, settings, paths=paths, method=method, progress=progress,
                                      allow_outside_theory=allow_outside_theory, **options)
    else:
        res = _solve(model, settings, paths, method, theta_samples, progress, options)
    if outside:
        res.meta["outside_theory"] = outside
        if res.status in ("ok", "inaccurate"):
            extra = f"; {res.message}" if res.status == "inaccurate" else ""
            res.status, res.message = "outside_theory", f"run outside the theory: {outside}{extra}"
    return res


def _solve(model, settings, paths, method, theta_samples, progress, options):
    if method is None:
        # The sweep is exact at every tau: Cholesky of S_U for tau > 0, QR of the increments near
        # tau = 0 (tests/test_selfchecks.py: gradient flow, m = 2, against SGF at the same dt).
        method = "sweep"
    opts = _check_options(options)
    R = _n_replicas(opts, paths)
    opts["replicas"] = R
    if R > 1:
        return _solve_replicas(model, settings, paths, method, theta_samples, progress, opts)
    return _solve_one(model, settings, paths, method, theta_samples, progress, opts)


def _solve_one(model, settings, paths, method, theta_samples, progress, opts, replica=0, n_replicas=1):
    sv = _Solver(model, settings, paths, method, theta_samples, progress, opts, replica, n_replicas)
    N = sv.N
    interrupted = False
    try:
        if method == "sweep":
            reached = sv.sweep()
            conv = True
        else:
            reached = sv.fixed_point()
            conv = getattr(sv, "converged", False)
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: the sweep's finished rows are a valid record
        if not hasattr(sv, "k_done"):
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
                   f"(last relative change {sv.residuals[-1]:.3g} > tol {opts['tol']:g}).")
    else:
        status, message = "ok", ""
    return flag_instability(sv.result(reached, status, message), sv.kern, model, settings)


_CURVES_EXCLUDED = {"t", "rho", "theta_samples", "theta_star_samples", "theta0_samples"}


#: replicas of the default error bars (7 degrees of freedom; measured calibration in README).
AUTO_REPLICAS = 8


def _n_replicas(opts, paths) -> int:
    """The number of replicas: ``opts["replicas"]``, or for "auto" min(8, paths // (2 groups))
    (each replica needs 2 paths per group), 1 if fewer than 2 replicas fit."""
    R = opts["replicas"]
    if R in (None, "auto"):
        R = min(AUTO_REPLICAS, int(paths) // (2 * int(opts["groups"])))
        return R if R >= 2 else 1
    try:
        R = int(R)
    except (TypeError, ValueError):
        raise SettingsError(f"option replicas={R!r}: use 'auto' or an integer >= 1.") from None
    if R < 1:
        raise SettingsError(f"option replicas={R}: use 'auto' or an integer >= 1.")
    return R


def _solve_replicas(model, settings, paths, method, theta_samples, progress, opts):
    """R independent solves with paths/R paths each (own kernels, theta-side, random streams).

    Every output is the mean over replicas; ``*_err`` is the between-replica standard error
    sd/sqrt(R). Unlike batch means within one solve, this includes the feedback of kernel errors
    into later paths (shared by all groups of one solve), which makes within-solve errors ~1.2-1.5x
    too small at long horizons (measured on linreg, t = 5). The bias of the finite-P system grows
    like R/P, negligible for paths/R >= 10^3.
    """
    R = int(opts["replicas"])
    if paths // R < 2 * int(opts["groups"]):
        raise SettingsError(f"replicas={R}: each replica needs >= {2 * int(opts['groups'])} paths; "
                            f"use more paths or fewer replicas.")
    sub = dict(opts, replicas=1, jackknife=False)
    # theta samples from every replica (S/R each): their law is the mixture of the replicas' laws,
    # whose second moments are the replica means reported as Q and M
    S = int(theta_samples)
    per = [S // R + (1 if r < S % R else 0) for r in range(R)]
    res = []
    two = {}  # running sums of the two-time arrays (issue 12: memory 2 K^2, not R K^2)
    for r in range(R):
        one = _solve_one(model, settings, paths // R, method, per[r], progress, sub, r, R)
        if one.status == "interrupted":
            # Ctrl-C: stop at once; the finished part of this replica is what there is
            one.message += f" (replica {r + 1} of {R}; the remaining replicas were not run)"
            return one
        _fold_two_time(two, one)
        res.append(one)
    n = min(len(x.t) for x in res)
    data = {"t": res[0].t[:n], "rho": res[0]["rho"]}
    for key in res[0].keys():
        if key in _CURVES_EXCLUDED or key.endswith("_err") or key.startswith("check_"):
            # self-check residuals are per replica (each replica's meta has its own checks)
            continue
        arr = np.array([x[key][: n] if x[key].ndim and x[key].shape[0] >= n else x[key] for x in res])
        data[key] = arr.mean(0)
        if key in ("Phi0", "Phi_star", "E_r_ell", "E_ell_ell"):
            continue
        data[key + "_err"] = arr.std(0, ddof=1) / math.sqrt(R)
    for key, acc in two.items():
        # two time axes; replicas that stopped early (diverged) have shorter ones
        n2 = min(n, acc.shape[0])
        data[key] = acc[:n2, :n2] / R
    # test observables: once, at the replica mean of (Q, M), between-replica error by propagation
    # (observables.replica_test_observables; the replicas skipped them, see _Solver.result)
    from ..codegen import load_kernels

    kern = load_kernels(model)
    data.update(_replica_test(kern, model, settings, res, n))
    for key, ax in (("theta_samples", 1), ("theta_star_samples", 0), ("theta0_samples", 0)):
        parts = [x[key] for x in res if key in x and np.size(x[key])]
        if parts:
            data[key] = np.concatenate([p_[:n] for p_ in parts] if ax == 1 else parts, axis=ax)
    bad = [x for x in res if not x.ok]
    status = bad[0].status if bad else "ok"
    message = bad[0].message if bad else ""
    meta = dict(res[0].meta)
    tangents = meta["tangents"]
    if tangents.startswith("adjoint on "):
        per = int(tangents.split()[2])
        tangents = f"adjoint on {per * R} paths ({per} in each replica)"
    meta.update({"paths": paths, "replicas": R, "replica_meta": [x.meta for x in res[1:]], "tangents": tangents,
                 "reached_steps": n, "t_reached": float(data["t"][-1]) if n else 0.0,
                 "err_dof": R - 1,
                 "errors": f"between-replica standard error sd/sqrt(R) over R = {R} independent solves "
                           f"of {paths // R} paths (includes the feedback of kernel errors; Student t "
                           f"with {R - 1} degrees of freedom)"})
    out = Result(data, meta, status=status, message=message)
    # the replicas' growth test saw only their train loss: the test loss is checked here
    return flag_instability(out, kern, model, settings)


_TWO_TIME = ("C_theta", "R_theta", "K_ell", "R_ell", "S_U")


def _fold_two_time(acc, one):
    """Add the two-time arrays of replica Result ``one`` into the running sums ``acc`` (truncated
    to the shorter time axis) and drop them from ``one``: the same sums, in the same order, as
    averaging the R stacked arrays, without holding R copies of (N+1)^2 m^2 values each."""
    for key in _TWO_TIME:
        if key not in one.data:
            continue
        x = one.data.pop(key)
        if key not in acc:
            acc[key] = np.array(x, dtype=float)
        else:
            n2 = min(acc[key].shape[0], x.shape[0])
            acc[key] = acc[key][:n2, :n2] + x[:n2, :n2]


def _replica_test(kern, model, settings, res, n):
    """test_<x> and test_<x>_err of R replica Results (first n times) from their Q and M."""
    from ..observables import replica_test_observables

    if n == 0:
        return {}
    Qs = np.array([x["Q"][:n] for x in res])
    Ms = np.array([x["M"][:n] for x in res])
    return replica_test_observables(kern, model, Qs, Ms, res[0]["rho"], model.param_vector(settings.params))


def richardson(model, settings, *, paths: int = 20000, method: str = "sweep", progress: bool = False,
               **options) -> Result:
    """Richardson extrapolation in dt: 2 f(dt/2) - f(dt) on the grid of ``settings``.

    The discrete scheme is first order in dt (Euler--Maruyama on the SGF, left-point kernels), so
    f(dt) = f(0) + c dt + O(dt^2) and 2 f(dt/2) - f(dt) = f(0) + O(dt^2). Both solves use the same
    seed, and the coarse solve's noise is the fine solve's aggregated pairwise (coupled paths).
    Errors: ``*_err`` combines the Monte Carlo errors, sqrt(4 e(dt/2)^2 + e(dt)^2) (conservative
    for coupled solves);
    ``*_disc`` = |f(dt/2) - f(dt)| estimates the discretisation error removed (the error of the
    half-step solve itself), reported alongside.
    """
    method = method or "sweep"
    L = int(options.pop("refine", 0))
    # the coarse solve aggregates the fine solve's noise (refine + 1): coupled paths, so the
    # Monte Carlo error largely cancels in 2 f(dt/2) - f(dt)
    coarse = solve(model, settings, paths=paths, method=method, progress=progress, refine=L + 1, **options)
    if coarse.status == "interrupted":  # Ctrl-C: stop, do not start the fine solve
        raise KeyboardInterrupt
    fine = solve(model, settings.replace(dt=settings.dt / 2), paths=paths, method=method,
                 progress=progress, refine=L, **options)
    n = min(len(coarse.t), (len(fine.t) + 1) // 2)
    data = {"t": coarse.t[:n]}
    keys = ["train_loss", "test_loss"] + [f"{p}_{q}" for q in model.metrics for p in ("train", "test")]
    for key in keys + ["Q", "M"]:
        if key not in coarse or key not in fine:
            continue
        fc, ff = coarse[key][:n], fine[key][: 2 * n - 1: 2]
        data[key] = 2.0 * ff - fc
        ec = coarse.get(key + "_err")
        ef = fine.get(key + "_err")
        if ec is not None and ef is not None:
            data[key + "_err"] = np.sqrt(4.0 * ef[: 2 * n - 1: 2] ** 2 + ec[:n] ** 2)
        data[key + "_disc"] = np.abs(ff - fc)
    status = "ok" if coarse.ok and fine.ok else (fine.status if not fine.ok else coarse.status)
    meta = {"richardson": True, "coarse": coarse.meta, "fine": fine.meta,
            "settings": settings.as_dict(), "method": method, "paths": paths}
    msg = "; ".join(x for x in (coarse.message if not coarse.ok else "",
                                fine.message if not fine.ok else "") if x)
    return Result(data, meta, status=status, message=msg)
