"""How many r-paths carry the adjoint response tangent (docs/theory.md §3, "Cost").

The response kernel K_ell[k, l] = < grad ell(r_k) dr_k/dw_l > is a Monte Carlo average over the
paths that run the adjoint recursion of the generated ``dmft_paths`` kernel. Row k of one path
costs O(k^2 m^3), the whole grid N^3 m^3 / 6 multiply-adds per path, against about
3 N^2 m^2 / 2 for the path itself (memory term, Gaussian input, S_U row). An unbiased subset of
P_J paths therefore suffices (measured, bench/bench_issue12.py: the test-loss error at t = 5 of
the Figure 1 setting is the same with tangents on 1000 or on 20000 paths), and this module picks
P_J once, for the whole solve:

    P_J = clip( min(P * 9 / (N m c), budget / (N^3 m^3 c / 6)),  P / 16,  P )

i.e. the tangents cost at most as much as the r-side sweep (ratio (3 N^2 m^2 / 2) / (N^3 m^3 c / 6)
= 9 / (N m c)) and at most ``tangent_budget`` multiply-adds, but never fewer than one path in
``SHARE`` = 16 (and at least one per path group of every replica). c = 2 when the control variate
runs (a second recursion), else 1.

With R replicas (independent sub-solves, errorbars.py), P, P_J and the budget are totals
over the replicas: each replica gets ceil(P_J / R) tangent paths. Before, every replica had its own
floor of 50 per group, i.e. R times the tangents of a single solve at long grids (8 x 1000 paths
at K = 500 for the committee).

Why a share of the paths, not a fixed count (issue 12; ``python bench/bench_tangent_floor.py``:
sd across seeds and the rms of the claimed errors at t = T for two tangent counts). The response
noise adds variance ~ 1 / P_J to K_ell, the r-side's own noise ~ 1 / P: what matters is P_J / P.
Measured with P_J / P = 1/16 against ~1/125 (1280 against 160 paths at P = 2e4): committee
K = 500, 3 seeds: the claimed error of Q 0.0022 -> 0.0033 (a fit e^2 = e0^2 + c / P_J gives the
tangents 10 % of the error at 1/16); ``solve_long`` logistic lam = 0.1 to T = 100 (fine grid
K = 1000), seed 0: the fine solve's test-loss error 0.0009 -> 0.0018 (32 % at 1/16) and its late
plateau 0.4813 -> 0.4845 (stationary state at that step 0.4780 +- 0.0013); K = 100: unchanged.
With P_J / P about 1/12 (160 of P = 2000) instead of 1/2 (1280), logistic: K = 400 test / train
/ Q sd 0.0033 / 0.0078 / 0.024 against 0.0035 / 0.0078 / 0.025, CPU 7.5 -> 2.9 s; K = 800, 6 seeds:
sd 0.0041 / 0.0051 / 0.018 against 0.0044 / 0.0051 / 0.021, rms claimed 0.0031 / 0.0048 / 0.025
against 0.0032 / 0.0047 / 0.025, CPU 25.5 -> 10.6 s. So the old fixed floor of 50 per group
(1000 in all) was right at P = 2e4 -- 1/16 gives the same 1280 after rounding -- and bought
nothing at P = 2000 but 2.4x the CPU. At fine grids (K >= 1000) the tangents' share of the error
grows (32 % above): more than 1/16 there is the open lever, paid in K^3 per path.

The control variate cancels the noise of the own-noise factors dt + sqrt(tau delta) dB_l; at
tau = 0 they are the constant dt, the control variate equals its own mean, and it buys nothing:
it is off there (the estimate is the same to round-off, at half the cost). Its linear part does
nearly all of its work at none of its per-path cost (:func:`control_variate`; measured by
``python bench/bench_cv.py`` on 640 tangent paths: the variance of K_ell rows relative to the
pathwise control variate, committee dt 0.02 / 0.01 at k = K/5, K/2, K: 1.07,
1.09, 1.09 / 1.08, 1.08, 1.10; logistic dt 0.02: 1.45, 1.16, 1.09; without any control variate
6.5-8 and 4-53 times it). A window on the pathwise control variate instead (Zc's sums cut to
m - l <= W) keeps little: 4.6-5.8x (W = 16), 1.0-2.7x (W = 64) the full one's variance.

Whole lanes (issue 12): the kernel's adjoint advances ``LANES`` tangent paths at a time (SIMD
lanes); a group's n_tan_g paths fill ceil(n_tan_g / LANES) blocks, or, for n_tan_g < LANES,
LANES // n_tan_g whole groups share one block. n_tan_g is therefore rounded up to a multiple of
LANES (or to a power of two below it), capped at the group size: the extra tangent paths cost
nothing (their lanes were computed and thrown away before) and make K_ell less noisy; the meta's
tangent count is the rounded one.
"""
from __future__ import annotations

import math

from ..codegen.unroll import LANES  # tangent paths per block of the generated adjoint
from .options import as_options


#: the automatic P_J is at least P / SHARE (the tangents' share of the paths; module docstring)
SHARE = 16


def control_variate(opts, tau: float, replicas: int) -> str:
    """The tangents' control variate (docs/theory.md section 3): "" (none: ``tangent_cv=False``,
    or tau = 0, where the own-noise factors are the constant dt and the control variate equals its
    mean), "pathwise" (the kernel runs Zc beside Z on every tangent path: c = 2) or "linear" (Zc's
    first-order part in the noise, averaged over the paths by one deterministic recursion per row:
    c = 1, ~1.1x the pathwise variance of the tangents' part). ``tangent_cv=True`` picks "linear",
    but "pathwise" for one replica with the group jackknife, whose per-group kernel estimates need
    the control per group (the linear one is common to a replica's groups: asked for explicitly
    there, it leaves each group's tangent noise uncontrolled, and the jackknife error bars count
    that noise, so they come out larger)."""
    o = as_options(opts)
    if not o.tangent_cv or float(tau) <= 0.0:
        return ""
    if o.tangent_cv in ("linear", "pathwise"):
        return o.tangent_cv
    return "pathwise" if (o.jackknife and int(replicas) == 1) else "linear"


def total_tangent_paths(P: int, N: int, m: int, G: int, opts, tau: float, replicas: int) -> int:
    """P_J over the whole solve (all replicas) for P paths in total, N steps, width m, G groups,
    ``replicas`` R (which control variate the tangents run, so their cost: :func:`control_variate`);
    ``opts`` a :class:`~dmftgen.dmft.options.SolveOptions` or a dict of solve options."""
    opts = as_options(opts)
    nt = opts.tangent_paths
    if nt is None:
        c = 2.0 if control_variate(opts, tau, replicas) == "pathwise" else 1.0
        n = max(int(N), 1)
        per_path = n ** 3 * m ** 3 * c / 6.0
        nt = min(P * 9.0 / (n * m * c), float(opts.tangent_budget) / per_path)
        nt = max(math.ceil(P / SHARE), int(nt))
    return min(int(nt), int(P))


def tangent_paths_per_group(P_total: int, N: int, m: int, G: int, opts, tau: float, replicas: int,
                            smallest_group: int) -> int:
    """n_tan_g: tangent paths in each group of one replica (the first n_tan_g paths of the group)."""
    R = max(int(replicas), 1)
    per_replica = math.ceil(total_tangent_paths(P_total, N, m, G, opts, tau, R) / R)
    return min(whole_lanes(math.ceil(per_replica / G)), int(smallest_group))


def whole_lanes(n: int) -> int:
    """n tangent paths per group rounded up so that the adjoint's blocks of LANES lanes are full:
    a multiple of LANES, or below LANES the next power of two (LANES // n groups per block)."""
    n = int(n)
    if n <= 0:
        return 0
    if n >= LANES:
        return -(-n // LANES) * LANES
    return 1 << (n - 1).bit_length()
