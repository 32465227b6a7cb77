"""DMFT r-side path sweep, copied into every generated module (docs/kernels.md, "Templates").

Everything after the template-body marker line is pasted verbatim into ``generated/<model>.py``
after the row kernels, so ``ell_jac_row``, ``dell_ds_row``, ``loss_row`` and ``metrics_row`` are
inlined; the one ``# @unrolled`` line is replaced by the adjoint's unrolled inner products
(``adjoint_dots*``, emitted by dmftgen/codegen/unroll.py). The lines above the marker only make
this file readable and lintable on its own.

The discrete-time effective r-process (docs/theory.md §2, exact large-d limit of the
Euler--Maruyama SGF at step dt; Ito, left-point evaluation, one Brownian increment per step)::

    r_k  = w_k - (1/delta) sum_{m<k} R_theta[k, m] dL_m,
    dL_k = ell(r_k; s, z) (dt + sqrt(tau delta) dB_k),            dB_k ~ N(0, dt),
    w_k  = wpre_k + sum_{m<k} W[k, m] eta_m                         (Gaussian input, see below)

with per-path tangents (for the response kernel K_ell) computed by the *adjoint* recursion of
J = dr/dw = (I + R A / delta)^{-1}, A = diag(a_m), a_m = grad ell(r_m) (dt + sqrt(tau delta) dB_m):
the row Z_l = grad ell(r_k) J[k, l] solves, backwards from Z_k = grad ell(r_k),

    Z_l = -(1/delta) (sum_{l<m<=k} Z_m R_theta[m, l]) a_l,          l = k-1, ..., 0,

so that K_ell[k, l] = < Z_l > needs only the path's own a_0..a_{k-1}: O(K) memory per path instead
of the O(K^2) of the forward tangent (same O(k^2) work per step). The teacher tangent
psi_k = dr_k/dr* (pathwise route for nu, continuous labels) is propagated forward:

    psi_k = -(1/delta) sum_{m<k} R_theta[k, m] b_m,   b_m = (d_s ell_m + grad ell_m psi_m)(dt + sqrt(tau delta) dB_m).

Layout (all C-contiguous float64; "flat" block matrices have row k*M + a, column l*M + b):

* ``R`` (>= (k1 - k0)M, (N+1)M): the rows of R_theta (strictly block-lower-triangular) from step
  k0 on, row (k - k0)M + a = R_theta[kM + a] (the forward sweep passes the M rows of its step, the
  fixed point all of them), in dL's dtype; ``RT`` the transpose of all of R_theta, float32.
* ``W`` (>= (k1 - k0)M, N M): the causal Gaussian factor, w_k = wpre_k + W[k, :k] eta_{:k}
  (``use_W``), its rows from step k0 on like ``R``, in dL's dtype.
* ``wpre`` (P, N+1, M), or (P, 1, M) holding only the row of step k0 (forward sweep, k1 = k0 + 1:
  the theta-side writes it contiguously each step instead of one strided entry per path into a
  (P, N+1, M) array, issue 12; told by the shape as for the row-mode sums below); ``dB`` (P, N).
* The paths' histories in chunks (issue 12): ``eta``, ``dL`` (written) of shape (C, P, B), entry
  [c, i, jj] = path i's flat entry c B + jj (step-component kM + a), and ``b_hist`` (C, P, B K),
  entry [c, i, jj K + j] = b_{(c B + jj), j}; B is a whole number of steps (B % M == 0;
  ``dmftgen.dmft.rside.chunk_len``). A row reads the first k M entries of every path: chunk by
  chunk, each chunk for all paths of a group in order, it streams contiguous memory. Path by
  path over (P, N M) rows, where a row reads a prefix of every path's row, it ran at 7-10 GB/s
  on one core instead of the ~20 GB/s of contiguous reads (bench/bench_adjoint.py --part rside,
  committee, P = 2e4, one thread, ms per row at rows 1..20 / 60..69 / 240..259 / 480..499:
  6.7-7.9 / 13 / 19-21 / 23-25 -> 3.4 / 5.5 / 9.8 / 18.6).
  The paths' histories eta, dL and b_hist are stored as bfloat16 (uint16 bits, read by ``hval``,
  written rounded to nearest by ``henc``; issue 12: the sweep streams them once per row, so their
  bytes set its speed at long grids: half those of float32), and the history sums of the first
  pass run in float32 (input W eta, memory term R dL, psi's R b_hist: 16 lanes per AVX-512
  register instead of 8; the float64 version spent its time converting and multiplying, not
  loading: committee k = 480..499, P = 2e4, 31.4 -> 25.9 ms per row). Each stored entry is rounded
  once, by <= 2^-8 of itself, independently between entries and paths; the sums' own round-off,
  ~sqrt(n/16) 2^-24 of the sum of |terms| for n = k M terms, is far below that. Measured against
  float64 histories (same seeds, P = 8000; dmftgen/dmft/rside.py, HIST): estimates move by
  <= 4e-2 of their error bars, typically 5e-3. Everything after the history sums (r_k, ell,
  the group sums, the S_U row) is float64. Where dL is float64 (nearly dependent increments near
  tau = 0, the fixed point, option ``histories="float64"``; dmftgen/dmft/rside.py), the rows and
  sums are float64 too.
* ``s`` (P, K); ``z`` (P, NZ); ``p`` (NP,).
* ``a_hist`` (n_tangent_paths, N, M, M), ``g_hist`` (n_tangent_paths, N+1, M, M) (grad ell); ``b_hist`` (chunked, above) float32, only if ``do_psi`` (else any (1, 1, 1) array).
  Tangent path t = g * n_tan_g + ti is path bounds[g] + ti; the adjoint advances LANES of them at
  a time (one block: LANES consecutive t of one group, or, for n_tan_g < LANES, the paths of
  LANES // n_tan_g whole groups), each group's lanes summed in lane order into kl_sum[g].
* Accumulators (float64), one slot per path group g (batch means; no races between prange iterations):
  ``loss_sum`` (G, N+1), ``met_sum`` (G, N+1, NMET), ``gam_sum`` (G, N+1, M, M),
  ``kl_sum`` (G, (N+1)M, (N+1)M) (tangent paths only), ``ells_sum`` (G, N+1, M, K) (ell s^T),
  ``dsl_sum`` (G, N+1, M, K) (d_s ell + grad ell psi), ``su_sum`` (G, N M, N M) (dL_k dL_l^T, l<=k),
  ``rl_sum`` (G, N+1, M, M) (r ell^T), ``ll_sum`` (G, N+1, M, M) (ell ell^T), ``bad`` (G,) first
  non-finite step (N+1 if none).
* Row mode (issue 12, forward sweep only, k1 = k0 + 1): ``su_sum`` of shape (G, M, N M) and
  ``kl_sum`` of shape (G, M, (N+1)M) hold only the row of the current step k (block row k is
  written at rows 0..M-1; the caller zeroes them before the step and reads them after it). The
  mode is told by the shape (second axis M instead of N M / (N+1) M; for N = 1 the two layouts
  coincide), so the signature is unchanged. Memory O(G K m^2) instead of O(G K^2 m^2).
* Control variate for the tangents (``use_cv``): Zc, the same adjoint recursion with grad ell
  replaced by fixed matrices (``Gcv_g[k]`` at the row's own time, ``Gcv[l]`` in a_l; estimates of
  Gamma known before the step) but the path's
  own dB; its mean follows the deterministic recursion (dB_l is independent of Zc_m, m > l), so
  K_ell = <Z> - <Zc> + E Zc removes most of the noise of the own-noise factors dt + sqrt(tau
  delta) dB, whose sd sqrt(tau delta dt) dwarfs their mean dt on fine grids. The control
  variate is subtracted in place: with ``use_cv`` ``kl_sum`` accumulates sum(Z - Zc), so only the
  difference is stored (one (G, (N+1)M, (N+1)M) array, not two). ``klcv_sum`` is no longer
  written (kept in the signature; pass any 3-d float64 array, e.g. (1, 1, 1)).

Precision of the adjoint (issue 12): its O(K^3 m^3) inner products run in float32 -- the adjoint
rows Zt, Zc of a block, RT (the theta-side keeps R_theta^T in float32: each entry rounded once,
when its column is written; it is read by nothing else) and the helpers' accumulators -- so that one
AVX-512 register holds LANES = 16 lanes and RT streams half the bytes.
Everything else stays float64: a_hist, g_hist, Gcv, the own-noise factors, the product Z_l =
-(1/delta) acc a_l (float32 acc times float64 a_l, rounded to float32 only when stored into Zt /
Zc), and the group sums into kl_sum (each lane's float64 value, before that rounding). Round-off,
u = 2^-24 = 6.0e-8:

* one float32 inner product of n = (k - l) M terms errs by at most ~(n + 1) u times the sum of its
  |terms| (RT's rounding included), typically ~sqrt(n) u (independent roundings); storing Z_l
  adds u. Errors of Z_j propagate into Z_l linearly, so with A the same recursion in absolute
  values (|R|, |a|, |grad ell|), |Z_l(float32) - Z_l| <= (k - l + 1)((k - l) M + 3) u A_l to first
  order (induction over l; tests/test_tangents.py asserts this bound against a float64 numpy
  reference). A worst-case bound only: ~1e-2 A at K = 500, m = 2; typically ~sqrt(n) u.
* K_ell = <Z - Zc> + E Zc: the control variate makes Z - Zc much smaller than Z, Zc, so relative
  to the difference the round-off is amplified by |Z| / |Z - Zc|; relative to K_ell it is ~eps
  |Z| / |K_ell|, with |Z| / |E Z| ~ sd / mean of the own-noise factor dt + sqrt(tau delta) dB,
  sqrt(tau delta / dt) ~ 8 for the committee at dt = 0.01 -- and the per-path roundings average
  out over the P_J tangent paths (independent signs). The Monte Carlo noise of the estimate,
  sd(Z - Zc) / sqrt(P_J), is >= 1e-3 of K_ell (P_J ~ 1e3), a hundred times more even at eps = 1e-5.
* Measured (bench/compare_kell.py: P = 2e4, same seed and the same 1280 tangent paths as the
  float64 kernel; logistic and committee, K = 100 and 500): the adjoint's entries of K_ell (k > l)
  move by <= 7e-8 of their largest value (another seed: 0.14-0.37, the Monte Carlo noise), Q and
  the test loss at t = T by <= 4e-8 of their error bars.
"""

import math  # noqa: F401

import numpy as np
from numba import njit, prange
from numba.core import config as _numba_config

M = K = NMET = 1


def ell_jac_row(r, s, z, p, g, J):  # pragma: no cover - stand-ins, replaced by the generated kernels
    raise NotImplementedError


def dell_ds_row(r, s, z, p, out):  # pragma: no cover
    raise NotImplementedError


def loss_row(r, s, z, p):  # pragma: no cover
    raise NotImplementedError


def metrics_row(r, s, z, p, out):  # pragma: no cover
    raise NotImplementedError


# stand-ins for the unrolled inner products the emitter writes in place of the marker line below
# (dmftgen/codegen/unroll.py)
def adjoint_dots(RT, Zt, Zc, l, a, c, j0, j1, use_cv, acc3, accc):  # pragma: no cover
    raise NotImplementedError


def adjoint_dots2(RT, Zt, Zc, l, a, c, j0, j1, use_cv, acc3, accc):  # pragma: no cover
    raise NotImplementedError


def adjoint_dots1p(RT, Zt, Zc, l, j0, j1, use_cv, acc3, accc, accp, acccp):  # pragma: no cover
    raise NotImplementedError


def adjoint_dots2p(RT, Zt, Zc, l, j0, j1, use_cv, acc3, accc, accp, acccp):  # pragma: no cover
    raise NotImplementedError


# --- template body ---

from llvmlite import ir as _llvm_ir  # noqa: E402 - the bfloat16 codec below
from numba import types as _nb_types  # noqa: E402
from numba.core import config as _numba_config  # noqa: E402,F811 - the SLP switch below
from numba.extending import intrinsic as _intrinsic, overload as _overload  # noqa: E402


# The paths' histories eta, dL, b_hist are stored as bfloat16: the upper 16 bits of a float32, in
# uint16 arrays (dmftgen/dmft/rside.py, HIST; issue 12: the sweep streams them once per row, so
# their bytes set its speed). A float32 is its bfloat16 bits shifted left by 16: one integer shift
# that vectorises; storing rounds the float32 to nearest (ties to even) on the upper 16 bits.
# ``hval`` / ``henc`` are the identity / a cast for float64 histories (a QR sampler's dL).
@_intrinsic
def _bits_to_f32(typingctx, x):
    """The float32 whose bits are the uint32 x."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], _llvm_ir.FloatType())
    return _nb_types.float32(_nb_types.uint32), codegen


@_intrinsic
def _f32_to_bits(typingctx, x):
    """The bits of the float32 x, as a uint32."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], _llvm_ir.IntType(32))
    return _nb_types.uint32(_nb_types.float32), codegen


def hval(h):  # pragma: no cover - resolved by the overload below in compiled code
    """The value of one history entry (float32 for bfloat16 bits, else h itself)."""
    raise NotImplementedError


@_overload(hval, inline="always")
def _hval(h):
    if isinstance(h, _nb_types.Integer):
        return lambda h: _bits_to_f32(np.uint32(h) << np.uint32(16))
    return lambda h: h


def henc(v, hist):  # pragma: no cover - resolved by the overload below in compiled code
    """v as an entry of the history array ``hist`` (bfloat16 bits rounded to nearest, or a cast)."""
    raise NotImplementedError


@_overload(henc, inline="always")
def _henc(v, hist):
    if isinstance(hist.dtype, _nb_types.Integer):
        def enc(v, hist):
            b = _f32_to_bits(np.float32(v))
            if (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):   # NaN stays NaN (quiet)
                return np.uint16((b >> np.uint32(16)) | np.uint32(0x40))
            return np.uint16((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
        return enc
    dt = hist.dtype
    return lambda v, hist: dt(v)


#: Tangent paths processed together by the adjoint recursion (SIMD lanes of the inner loop):
#: 16 float32 lanes = one AVX-512 register (see "Precision of the adjoint" in the module docstring).
LANES = 16


# The adjoint's inner products, compiled eagerly (explicit signatures) with LLVM's SLP vectoriser
# switched on for these functions only (numba leaves it off by default): it packs the sixteen
# float32 lane accumulators into one SIMD register (AVX-512: one zmm), ~2x the speed of the scalar FMA
# chains; it only groups independent lanes, so the bytes are those of the scalar code. For M = 2
# one pass computes all four (a, c) and the control variate: 8 independent accumulators, every
# load used 4 (Zt, Zc) or 4 (RT) times: another ~1.6x (bench/bench_adjoint.py). For M = 1 and M = 2
# one pass serves two rows, l and l - 1 (the latter without the terms of Z_l, added once Z_l is
# known): twice the independent accumulators (M = 2: sixteen), each load of Zt, Zc used twice as
# often (committee, 160 tangent paths, rows 480..499: 8.9 -> 7.9 ms per row, ~78 GFlop/s). Only
# "contract", not "reassoc": with reassociation LLVM vectorises each lane's sum along j instead
# (stride-(M LANES) loads and shuffles), at less than half the speed (issue 12,
# bench/bench_adjoint.py).
# float32 Zt, Zc, RT and accumulators (issue 12: 16 lanes per zmm instead of 8).
ADJ_SIG = ("void(float32[:, :], float32[:, :, ::1], float32[:, :, ::1], int64, int64, int64, int64, int64, "
           "boolean, float32[:, :, ::1], float32[:, :, ::1])")
ADJ1P_SIG = ("void(float32[:, :], float32[:, :, ::1], float32[:, :, ::1], int64, int64, int64, boolean, "
             "float32[:, :, ::1], float32[:, :, ::1], float32[:, :, ::1], float32[:, :, ::1])")
_slp_before = _numba_config.SLP_VECTORIZE
_numba_config.SLP_VECTORIZE = 1
try:
    pass  # @unrolled adjoint helpers: adjoint_dots, adjoint_dots2, adjoint_dots1p, adjoint_dots2p (dmftgen/codegen/unroll.py)
finally:
    _numba_config.SLP_VECTORIZE = _slp_before


@njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath={"reassoc", "contract"})
def dmft_paths(k0, k1, N, bounds, n_tan_g, delta, dt, sq, wpre, W, use_W, eta, R, RT, s, z, dB, p,
               do_psi, dL, a_hist, g_hist, b_hist, loss_sum, met_sum, gam_sum, kl_sum, ells_sum, dsl_sum,
               su_sum, rl_sum, ll_sum, bad, use_cv, Gcv, Gcv_g, klcv_sum):
    """Advance every DMFT r-path over the steps k0 <= k < k1 and accumulate the kernels.

    The forward sweep calls it with k1 = k0 + 1 (R_theta row k known, later rows not yet); the
    fixed-point iteration calls it with (0, N + 1) and the whole R_theta of the current iterate.
    Paths are split in groups ``bounds[g]:bounds[g+1]``; group g is one prange iteration with its
    own scratch and its own accumulator slots. The first ``n_tan_g`` paths of each group also run
    the adjoint tangent (``n_tan_g = 0`` when the tangents are deterministic, LINEAR_ELL), in a
    second prange over chunks of whole groups, LANES paths per block (several groups per block
    when n_tan_g < LANES; issue 12).
    See the module docstring for the equations and the array layout.
    """
    G = bounds.shape[0] - 1
    inv_delta = 1.0 / delta
    # the history sums of the first pass run in R's dtype (float32 over bfloat16 histories,
    # float64 where dL is float64): see "Layout" in the module docstring
    hzero = R.dtype.type(0.0)
    NN = (N + 1) * M
    # row mode (see the module docstring): block row k lives at rows 0..M-1
    su_full = su_sum.shape[1] > M
    kl_full = kl_sum.shape[1] > M
    w_full = wpre.shape[1] > 1   # else wpre holds only the row of step k0 (see "Layout")
    BC = dL.shape[2]   # entries of one history chunk: a whole number of steps (see "Layout")
    NQ = 2 * M + M * K  # history sums of a path: input W eta, memory R dL, psi's R b_hist
    for g in prange(G):
        i0 = bounds[g]
        ng = bounds[g + 1] - i0
        # the group's S_U row, summed in a local float64 buffer and added to su_sum[g] once per
        # row: the compiler can then prove that the update does not alias the history it reads,
        # and vectorises it (issue 12)
        sul = np.zeros((M, su_sum.shape[2]))
        acc = np.empty((max(ng, 1), NQ), dtype=R.dtype)   # history sums of the group's paths
        xk = np.zeros((max(ng, 1), M))                     # their increments dL_k (float64)
        alive = np.ones(max(ng, 1), dtype=np.bool_)        # path finite so far (else frozen)
        live = np.empty(max(ng, 1), dtype=np.int64)        # the alive paths of a row, in order
        r = np.empty(M)
        ell = np.empty(M)
        jac = np.empty((M, M))
        ds = np.empty((M, K))
        psi = np.empty((M, K))
        q = np.empty((M, K))
        met = np.empty(NMET)
        for k in range(k0, k1):
            kM = k * M
            kr = (k - k0) * M   # row block k of R_theta, W in the rows passed (from step k0 on)
            kw = k if w_full else 0
            # --- 1. the history sums of every path of the group (input W eta, memory term R dL,
            # psi's R b_hist), chunk by chunk: all paths' entries of one chunk lie in one
            # contiguous block, so the sweep streams it in order (issue 12, "Layout")
            for ii in range(ng):
                for c in range(NQ):
                    acc[ii, c] = hzero
            for c in range((kM + BC - 1) // BC):
                o = c * BC
                n = min(BC, kM - o)
                # this chunk's columns of the rows of R and W, as 1-d slices: indexed R[kr, o + jj]
                # the loops below did not vectorise (3x slower, bench/bench_adjoint.py)
                Ra = R[kr, o:o + n]
                Wa = W[kr, o:o + n] if use_W else Ra
                Rb = R[kr + 1, o:o + n] if M == 2 else Ra
                Wb = W[kr + 1, o:o + n] if M == 2 and use_W else Ra
                for ii in range(ng):
                    i = i0 + ii
                    ec = eta[c, i]
                    dc = dL[c, i]
                    if M == 2 and (K == 1 or not do_psi):
                        # both components in one pass (eta, dL loaded once; with K = 1 psi too,
                        # sharing the loads of R)
                        g0 = g1 = m0 = m1 = p0 = p1 = hzero
                        if do_psi and use_W:
                            bc = b_hist[c, i]
                            for jj in range(n):
                                e = hval(ec[jj])
                                d = hval(dc[jj])
                                h = hval(bc[jj])
                                ra = Ra[jj]
                                rb = Rb[jj]
                                g0 += Wa[jj] * e
                                g1 += Wb[jj] * e
                                m0 += ra * d
                                m1 += rb * d
                                p0 += ra * h
                                p1 += rb * h
                        elif use_W:
                            for jj in range(n):
                                e = hval(ec[jj])
                                d = hval(dc[jj])
                                g0 += Wa[jj] * e
                                g1 += Wb[jj] * e
                                m0 += Ra[jj] * d
                                m1 += Rb[jj] * d
                        else:
                            for jj in range(n):
                                d = hval(dc[jj])
                                m0 += Ra[jj] * d
                                m1 += Rb[jj] * d
                            if do_psi:
                                bc = b_hist[c, i]
                                for jj in range(n):
                                    h = hval(bc[jj])
                                    p0 += Ra[jj] * h
                                    p1 += Rb[jj] * h
                        acc[ii, 0] += g0
                        acc[ii, 1] += g1
                        acc[ii, 2] += m0
                        acc[ii, 3] += m1
                        if do_psi:
                            acc[ii, 4] += p0
                            acc[ii, 5] += p1
                    else:
                        for a in range(M):
                            Rr = R[kr + a, o:o + n]
                            if use_W:
                                Wr = W[kr + a, o:o + n]
                                gin = hzero
                                for jj in range(n):
                                    gin += Wr[jj] * hval(ec[jj])
                                acc[ii, a] += gin
                            mem = hzero
                            for jj in range(n):
                                mem += Rr[jj] * hval(dc[jj])
                            acc[ii, M + a] += mem
                            if do_psi:
                                # b_hist chunk: entry (flat step-component jj, teacher j) at jj K + j
                                bc = b_hist[c, i]
                                for j in range(K):
                                    tps = hzero
                                    for jj in range(n):
                                        tps += Rr[jj] * hval(bc[jj * K + j])
                                    acc[ii, 2 * M + a * K + j] += tps
            # --- 2. every path: r_k, ell and the row's group sums, its increment dL_k
            ck = kM // BC          # the chunk of step k's entries (BC is a multiple of M)
            ok = kM - ck * BC
            for ii in range(ng):
                if not alive[ii]:
                    continue
                i = i0 + ii
                tix = g * n_tan_g + ii   # tangent path index (a_hist, g_hist): see "Layout"
                tangent = ii < n_tan_g
                si = s[i]
                zi = z[i]
                finite = True
                for a in range(M):
                    v = wpre[i, kw, a] - inv_delta * acc[ii, M + a]
                    if use_W:
                        v += acc[ii, a]
                    r[a] = v
                    if not (abs(v) < 1e150):
                        finite = False
                if not finite:
                    alive[ii] = False
                    if k < bad[g]:
                        bad[g] = k
                    continue
                ell_jac_row(r, si, zi, p, ell, jac)
                loss_sum[g, k] += loss_row(r, si, zi, p)
                if NMET > 0:
                    metrics_row(r, si, zi, p, met)
                    for c in range(NMET):
                        met_sum[g, k, c] += met[c]
                for a in range(M):
                    for b in range(M):
                        gam_sum[g, k, a, b] += jac[a, b]
                        rl_sum[g, k, a, b] += r[a] * ell[b]
                        ll_sum[g, k, a, b] += ell[a] * ell[b]
                    for j in range(K):
                        ells_sum[g, k, a, j] += ell[a] * si[j]
                if do_psi:
                    for a in range(M):
                        for j in range(K):
                            psi[a, j] = -inv_delta * acc[ii, 2 * M + a * K + j]
                    dell_ds_row(r, si, zi, p, ds)
                    for a in range(M):
                        for j in range(K):
                            t = ds[a, j]
                            for b in range(M):
                                t += jac[a, b] * psi[b, j]
                            q[a, j] = t
                            dsl_sum[g, k, a, j] += t
                if k < N:
                    # --- increment dL_k (Ito: ell at the left point, the path's own dB_k)
                    fac = dt + sq * dB[i, k]
                    for a in range(M):
                        dL[ck, i, ok + a] = henc(ell[a] * fac, dL)
                        xk[ii, a] = np.float64(hval(dL[ck, i, ok + a]))  # as stored: S_U sums these
                    if do_psi:
                        for a in range(M):
                            for j in range(K):
                                b_hist[ck, i, (ok + a) * K + j] = henc(q[a, j] * fac, b_hist)
                    if tangent:
                        for a in range(M):
                            for b in range(M):
                                a_hist[tix, k, a, b] = jac[a, b] * fac
                if tangent:
                    for a in range(M):
                        for b in range(M):
                            g_hist[tix, k, a, b] = jac[a, b]
            # --- 3. S_U row k (times delta * P): the full second moment dL_k dL_{<=k}^T, white
            # part and cross terms, chunk by chunk; for every entry the alive paths in order, two
            # at a time (x_i d_i + x_j d_j added at once: half the read-modify-writes of the
            # float64 row, which bound this pass: committee, 2e4 paths, 1024 entries, 5.3 -> 3.3 ms
            # in isolation, issue 12), the last one alone when their number is odd
            if k < N:
                nl = 0
                for ii in range(ng):
                    if alive[ii]:
                        live[nl] = ii
                        nl += 1
                for c in range((kM + M + BC - 1) // BC):
                    o = c * BC
                    n = min(BC, kM + M - o)
                    for pr in range(0, nl, 2):
                        ia = live[pr]
                        ib = live[pr + 1] if pr + 1 < nl else ia
                        wb = 1.0 if pr + 1 < nl else 0.0   # an odd last path: its partner weighs 0
                        da = dL[c, i0 + ia]
                        db = dL[c, i0 + ib]
                        if M == 2:
                            xa0 = xk[ia, 0]
                            xa1 = xk[ia, 1]
                            xb0 = wb * xk[ib, 0]
                            xb1 = wb * xk[ib, 1]
                            s0 = sul[0, o:o + n]   # 1-d slices: see Ra above
                            s1 = sul[1, o:o + n]
                            for jj in range(n):
                                va = np.float64(hval(da[jj]))   # bfloat16 history: products in float64
                                vb = np.float64(hval(db[jj]))
                                s0[jj] += xa0 * va + xb0 * vb
                                s1[jj] += xa1 * va + xb1 * vb
                        else:
                            for a in range(M):
                                xa = xk[ia, a]
                                xb = wb * xk[ib, a]
                                sa = sul[a, o:o + n]
                                for jj in range(n):
                                    sa[jj] += xa * np.float64(hval(da[jj])) + xb * np.float64(hval(db[jj]))
                srow = kM if su_full else 0
                for a in range(M):
                    for j in range(kM + M):
                        su_sum[g, srow + a, j] += sul[a, j]
                        sul[a, j] = 0.0
    # --- adjoint tangents of the first n_tan_g paths of every group, LANES paths at a time: the
    # inner loop runs over the lanes (contiguous), so it vectorises whatever k - l is. Tangent path
    # t (t = g * n_tan_g + ti, as in a_hist / g_hist) is lane t - t0 of its block. With
    # n_tan_g >= LANES a block holds the paths of one group (ceil(n_tan_g / LANES) blocks per
    # group); with fewer, whole groups are packed into one block (LANES // n_tan_g of them), so no
    # computed lane is wasted when n_tan_g divides LANES (dmftgen/dmft/tangents.py rounds it so).
    # One prange iteration owns a chunk of whole groups: no two iterations touch one kl_sum[g],
    # and each group's lanes are summed in lane order (deterministic at any thread count).
    gpc = max(LANES // n_tan_g, 1) if n_tan_g > 0 else 1
    nchunk = (G + gpc - 1) // gpc if n_tan_g > 0 else 0
    for ch in prange(nchunk):
        Zt = np.zeros((NN, M, LANES), dtype=np.float32)
        acc3 = np.zeros((M, M, LANES), dtype=np.float32)
        Zc = np.zeros((NN, M, LANES), dtype=np.float32)
        accc = np.zeros((M, M, LANES), dtype=np.float32)
        accp = np.zeros((M, M, LANES), dtype=np.float32)    # M <= 2: row l - 1's partial sums (adjoint_dots1p/2p)
        acccp = np.zeros((M, M, LANES), dtype=np.float32)
        pix = np.zeros(LANES, dtype=np.int64)
        gid = np.zeros(LANES, dtype=np.int64)     # lane -> its group
        last = np.zeros(LANES, dtype=np.bool_)    # lane ends its group's run in the block
        facv = np.zeros(LANES)                    # own-noise factor of every lane at step l
        cg0 = ch * gpc
        cg1 = min(cg0 + gpc, G)
        nb = 1 if gpc > 1 else (n_tan_g + LANES - 1) // LANES
        for blk in range(nb):
            if gpc > 1:
                t0 = cg0 * n_tan_g
                nl = (cg1 - cg0) * n_tan_g
            else:
                t0 = cg0 * n_tan_g + blk * LANES
                nl = min(LANES, n_tan_g - blk * LANES)
            # per lane, once per block (no integer division in the l loop)
            for ln in range(nl):
                tt = t0 + ln
                gid[ln] = tt // n_tan_g
                pix[ln] = bounds[gid[ln]] + tt % n_tan_g
                last[ln] = ln == nl - 1 or (tt + 1) % n_tan_g == 0
            for k in range(max(k0, 1), k1):
                kM = k * M
                krow = kM if kl_full else 0
                for a in range(M):
                    for b in range(M):
                        for ln in range(nl):
                            Zt[kM + b, a, ln] = g_hist[t0 + ln, k, a, b]
                            Zc[kM + b, a, ln] = Gcv_g[k, a, b]
                pend = False
                for l in range(k - 1, -1, -1):
                    if M == 2 and pend:
                        # row l's sums from the pass of row l + 1, plus its j = 2 (l + 1), 2 (l + 1) + 1
                        # terms (Z_{l+1}, known now)
                        jn = (l + 1) * 2
                        for a in range(2):
                            for c in range(2):
                                ra = RT[l * 2 + c, jn]
                                rb = RT[l * 2 + c, jn + 1]
                                for ln in range(LANES):
                                    acc3[a, c, ln] = accp[a, c, ln] + Zt[jn, a, ln] * ra + Zt[jn + 1, a, ln] * rb
                                    accc[a, c, ln] = acccp[a, c, ln] + Zc[jn, a, ln] * ra + Zc[jn + 1, a, ln] * rb
                        pend = False
                    elif M == 2 and l >= 1:
                        adjoint_dots2p(RT, Zt, Zc, l, (l + 1) * M, kM + M, use_cv, acc3, accc, accp, acccp)
                        pend = True
                    elif M == 2:
                        adjoint_dots2(RT, Zt, Zc, l, 0, 0, (l + 1) * M, kM + M, use_cv, acc3, accc)
                    elif M == 1 and pend:
                        # row l's sum from the pass of row l + 1, plus its j = l + 1 term
                        rl = RT[l, l + 1]
                        for ln in range(LANES):
                            acc3[0, 0, ln] = accp[0, 0, ln] + Zt[l + 1, 0, ln] * rl
                            accc[0, 0, ln] = acccp[0, 0, ln] + Zc[l + 1, 0, ln] * rl
                        pend = False
                    elif M == 1 and l >= 1:
                        adjoint_dots1p(RT, Zt, Zc, l, l + 1, k + 1, use_cv, acc3, accc, accp, acccp)
                        pend = True
                    else:
                        for a in range(M):
                            for c in range(M):
                                adjoint_dots(RT, Zt, Zc, l, a, c, (l + 1) * M, kM + M, use_cv, acc3, accc)
                    # lanes -> Z_l; group sums in lane order (the lanes of one group are contiguous):
                    # t is float64 (float32 acc3 times float64 a_hist), summed before its rounding
                    # to float32 in Zt
                    for a in range(M):
                        for b in range(M):
                            tot = 0.0
                            for ln in range(nl):
                                t = 0.0
                                for c in range(M):
                                    t += acc3[a, c, ln] * a_hist[t0 + ln, l, c, b]
                                t = -inv_delta * t
                                Zt[l * M + b, a, ln] = t
                                tot += t
                                if last[ln]:
                                    kl_sum[gid[ln], krow + a, l * M + b] += tot
                                    tot = 0.0
                    if use_cv:
                        for ln in range(nl):
                            facv[ln] = dt + sq * dB[pix[ln], l]
                        for a in range(M):
                            for b in range(M):
                                tot = 0.0
                                for ln in range(nl):
                                    t = 0.0
                                    for c in range(M):
                                        t += accc[a, c, ln] * Gcv[l, c, b]
                                    t = -inv_delta * t * facv[ln]
                                    Zc[l * M + b, a, ln] = t
                                    tot += t
                                    # subtracted in place: kl_sum holds sum(Z - Zc) (issue 12: one
                                    # (G, NN, NN) accumulator instead of two)
                                    if last[ln]:
                                        kl_sum[gid[ln], krow + a, l * M + b] -= tot
                                        tot = 0.0
