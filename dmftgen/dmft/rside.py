"""The r-side path engine: P effective r-paths in G groups, advanced by the generated kernel.

The per-path sweep is the generated ``dmft_paths`` (template ``dmftgen/codegen/templates/dmft.py``):
for each time row it advances every path with its Gaussian input, accumulates the group sums of
the r-side averages (loss, metrics, Gamma, <ell r*^T>, d_s ell, S_U row, <r ell^T>, <ell ell^T>)
and, on the first ``n_tan_g`` paths of each group, the adjoint tangents of the response row
K_ell[k, :k] (docs/theory.md section 3). This module owns the accumulators and the call.

Cost and memory (P paths, K = T/dt steps, width m)
--------------------------------------------------
* memory and Gaussian-input sums, S_U row: O(P K^2 m^2) time, O(P K m) memory (the paths'
  histories eta, dL; never the P x K x K tangents); the histories are bfloat16 (:data:`HIST`) in
  chunks (:func:`to_chunks`, :data:`CHUNK`) so that each row reads contiguous memory;
* response tangents by the adjoint recursion: the row K_ell[k, :k] of one path from its own
  a_0..a_{k-1} in O(k^2 m^3), so O(P_J K^3 m^3 / 6) time but O(P_J K m^2) memory. P_J is chosen
  once for the whole solve (:mod:`dmftgen.dmft.tangents`): the tangents cost at most what the
  r-side sweep costs and at most ``tangent_budget`` multiply-adds, with at least 50 paths per
  group, shared among the replicas (an unbiased subset: K_ell gets noisier, not biased). The
  control variate (``tangent_cv``, default on for tau > 0; at tau = 0 it equals its own mean and
  is skipped) cuts the R_ell noise 2-7x in sd; run on every tangent path ("pathwise") it costs
  2x per path, its linear part ("linear", the default) one deterministic recursion per row
  (:func:`dmftgen.dmft.tangents.control_variate`);
  LINEAR_ELL models with one constant Jacobian need no per-path tangents at all;
* group sums: O(G K^2 m^2) memory (S_U, and K_ell when tangents are on); the forward sweep keeps
  only their current row ("row mode", issue 12): O(G K m^2).
* Memory (``memory.py``): O(P K m) path histories + O(K^2 m^2) two-time kernels. Before issue 12 the
  per-group two-time sums were O(G K^2 m^2) and the replicas' two-time results O(R K^2 m^2); the
  fixed point and the group jackknife (replicas=1) still keep every row.
* P-independent part (issue 12, bench/bench_issue12.py): per replica N+1 kernel launches, the
  theta-side and the self-checks; once per solve the test observables, at the replica mean of
  (Q, M) on the 2^16 common sample, with the error propagated from the between-replica spread by
  a finite-difference gradient (``observables.replica_test_observables``; before: one full
  evaluation per replica, 4/5 of this part). On a shared machine the idle OpenMP worker spins
  between the N+1 launches (measured: an empty launch costs 11 us CPU with one thread, 370 us
  with two, 18 us with two and OMP_WAIT_POLICY=PASSIVE), and OpenBLAS threads do the same on the
  theta-side's small products (100 x 100: 9x the CPU with 2 threads): set OMP_WAIT_POLICY=PASSIVE
  and OPENBLAS_NUM_THREADS=1 there.
  Measured (bench/bench_issue12.py, one thread, load ~11 on 2 cores, CPU s): Figure 1 setting
  (logistic, K = 100, P = 2e4) 6.5 s (before the tangent subset) -> 2.7 s (tangent subset) ->
  1.5 s (test observables at the replica mean); its P-independent part (P = 320) 2.1 -> 0.9 s.
  Committee K = 500, P = 2e4: 250 s with 1120 tangent paths, 246 s with 160 (read at the time as
  "the r-side sums dominate"; in fact both ran the same 160 blocks of 8 adjoint lanes, 7/8 resp.
  1/8 of them used, and the adjoint was ~3/4 of the time: see the kernel figures below); peak RSS 505 MB (about 1.45 GB before the row mode). Logistic
  K = 100..800 at P = 2000: CPU K^2.34 (0.9, 3.3, 17, 119 s).
* The kernel's inner loops (issue 12, bench/bench_adjoint.py: m = 2 committee, N = 500, rows
  k = 480..499, G = 20 groups, one thread, CPU, median of 3, load ~1.4-3; fde19e5 -> c64c459):
  - adjoint with the control variate, n_tan_g = 1 (20 tangent paths): 147.5 -> 3.0 ms per row.
    The adjoint is a second prange over chunks of whole groups: with n_tan_g < LANES (8 then,
    16 float32 lanes since), LANES // n_tan_g groups share one block of lanes, and n_tan_g is
    rounded up to whole lanes (:func:`dmftgen.dmft.tangents.whole_lanes`: 7 -> 8, 3 -> 4), so no
    computed lane is thrown away (the extra tangent paths are free);
  - n_tan_g = 8 (160 tangent paths; the committee default after rounding): 172 -> 17 ms per row,
    3.6 -> 36 GFlop/s of useful work: the inner products in helpers compiled with "contract" but
    not "reassoc" (with reassociation LLVM vectorised each lane's sum along j, with strided loads
    and shuffles: 2.2x), with LLVM's SLP vectoriser on for those helpers only (the 8 lanes in one
    AVX-512 register: 2x), and for M = 2 all four (a, c) and the control variate in one pass (8
    independent accumulators, every load shared: 1.7x). For M = 1 one pass serves rows l and
    l - 1 (logistic, N = 800, rows 780..799, n_tan_g = 8: 50.1 -> 7.5 ms per row, 4.0 -> 26.6
    GFlop/s);
  - r-side sums at P = 2e4 without tangents, with the pathwise-nu tangent psi as in the committee
    solve: 86 -> 42 ms per row (3.6 -> 7.5 GFlop/s): for M = 2 the Gaussian input, the memory term
    and psi in one pass over the path's history (psi was a two-level loop that did not
    vectorise), both S_U rows per pass; without psi 43 -> 40 ms. Not bandwidth-bound: 11 GB/s
    streamed (eta, dL, b_hist) against 28 GB/s for a one-core numpy sum on this machine.
  Committee K = 500, P = 2e4, default options (``solve(committee, Settings(delta=3, tau=0.2,
  T=5, dt=0.01), paths=20000)``, one thread): 255 s (one run, 1120 tangent paths) -> 57 s (median
  of 3, 1280 tangent paths); of the 57 s about 24 s adjoint, 11 s r-side sums, ~15 s
  P-independent (theta-side, self-checks, test observables). Same with ``paths=4000,
  tangent_paths=20`` (160 tangent paths, 1 per group): 21.6 s, mostly the P-independent part.
  The results moved by Monte Carlo noise only (1280 instead of 1120 tangent paths): test loss,
  train loss, Q, M within 0.02, 0.02, 0.13, 0.05 of their combined standard errors over the
  whole curve; the between-replica errors unchanged (after / before median 1.00, range
  0.93-1.09). With the same tangent paths the change is round-off (<= 4e-14 relative).
  Logistic K = 100..800 at P = 2000 (``bench/bench_issue12.py --only b --threads 1``, load ~2.5):
  0.71, 2.27, 6.53, 28.2 s CPU, fitted K^1.74 (local 400 -> 800: K^2.1; the tangents' floor of
  50 per group makes the adjoint K^3 at fixed P); before 0.9, 3.3, 17, 119 s, K^2.34.
* The adjoint in float32, LANES = 16 (one zmm; templates/dmft.py, "Precision of the adjoint";
  e2617c3 -> after, one thread, CPU, load ~1): bench_adjoint.py committee N = 500 rows 480..499,
  n_tan_g = 1 / 8 / 16: 2.34 / 15.66 / 31.26 -> 1.75 / 9.19 / 16.89 ms per row (39 -> 73 GFlop/s
  useful at 16); logistic N = 800 rows 780..799, n_tan_g = 8 / 16: 6.5-7.3 / 13.6-14.4 -> 3.3 /
  6.9-7.0 ms per row. Committee K = 500, P = 2e4 (bench_issue12.py --only c --threads 1, 3 runs
  each, interleaved): 57.5, 53.3, 52.2 -> 42.4, 41.5, 44.4 s CPU (median 53.3 -> 42.4 s).
  Logistic K = 100..800 at P = 2000 (--only b, one run each): 0.51, 1.31, 4.41, 23.8 -> 0.48,
  1.04, 3.69, 17.2 s, K^1.84 -> K^1.73. Same seed and tangent paths: K_ell's adjoint entries move
  by <= 7e-8 of their largest value, Q and the test loss at t = T by <= 4e-8 of their error bars
  (bench/compare_kell.py).
Older measurements (bench/bench_dmft.py, logistic, control variate on, effectively one core): the path time
grows linearly in P (1.5, 2.6, 4.4, 8.9 s for P = 5k..40k at K = 100, all paths tangent), like
K^2 with a fixed tangent subset (0.9, 3.5, 17.3 s for K = 100, 200, 400), like K^2.3-K^2.4 with
tangents on all paths (1.0, 5.0, 26.3 s for K = 50, 100, 200).
"""
from __future__ import annotations

import math

import numpy as np

#: storage of the paths' histories eta, dL, b_hist (issue 12): bfloat16, the upper 16 bits of a
#: float32, kept as uint16 (:func:`encode_hist`, :func:`decode_hist`; the kernel's ``hval`` /
#: ``henc``). The sweep reads every path's whole history once per row (its Gaussian input, memory
#: term and S_U row): at long grids that stream of bytes, not the arithmetic, sets its speed, and
#: half the bytes of float32 make the history sums twice as fast (3 streams, 2e4 paths, 1024
#: entries, one thread: 10.1 -> 4.9 ms). An entry is rounded once, to nearest, by <= 2^-8 of itself
#: (float32's exponent range: no overflow or underflow that float32 would not have); the sums of that
#: pass run in float32 (:data:`SUM`), everything after them in float64. What the rounding does,
#: docs/performance.md: each path's noise and increments move by a fraction 2^-8 / sqrt(3) rms,
#: independently between entries and paths (the increments carry their own Brownian noise, of
#: relative size >= 0.23 outside the QR mode below, so consecutive roundings do not line up), and
#: the estimates by <= 4e-2 of their error bars (typically 5e-3; logistic, committee, linreg,
#: twolayer, P = 8000, 3 seeds, against option histories="float64"). The rounding adds variance
#: ~2^-16 / 3 of their own to the paths, which a convex loss turns into a bias: +1e-3..2e-3 of the
#: train loss's error bar at P = 8000, relative to the error bar growing like sqrt(P) (0.1 near
#: P = 2e7, where option histories="float64" is the remedy). Not the increments dL
#: where the QR sampler factors them (near tau = 0, sampler.use_qr): their exact linear dependences
#: (rank deficiency, ~1e-16 residuals) would become rounding-sized residuals, new directions of
#: rounding noise (with float32 the solve moved by up to 1 % of its error bars and the QR ran 20 %
#: longer, committee gradient flow); there dL stays float64 (``alloc(exact_increments=True)``) and
#: so do the history sums.
HIST = np.uint16
#: precision of the history sums (and of the rows of R_theta and W the kernel gets) over bfloat16
#: histories; float64 where dL is float64
SUM = np.float32
#: eta's storage for the solve option ``histories``; dL and b_hist follow it (:meth:`RSide.alloc`)
STORAGE = {"bfloat16": HIST, "float64": np.float64}


def encode_hist(x) -> np.ndarray:
    """x rounded to bfloat16 (nearest, ties to even, via float32), as uint16 bits; NaN stays NaN."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.where(nan, (b >> np.uint32(16)) | np.uint32(0x40), rounded).astype(np.uint16)


def decode_hist(h) -> np.ndarray:
    """The values of history entries: float32 for bfloat16 bits (:data:`HIST`), else h itself."""
    h = np.asarray(h)
    if h.dtype != HIST:
        return h
    return (h.astype(np.uint32) << np.uint32(16)).view(np.float32)


#: entries of one chunk of the paths' histories (rounded down to whole steps: ``chunk_len``). The
#: kernel reads a row's history sums chunk by chunk, each chunk for all paths of a group in one
#: contiguous block (template docstring, "Layout"; issue 12). Measured on the history sums alone
#: (3 float32 streams, 2e4 paths, one thread): 64 entries 2.0 / 5.5 / 11.6 ms at 130 / 500 / 980
#: entries per path, 256 entries 4.8 / 4.9 / 10.7; path by path over (P, N M) rows 6.6 / 14.5 / 12.6.
CHUNK = 64


def chunk_len(m: int) -> int:
    """Entries per history chunk for student width m: a whole number of steps (B % m == 0)."""
    return max(CHUNK // int(m), 1) * int(m)


def to_chunks(a, B: int, dtype=None, width: int = 1) -> np.ndarray:
    """(P, n width) -> (ceil(n / B), P, B width), zero-padded: the kernel's history layout.

    ``width`` entries belong to each of the n flat history entries (b_hist: the teacher width)."""
    a = np.asarray(a)
    P, nw = a.shape
    n = nw // width
    C = max(-(-n // B), 1)
    dtype = np.dtype(dtype or a.dtype)
    out = np.zeros((C, P, B * width), dtype=dtype)
    for c in range(C):
        seg = a[:, c * B * width:(c + 1) * B * width]
        out[c, :, :seg.shape[1]] = encode_hist(seg) if dtype == HIST and a.dtype != HIST else seg
    return out


def from_chunks(h, n: int, P: int | None = None) -> np.ndarray:
    """The first n flat entries of the first P paths, (P, n), from the chunked layout (a copy of
    the chunks that hold them, decoded (:func:`decode_hist`); rows not contiguous unless n is a
    whole number of chunks)."""
    C, Pall, B = h.shape
    P = Pall if P is None else min(int(P), Pall)
    c = min(-(-int(n) // B), C)  # the chunks holding the first n entries: one copy of those only
    return decode_hist(np.ascontiguousarray(h[:c, :P, :].transpose(1, 0, 2))).reshape(P, c * B)[:, :n]


def chunks_times(h, A, P: int | None = None) -> np.ndarray:
    """X A^T for X = :func:`from_chunks` (h, n, P) and A (r, n) float64, without the flat copy:
    summed chunk by chunk, each a float32 BLAS product of the decoded chunk (A rounded to
    float32: relative 6e-8, far below the statistical precision of the self-check that uses it)
    added into a float64 (P, r). Issue 12: the flat float64 copy of X cost ~60 ms of each
    replica's check at K = 500."""
    C, Pall, B = h.shape
    P = Pall if P is None else min(int(P), Pall)
    n = A.shape[1]
    out = np.zeros((P, A.shape[0]))
    for c in range(min(-(-n // B), C)):
        j0, j1 = c * B, min((c + 1) * B, n)
        out += decode_hist(h[c, :P, : j1 - j0]) @ A[:, j0:j1].T.astype(np.float32)
    return out


class RSide:
    """The paths of one solve and their group sums.

    Parameters
    ----------
    kern : module
        The generated kernels (``dmft_paths``, ``NMET``).
    p : ndarray
        Model parameters.
    streams : dmftgen.dmft.streams.Streams
        The draws (s, g0, z, eta, dB); ``s`` and ``eta`` may be replaced by a Monte Carlo
        theta-side (its own Gaussian input) before :meth:`alloc`.
    bounds : (G + 1,) int
        Path groups [bounds[g], bounds[g + 1]).
    settings : Settings
        N, dt, delta, tau.
    m, kk : int
        Student and teacher widths.
    modes : dmftgen.dmft.modes.Modes
        Tangent paths per group and whether nu is pathwise.
    cv : str
        The tangents' control variate, "", "linear" or "pathwise"
        (:func:`dmftgen.dmft.tangents.control_variate`): the kernel runs Zc (its ``use_cv``) for
        "pathwise" only; for "linear" ``eps_bar`` is the tangent paths' mean own noise
        sqrt(tau delta) dB_l / dt, which :func:`dmftgen.dmft.estimators.cv_mean_row` needs.
    row_sums : bool
        Row mode (issue 12, forward sweep only): the two-time group sums ``su_sum`` / ``kl_sum``
        hold only the block row of the current step ((G, m, .) instead of (G, N m, .) / (G, (N+1) m,
        .); template docstring). The driver zeroes them before each step (:meth:`zero_rows`) and
        reads them with :meth:`group_row`; :class:`dmftgen.dmft.checks.RowRecord` keeps what the
        self-checks need from them.
    """

    def __init__(self, kern, p, streams, bounds, settings, m, kk, modes, cv, row_sums=False):
        self.kern, self.p = kern, p
        # eta comes in the kernel's chunked layout (:func:`to_chunks`: the streams draw it so, and
        # a Monte Carlo theta-side that replaces it before alloc chunks its own)
        self.s, self.g0, self.z, self.eta, self.dB = streams.s, streams.g0, streams.z, streams.eta, streams.dB
        self.B = chunk_len(m)
        self.bounds = bounds
        self.sizes = np.diff(bounds).astype(float)  # paths per group
        self.P, self.G = int(bounds[-1]), bounds.shape[0] - 1
        self.N, self.m, self.kk = settings.n_steps, m, kk
        self.dt, self.delta = settings.dt, settings.delta
        self.sq = math.sqrt(settings.tau * settings.delta)
        self.n_tan_g = modes.n_tan_g
        self.do_psi = modes.do_psi
        self.cv = str(cv or "") if self.n_tan_g > 0 else ""
        self.eps_bar = np.zeros(0)
        if self.cv == "linear":  # the tangent paths: the first n_tan_g of every group
            tan = (bounds[:-1, None] + np.arange(self.n_tan_g)[None]).ravel()
            self.eps_bar = self.sq * self.dB[tan].mean(0) / self.dt
        self.row_sums = bool(row_sums)
        self.Gcv = None


    def alloc(self, exact_increments: bool = False):
        """Zero the accumulators of one pass over the paths (the control-variate matrices Gcv
        persist: the sweep fills them row by row, the fixed point sets them per iteration).
        ``exact_increments``: keep the histories a pass writes, dL and b_hist, in float64 (a QR
        sampler factors dL, see :data:`HIST`; the fixed point iterates a map whose residual must
        fall below ``tol``, and bfloat16 roundings of what it writes make the map jitter: a
        linreg gradient flow stalled at ~1e-6 against tol 1e-8)."""
        P, N, m, kk, G = self.P, self.N, self.m, self.kk, self.G
        NN, NI = (N + 1) * m, N * m
        # the paths' histories in bfloat16 (HIST), in eta's chunks (to_chunks): the sweep streams
        # all of them once per row
        B, C = self.B, self.eta.shape[0]
        hist = np.float64 if exact_increments or self.eta.dtype != HIST else HIST  # option histories
        self.dL = np.zeros((C, P, B), dtype=hist)
        self.a_hist = np.zeros((max(self.n_tan_g * G, 1), max(N, 1), m, m))
        self.g_hist = np.zeros((max(self.n_tan_g * G, 1), N + 1, m, m))
        self.b_hist = np.zeros((C, P, B * kk) if self.do_psi else (1, 1, 1), dtype=hist)
        self.loss_sum = np.zeros((G, N + 1))
        self.met_sum = np.zeros((G, N + 1, int(self.kern.NMET)))
        self.gam_sum = np.zeros((G, N + 1, m, m))
        # With the pathwise control variate the kernel accumulates sum(Z - Zc) into kl_sum in place
        # (one (G, NN, NN) array instead of two), and kl_det holds the known mean of Zc; with the
        # linear one kl_sum holds sum Z and kl_det minus the linear part at the mean noise.
        # row mode (issue 12): only block row k of the two-time group sums (see the class docstring)
        rows = self.row_sums
        self.kl_sum = np.zeros((G, m if rows else NN, NN)) if self.n_tan_g else np.zeros((G, 1, 1))
        self._klcv_arg = np.zeros((1, 1, 1))  # the kernel's unused klcv_sum argument
        if self.Gcv is None:
            self.Gcv = np.zeros((N + 1, m, m))     # control-variate matrices in a_l
            self.Gcv_g = np.zeros((N + 1, m, m))   # ... and at the row's own time k
            self.kl_det = np.zeros((NN, NN)) if self.cv else None
        self.ells_sum = np.zeros((G, N + 1, m, kk))
        self.dsl_sum = np.zeros((G, N + 1, m, kk))
        self.su_sum = np.zeros((G, m if rows else NI, NI))
        self.rl_sum = np.zeros((G, N + 1, m, m))
        self.ll_sum = np.zeros((G, N + 1, m, m))
        self.bad = np.full(G, N + 1, dtype=np.int64)

    def eta_flat(self, P=None, upto=None) -> np.ndarray:
        """The standard normals eta of the Gaussian input, (P, upto) (default: all paths, N m)."""
        n = self.N * self.m if upto is None else int(upto)
        return from_chunks(self.eta, n, P)

    def dL_col(self, i: int) -> np.ndarray:
        """Flat entry i (step i // m, component i % m) of every path's increments, (P,) (a view
        where dL is float64, as for the QR sampler that reads it; else decoded)."""
        return decode_hist(self.dL[i // self.B, :, i % self.B])

    def group_row(self, arr, k):
        """Per-group block row k of a two-time group sum (G, m, cols) in either layout."""
        return arr[:, : self.m] if self.row_sums else arr[:, k * self.m:(k + 1) * self.m]

    def zero_rows(self):
        """Row mode: zero the one-row two-time sums before the next step."""
        if self.row_sums:
            self.su_sum[:] = 0.0
            self.kl_sum[:] = 0.0

    def run(self, k0, k1, wpre, W, use_W, R, RT):
        """Advance every path over rows k0..k1-1 with input ``wpre`` (+ ``W`` eta if ``use_W``)
        and the theta-side response R (R^T), accumulating the group sums.

        The kernel gets the rows of R and W of these steps only, in the precision of its history
        sums: :data:`SUM` over bfloat16 histories, float64 where a QR sampler keeps dL float64."""
        rows = slice(k0 * self.m, k1 * self.m)
        hist = np.float64 if self.dL.dtype == np.float64 else SUM
        Rk = np.ascontiguousarray(R[rows], dtype=hist)
        Wk = np.ascontiguousarray(W[rows], dtype=hist) if use_W else np.zeros((1, 1), dtype=hist)
        self.kern.dmft_paths(k0, k1, self.N, self.bounds, self.n_tan_g, self.delta, self.dt, self.sq,
                             wpre, Wk, use_W, self.eta, Rk, RT, self.s, self.z, self.dB, self.p,
                             self.do_psi, self.dL, self.a_hist, self.g_hist, self.b_hist, self.loss_sum,
                             self.met_sum, self.gam_sum, self.kl_sum, self.ells_sum, self.dsl_sum,
                             self.su_sum, self.rl_sum, self.ll_sum, self.bad,
                             self.cv == "pathwise", self.Gcv, self.Gcv_g, self._klcv_arg)
