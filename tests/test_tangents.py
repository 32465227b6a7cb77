"""Which paths carry the response tangents (dmftgen/dmft/tangents.py, docs/theory.md §3)."""
import math

import numpy as np
import pytest

from dmftgen import Settings, solve
from dmftgen.dmft import solver as S
from dmftgen.dmft.tangents import LANES, tangent_paths_per_group, total_tangent_paths, whole_lanes


def _n_tangent(res):
    """Total tangent paths of a solve from its meta ("adjoint on N paths ...")."""
    return int(res.meta["tangents"].split()[2])


@pytest.mark.parametrize("cv", ["pathwise", "linear"])
def test_control_variate_equals_its_mean_at_tau0(logistic, monkeypatch, cv):
    """At tau = 0 the own-noise factors are the constant dt: the control variate Zc equals its
    mean (and its linear part in the noise is 0), so skipping it must leave K_ell unchanged to
    round-off. Were the claim wrong, the two estimates would differ at the Monte Carlo level
    (~1e-3 relative here), not at round-off.

    Round-off is that of the float32 adjoint (templates/dmft.py, "Precision of the adjoint"): Z is
    the same float32 computation with and without the control variate, so the two differ by the
    float32 round-off of Zc against its float64 mean, at most (K + 1)(K m + 3) u = 143 u = 8.5e-6
    of the (absolute-value) recursion at K = 10, m = 1, u = 2^-24 (the bound asserted in
    test_packed_adjoint_blocks_equal_one_group_at_a_time); the test loss moves through K_ell
    alone, linearly. Measured: 6.5e-10 of max |K_ell| (the largest entries are the float64 Gamma
    diagonal; the adjoint's entries are ~1e-2 of it)."""
    st = Settings(delta=2, tau=0.0, T=1, dt=0.1)
    off = solve(logistic, st, paths=2000, replicas=1, tangent_paths=400)
    monkeypatch.setattr(S, "control_variate", lambda opts, tau, replicas: cv)
    on = solve(logistic, st, paths=2000, replicas=1, tangent_paths=400)
    assert on.meta["tangent_cv"] == cv and off.meta["tangent_cv"] == ""
    scale = np.abs(on["K_ell"]).max()
    assert scale > 0
    K, m = 10, 1
    tol = (K + 1) * (K * m + 3) * 2.0 ** -24
    assert np.abs(on["K_ell"] - off["K_ell"]).max() <= tol * scale
    assert np.allclose(on["test_loss"], off["test_loss"], rtol=tol, atol=0)


@pytest.mark.parametrize("cv", ["pathwise", "linear"])
def test_control_variate_matters_at_tau_positive(logistic, monkeypatch, cv):
    """The converse, so that the test above has teeth: at tau > 0 the control variate changes the
    K_ell estimate (by Monte Carlo noise), i.e. the forced switch really switches it."""
    st = Settings(delta=2, tau=0.5, T=1, dt=0.1)
    on = solve(logistic, st, paths=2000, replicas=1, tangent_paths=400, tangent_cv=cv)
    assert on.meta["tangent_cv"] == cv
    monkeypatch.setattr(S, "control_variate", lambda opts, tau, replicas: "")
    off = solve(logistic, st, paths=2000, replicas=1, tangent_paths=400)
    scale = np.abs(on["K_ell"]).max()
    assert np.abs(on["K_ell"] - off["K_ell"]).max() > 1e-6 * scale


@pytest.mark.parametrize("tangent_paths", [None, 600])
def test_replicas_share_the_tangent_paths(logistic, tangent_paths):
    """R replicas carry (up to rounding to whole paths per group) the tangent paths of one solve
    of the same total size, not R times as many (the cost of the K^3 adjoint)."""
    st = Settings(delta=2, tau=0.5, T=2, dt=0.02)  # N = 100: the automatic subset is below P
    opts = {} if tangent_paths is None else {"tangent_paths": tangent_paths}
    one = solve(logistic, st, paths=16000, replicas=1, **opts)
    eight = solve(logistic, st, paths=16000, replicas=8, **opts)
    n1, n8 = _n_tangent(one), _n_tangent(eight)
    G = one.meta["groups"]
    # one replica (group jackknife) runs the pathwise control variate, eight the linear one
    # (tangents.control_variate): the automatic P_J prices them differently (c = 2 and 1)
    assert (one.meta["tangent_cv"], eight.meta["tangent_cv"]) == ("pathwise", "linear")
    PJ1 = total_tangent_paths(16000, 100, 1, G, opts, 0.5, replicas=1)
    PJ8 = total_tangent_paths(16000, 100, 1, G, opts, 0.5, replicas=8)
    assert n1 < 16000  # the subset is really a subset at this grid
    # each replica rounds up to whole paths per group, then to whole adjoint blocks (LANES lanes)
    assert PJ1 <= n1 <= PJ1 + G * LANES
    assert PJ8 <= n8 <= PJ8 + 8 * G * LANES < 8 * PJ8


def test_automatic_subset_costs_at_most_the_r_side():
    """The automatic P_J keeps the adjoint's N^3 m^3 c / 6 per path within the r-side's
    3 N^2 m^2 / 2 per path (above the floor of one path in SHARE), never exceeds P and never
    falls below P / SHARE (the tangents' share of the error is set by P_J / P)."""
    from dmftgen.dmft.tangents import SHARE

    G = 20
    for N, m, P, tau in [(100, 1, 20000, 0.5), (500, 2, 20000, 0.2), (1000, 2, 80000, 0.0), (10, 1, 500, 0.5),
                         (800, 1, 2000, 0.5)]:
        for R in (1, 8):  # the pathwise control variate (one replica, jackknife) costs c = 2, the linear 1
            c = 2.0 if tau > 0 and R == 1 else 1.0
            PJ = total_tangent_paths(P, N, m, G, {}, tau, R)
            assert math.ceil(P / SHARE) <= PJ <= P
            assert PJ == math.ceil(P / SHARE) or PJ * N ** 3 * m ** 3 * c / 6 <= 1.0001 * P * 1.5 * N ** 2 * m ** 2


def test_whole_lanes_fill_the_adjoint_blocks():
    """n_tan_g is rounded up (never down) to a count whose blocks of LANES lanes are full: a
    multiple of LANES, or a divisor of it (whole groups packed into one block); the kernel's
    LANES is the one tangents.py rounds to; the group size caps the rounding."""
    from dmftgen.codegen import load_kernels
    from dmftgen.model import load_model

    assert int(load_kernels(load_model("logistic")).LANES) == LANES
    for n in range(0, 70):
        w = whole_lanes(n)
        assert w >= n and w < max(2 * n, n + LANES)
        assert w == 0 or w % LANES == 0 or LANES % w == 0
    assert whole_lanes(7) == 8 and whole_lanes(3) == 4 and whole_lanes(1) == 1
    # capped at the smallest group
    assert tangent_paths_per_group(20 * 7, 100, 1, 20, {"tangent_paths": 20 * 7}, 0.5, 1, 7) == 7
    assert tangent_paths_per_group(20 * 7, 100, 1, 20, {"tangent_paths": 20 * 7}, 0.5, 1, 100) == 8


def test_meta_reports_the_rounded_tangent_count(logistic):
    """tangent_paths=3 per group becomes 4 per group (two groups per adjoint block); the meta says
    so, and the estimate is the mean over those 4 G paths (it differs from the 3 G one)."""
    st = Settings(delta=2, tau=0.5, T=1, dt=0.1)
    a = solve(logistic, st, paths=2000, replicas=1, tangent_paths=60)
    b = solve(logistic, st, paths=2000, replicas=1, tangent_paths=80)
    assert _n_tangent(a) == _n_tangent(b) == 80
    assert np.array_equal(a["K_ell"], b["K_ell"])


def _synthetic(kern, bounds, n_tan_g, N, seed=0):
    """Random inputs of ``dmft_paths`` (row mode off) for the paths ``bounds``."""
    rng = np.random.default_rng(seed)
    m, kk, nz = int(kern.M), int(kern.K), int(kern.NZ)
    P, G = int(bounds[-1]), bounds.shape[0] - 1
    NN, NI = (N + 1) * m, N * m
    R = np.tril(rng.standard_normal((NN, NN)) * (0.5 / np.sqrt(NN)), -m)
    W = np.ascontiguousarray(np.tril(rng.standard_normal((NN, NN)) * 0.3, -m)[:, :NI])
    from dmftgen.dmft.rside import HIST as hist  # eta, dL, b_hist as the solver passes them
    from dmftgen.dmft.rside import SUM, chunk_len, to_chunks  # ... in the solver's chunked layout

    # R and W (all rows: k0 = 0) in the history sums' precision, as RSide.run passes them
    R, W = R.astype(SUM), W.astype(SUM)
    return [0, N + 1, N, bounds, n_tan_g, 2.0, 0.1, 0.5, rng.standard_normal((P, N + 1, m)), W, True,
            to_chunks(rng.standard_normal((P, NI)), chunk_len(m), hist), R, np.ascontiguousarray(R.T, dtype=np.float32),
            rng.standard_normal((P, kk)), rng.standard_normal((P, nz)), rng.standard_normal((P, N)) * 0.3,
            np.array([0.1, 0.5]), False,
            to_chunks(np.zeros((P, NI)), chunk_len(m), hist), np.zeros((n_tan_g * G, N, m, m)),
            np.zeros((n_tan_g * G, N + 1, m, m)), np.zeros((1, 1, 1), dtype=hist), np.zeros((G, N + 1)), np.zeros((G, N + 1, int(kern.NMET))),
            np.zeros((G, N + 1, m, m)), np.zeros((G, NN, NN)), np.zeros((G, N + 1, m, kk)),
            np.zeros((G, N + 1, m, kk)), np.zeros((G, NI, NI)), np.zeros((G, N + 1, m, m)),
            np.zeros((G, N + 1, m, m)), np.full(G, N + 1, dtype=np.int64), True,
            rng.standard_normal((N + 1, m, m)), rng.standard_normal((N + 1, m, m)), np.zeros((1, 1, 1))]


def _adjoint_reference(args):
    """kl_sum of ``dmft_paths`` (control variate on) recomputed in numpy from the a_hist / g_hist the
    kernel wrote: per tangent path and row k, Z_k = grad ell_k, Z_l = -(1/delta) (sum_{l<j<=k} Z_j
    R[j, l]) a_l, and the same with grad ell -> Gcv_g[k], a_l -> Gcv[l] (dt + sq dB_l).

    Also returns the float32 round-off bound of the kernel's estimate (see the test below): per
    path and entry (k, l), (k - l + 1) ((k - l) m + 3) u (A_l + Ac_l), u = 2^-24, with A, Ac the
    same recursions in absolute values."""
    N, bounds, ntg, delta, dt, sq = args[2], args[3], args[4], args[5], args[6], args[7]
    R, dB, a_hist, g_hist, Gcv, Gcv_g = args[12], args[16], args[20], args[21], args[34], args[35]
    m = a_hist.shape[2]
    G = bounds.shape[0] - 1
    u = 2.0 ** -24
    out = np.zeros((G, (N + 1) * m, (N + 1) * m))
    bound = np.zeros_like(out)
    for g in range(G):
        for ti in range(ntg):
            t, i = g * ntg + ti, bounds[g] + ti
            for k in range(1, N + 1):
                Z = np.zeros(((N + 1) * m, m))   # row j: Z_j[:, b] of column b = j % m
                Zc = np.zeros_like(Z)
                A, Ac = np.zeros_like(Z), np.zeros_like(Z)
                Z[k * m:(k + 1) * m] = g_hist[t, k].T
                Zc[k * m:(k + 1) * m] = Gcv_g[k].T
                A[k * m:(k + 1) * m] = np.abs(g_hist[t, k].T)
                Ac[k * m:(k + 1) * m] = np.abs(Gcv_g[k].T)
                for l in range(k - 1, -1, -1):
                    hi = slice((l + 1) * m, (k + 1) * m)
                    Rl = R[hi, l * m:(l + 1) * m]
                    fac = dt + sq * dB[i, l]
                    acc = (Rl.T @ Z[hi]).T     # (a, c)
                    accc = (Rl.T @ Zc[hi]).T
                    Zl = -(acc @ a_hist[t, l]) / delta
                    Zcl = -(accc @ Gcv[l]) / delta * fac
                    Z[l * m:(l + 1) * m], Zc[l * m:(l + 1) * m] = Zl.T, Zcl.T
                    out[g, k * m:(k + 1) * m, l * m:(l + 1) * m] += Zl - Zcl
                    Al = (np.abs(Rl).T @ A[hi]).T @ np.abs(a_hist[t, l]) / delta
                    Acl = (np.abs(Rl).T @ Ac[hi]).T @ np.abs(Gcv[l]) / delta * abs(fac)
                    A[l * m:(l + 1) * m], Ac[l * m:(l + 1) * m] = Al.T, Acl.T
                    c = (k - l + 1) * ((k - l) * m + 3) * u
                    bound[g, k * m:(k + 1) * m, l * m:(l + 1) * m] += c * (Al + Acl)
    return out, bound


@pytest.mark.parametrize("name", ["committee", "logistic"])   # M = 2 and M = 1 (separate inner loops)
@pytest.mark.parametrize("n_tan_g", [1, 3, 4, 8, 11])
def test_packed_adjoint_blocks_equal_one_group_at_a_time(n_tan_g, name):
    """The adjoint packs the tangent paths of several groups into one block of LANES lanes
    (n_tan_g < LANES) or splits a group over several blocks: each group's K_ell sum must be the
    one of a launch with that group alone (lanes are independent; same bytes), for counts that
    fill the lanes (1, 4, 8) and counts that do not (3, 11)."""
    from dmftgen.codegen import load_kernels
    from dmftgen.model import load_model

    kern = load_kernels(load_model(name))
    m = int(kern.M)
    N, G, per = 12, 7, 13
    bounds = np.arange(G + 1, dtype=np.int64) * per
    args = _synthetic(kern, bounds, n_tan_g, N)
    kern.dmft_paths(*args)
    kl_all = args[26]
    assert np.abs(kl_all).max() > 0
    # The kernel's adjoint runs in float32 (templates/dmft.py, "Precision of the adjoint"); the
    # reference is float64. Tolerance, u = 2^-24 (float32 unit round-off): at step l the kernel sums
    # n = (k - l) m products of float32 Z_j and float32-rounded R entries (error <= (n + 1) u times
    # the sum of |terms|), then rounds Z_l to float32 (u); the initial Z_k, Zc_k are rounded too (u).
    # Errors of earlier Z_j enter Z_l linearly, so by induction over l = k-1, ..., 0 the error of
    # Z_l is at most c_l A_l with c_l <= (k - l + 1)((k - l) m + 3) u and A the recursion in absolute
    # values (first order; the second-order terms are ~c^2 ~ 1e-10 here). The entry (k, l) of
    # kl_sum sums Z_l - Zc_l over the group's paths: |error| <= sum of c (A_l + Ac_l) = ``bound``,
    # ~2e-5 of the absolute-value sum at N = 12, m = 2 (worst case; the typical error is ~1e-7).
    # A dropped term or a wrong sign moves an entry by O(its terms), far above the bound.
    ref, bound = _adjoint_reference(args)
    err = np.abs(kl_all - ref)
    assert np.all(err <= bound + 1e-12 * np.abs(ref)), (err / (bound + 1e-300)).max()
    for g in range(G):
        one = _synthetic(kern, bounds, n_tan_g, N)   # same draws, then the rows of group g only
        sl = slice(bounds[g], bounds[g + 1])
        for j in (8, 14, 15, 16):                    # per-path inputs
            one[j] = np.ascontiguousarray(one[j][sl])
        one[11] = np.ascontiguousarray(one[11][:, sl])  # eta (chunks, paths, entries)
        one[3] = np.array([0, per], dtype=np.int64)
        one[19] = np.zeros_like(args[19][:, :per])  # dL, as in _synthetic
        one[20], one[21] = np.zeros((n_tan_g, N, m, m)), np.zeros((n_tan_g, N + 1, m, m))
        for j in range(23, 33):                      # one group's accumulators
            one[j] = np.ascontiguousarray(one[j][:1])
        kern.dmft_paths(*one)
        assert np.array_equal(one[26][0], kl_all[g]), g
