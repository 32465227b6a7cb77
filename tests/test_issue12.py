"""Issue 12 (performance) levers that must not move a result: test observables of the replicas at
their mean, the sweep's row mode for the per-group two-time sums, the running replica sums."""
import numpy as np
import pytest

from dmftgen.codegen import load_kernels
from dmftgen.config import Settings
from dmftgen.dmft import solve
from dmftgen.model import load_model
from dmftgen.observables import replica_test_observables, test_observables


def test_replica_test_observables_match_the_per_replica_evaluation():
    """Committee (smooth in Q, M): F at the replica mean equals the mean of the R evaluations to the
    Jensen gap, and the propagated error equals their standard error to a few per cent."""
    model = load_model("committee")
    kern = load_kernels(model)
    p = model.param_vector()
    rng = np.random.default_rng(0)
    T, R = 5, 8
    base_Q = np.array([[[0.5, 0.1], [0.1, 0.4]]] * T) * np.linspace(1, 2, T)[:, None, None]
    base_M = np.full((T, 2, 1), 0.3)
    Qs = np.array([base_Q + 0.01 * (lambda a: a + np.swapaxes(a, 1, 2))(rng.standard_normal((T, 2, 2)))
                   for _ in range(R)])
    Ms = np.array([base_M + 0.01 * rng.standard_normal((T, 2, 1)) for _ in range(R)])
    rho = np.eye(1)
    per = np.array([test_observables(kern, model, Qs[r], Ms[r], rho, p)["test_loss"] for r in range(R)])
    out = replica_test_observables(kern, model, Qs, Ms, rho, p)
    err = per.std(0, ddof=1) / np.sqrt(R)
    assert np.all(np.abs(out["test_loss"] - per.mean(0)) < 0.05 * err)
    assert np.allclose(out["test_loss_err"], err, rtol=0.05)


@pytest.mark.parametrize("name,tau,kw", [("logistic", 0.5, {"replicas": 1, "jackknife": False}),
                                          ("committee", 0.0, {"replicas": 1, "jackknife": False}),
                                          ("committee", 0.2, {}),
                                          ("linreg", 0.3, {"replicas": 1, "jackknife": False})])
def test_row_mode_gives_the_same_solve(name, tau, kw, monkeypatch):
    """The sweep with only row k of su_sum / kl_sum per group (default) and with every row (as
    before issue 12): the same bytes for every curve, the self-checks equal to round-off. The row
    mode records the self-checks' contractions during the sweep, from the one-row sums (the
    kernel's S_U row buffer, the zeroing between steps, C_theta's row from the causal factor); the
    full mode after it, from the stored sums and C_theta (checks.RowRecord.after; the contractions
    themselves are tested in test_selfchecks). Monte Carlo tangents with and without the control
    variate (committee tau 0.2 / 0), Stein and pathwise nu, deterministic tangents (linreg)."""
    from dmftgen.dmft import solver

    model = load_model(name)
    st = Settings(delta=2 if name == "logistic" else 3, tau=tau, T=1.0, dt=0.1)
    a = solve(model, st, paths=2000, **kw)
    monkeypatch.setattr(solver.Solve, "use_row_sums", lambda self: False)
    b = solve(model, st, paths=2000, **kw)
    assert a.status == b.status == "ok"
    assert set(a.keys()) == set(b.keys())
    for key in a.keys():
        if key.startswith("check_"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-9, atol=1e-14)
        else:
            assert np.array_equal(np.asarray(a[key]), np.asarray(b[key]), equal_nan=True), key
    za = [c["worst_z"] for c in a.meta["checks"]]
    zb = [c["worst_z"] for c in b.meta["checks"]]
    np.testing.assert_allclose(za, zb, rtol=1e-9, atol=1e-12)


def test_replica_solve_reports_the_timings_of_all_replicas():
    """The combined solve's path and theta-side seconds are the replicas' together, not the first
    replica's alone (~1/R of them: it was reported as the solve's), and its wall and CPU
    seconds cover the whole solve. Bookkeeping, not speed: every timing is >= 0, so the sum
    over all replicas is >= the sum over the others, which the first replica's alone is not."""
    from dmftgen.dmft import solve

    model, st = load_model("logistic"), Settings(delta=2, tau=0.5, T=0.5, dt=0.1)
    solve(model, st, paths=800)  # warm-up: the first replica of a process's first solve loads the kernels
    res = solve(model, st, paths=800)
    t = res.meta["timings"]
    others = res.meta["replica_meta"]
    assert len(others) == res.meta["replicas"] - 1 >= 2
    for key in ("paths_s", "theta_s", "total_s"):
        assert t[key] >= sum(m["timings"][key] for m in others) > 0
    assert t["total_s"] >= t["paths_s"] + t["theta_s"]


def test_chunked_history_layout_round_trips():
    """rside.to_chunks / from_chunks / RSide.dL_col address the flat entry j of path i at chunk
    j // B, offset j % B (B a whole number of steps), whatever the chunk length."""
    from types import SimpleNamespace

    from dmftgen.dmft.rside import RSide, chunk_len, chunks_times, from_chunks, to_chunks

    rng = np.random.default_rng(3)
    for m, n in ((1, 137), (2, 274), (3, 63), (2, 0)):
        B = chunk_len(m)
        assert B % m == 0 and B > 0
        a = rng.standard_normal((9, n))
        h = to_chunks(a, B)
        assert h.shape == (max(-(-n // B), 1), 9, B)
        assert np.array_equal(from_chunks(h, n), a)
        assert np.array_equal(from_chunks(h, n, 4), a[:4])
        # X A^T chunk by chunk (the input-variance self-check), float32 histories as the sweep
        # keeps them: A rounded to float32 (u = 2^-24 relative per term), each chunk's sum of B
        # products in float32 (<= B u of its absolute terms, first order), the chunks added in
        # float64: |error| <= (B + 2) u (|X| |A|^T) entry by entry; a chunk read at the wrong
        # offset moves entries by whole terms, O(1)
        x32 = a.astype(np.float32).astype(float)[:4]
        h32, A = to_chunks(a.astype(np.float32), B), rng.standard_normal((5, n))
        bound = (B + 2) * 2.0 ** -24 * (np.abs(x32) @ np.abs(A).T)
        assert np.all(np.abs(chunks_times(h32, A, 4) - x32 @ A.T) <= bound + 1e-300)
        r = SimpleNamespace(dL=h, B=B)
        for j in range(0, n, 7):
            assert np.array_equal(h[j // B, :, j % B], a[:, j])
            assert np.array_equal(RSide.dL_col(r, j), a[:, j])
    # width K entries per flat entry (b_hist): chunk c holds the flat entries c B .. c B + B - 1
    b = rng.standard_normal((5, 274 * 2))
    hb = to_chunks(b, 64, width=2)
    assert hb.shape == (5, 5, 128)
    assert np.array_equal(hb[1, :, (70 - 64) * 2 + 1], b[:, 70 * 2 + 1])
    assert np.array_equal(from_chunks(hb, 274 * 2), b)


@pytest.mark.parametrize("name,k", [("linreg", 1), ("linreg", 137), ("committee", 137), ("twolayer", 97)])
def test_history_sums_of_the_chunked_sweep(name, k):
    """One row of the generated sweep on random chunked histories (future entries random too: the
    S_U row must not take them in; R and W are causal, zero there): every path's r_k against the float64 sums of the same
    stored values, r_k = wpre_k + W[k, :k] eta - R[k, :k] dL / delta, and its S_U row against
    the exact products dL_k dL_{<=k}. r_k is read back from the group sums of one-path groups:
    rl_sum = r_a ell_b and ells_sum = ell_b s_0. With the pathwise-nu tangent (committee, twolayer:
    K = 1, 2) also dsl_sum = d_s ell + grad ell psi_k, psi_k = -R[k, :k] b_hist / delta, against
    the same float64 sums with the row kernels evaluated at the r_k read back.

    Tolerance: the kernel sums the n = k m terms of each history sum in float32 (u = 2^-24), in C
    chunks; the error of a float32 sum of n terms, split into partial sums and added up, is at most
    (n + C + 1) u times the sum of |terms| (first order), for W eta and R dL / delta each; reading
    r back costs a few float64 roundings (1e-12 relative). A skipped, doubled or shifted chunk
    moves r (psi) by whole terms, ~0.1-1 here, far above the bound (~1e-5): checked by injecting a
    dropped last chunk into the template's history pass (all four cases fail) and a dropped last
    step into its S_U row (all four fail)."""
    from dmftgen.dmft.rside import HIST, SUM, chunk_len, from_chunks, to_chunks

    model = load_model(name)
    kern = load_kernels(model)
    m, kk, nz = int(kern.M), int(kern.K), int(kern.NZ)
    P, N, delta, dt = 40, 150, 2.0, 0.05
    NN, NI, B = (N + 1) * m, N * m, chunk_len(m)
    rng = np.random.default_rng(7)
    R = np.tril(rng.standard_normal((NN, NN)) * (0.5 / np.sqrt(NN)), -m).astype(SUM)
    W = np.tril(rng.standard_normal((NN, NN)) * (0.5 / np.sqrt(NN)), -m)[:, :NI].astype(SUM)
    eta = to_chunks(rng.standard_normal((P, NI)), B, HIST)
    dL = to_chunks(0.3 * rng.standard_normal((P, NI)), B, HIST)
    psi = kk > 0 and name != "linreg"
    b_hist = (to_chunks(0.1 * rng.standard_normal((P, NI * kk)), B, HIST, kk) if psi
              else np.zeros((1, 1, 1), dtype=HIST))
    wpre = rng.standard_normal((P, 1, m))
    s = rng.standard_normal((P, kk)) + 0.5
    z = rng.standard_normal((P, nz))
    dB = 0.1 * rng.standard_normal((P, N))
    rows = slice(k * m, (k + 1) * m)

    def row_k(bounds, wpre):
        """Row k of the kernel (row mode, no tangents) over the path groups ``bounds``; its sums."""
        G = bounds.size - 1
        sums = dict(loss=np.zeros((G, N + 1)), met=np.zeros((G, N + 1, int(kern.NMET))),
                    gam=np.zeros((G, N + 1, m, m)), kl=np.zeros((G, 1, 1)), ells=np.zeros((G, N + 1, m, kk)),
                    dsl=np.zeros((G, N + 1, m, kk)), su=np.zeros((G, m, NI)), rl=np.zeros((G, N + 1, m, m)),
                    ll=np.zeros((G, N + 1, m, m)))
        kern.dmft_paths(k, k + 1, N, bounds, 0, delta, dt, 0.5, wpre, np.ascontiguousarray(W[rows]), True, eta,
                        np.ascontiguousarray(R[rows]), np.ascontiguousarray(R.T), s, z, dB, model.param_vector(),
                        psi, dL, np.zeros((1, 1, m, m)), np.zeros((1, N + 1, m, m)), b_hist, sums["loss"],
                        sums["met"], sums["gam"], sums["kl"], sums["ells"], sums["dsl"], sums["su"], sums["rl"],
                        sums["ll"], np.full(G, N + 1, dtype=np.int64), False, np.zeros((N + 1, m, m)),
                        np.zeros((N + 1, m, m)), np.zeros((1, 1, 1)))
        return sums

    flat_eta, flat_dL = from_chunks(eta, NI).astype(float), from_chunks(dL, NI).astype(float)
    flat_b = from_chunks(b_hist, NI * kk).astype(float).reshape(P, NI, kk) if psi else None
    sums = row_k(np.arange(P + 1, dtype=np.int64), wpre)   # one path per group
    kM = k * m
    Wr, Rr = W[rows, :kM].astype(float), R[rows, :kM].astype(float)
    g_terms = np.abs(flat_eta[:, None, :kM] * Wr[None]).sum(2)
    m_terms = np.abs(flat_dL[:, None, :kM] * Rr[None]).sum(2) / delta
    r_ref = wpre[:, 0] + flat_eta[:, :kM] @ Wr.T - flat_dL[:, :kM] @ Rr.T / delta
    C = -(-kM // B)
    bound = (kM + C + 1) * 2.0 ** -24 * (g_terms + m_terms)
    if psi:
        psi_ref = -np.einsum("aj,pjc->pac", Rr, flat_b[:, :kM]) / delta
        psi_bound = (kM + C + 1) * 2.0 ** -24 * np.einsum("aj,pjc->pac", np.abs(Rr), np.abs(flat_b[:, :kM])) / delta
    ds, J = np.zeros((m, kk)), np.zeros((m, m))
    checked = 0
    for i in range(P):
        ell = sums["ells"][i, k, :, 0] / s[i, 0]
        b = int(np.argmax(np.abs(ell)))
        if abs(ell[b]) < 1e-3:
            continue
        r = sums["rl"][i, k, :, b] / ell[b]
        assert np.all(np.abs(r - r_ref[i]) <= bound[i] + 1e-12 * np.abs(r_ref[i])), (i, r, r_ref[i])
        if psi:
            kern.dell_ds_row(r, s[i], z[i], model.param_vector(), ds)
            kern.jac_ell_row(r, s[i], z[i], model.param_vector(), J)
            want = ds + J @ psi_ref[i]
            tol = np.abs(J) @ psi_bound[i] + 1e-9 * (1 + np.abs(want))
            assert np.all(np.abs(sums["dsl"][i, k] - want) <= tol), (i, sums["dsl"][i, k], want)
        checked += 1
    assert checked > P // 2
    # S_U row k: dL_k (as stored, the kernel wrote it this row) times dL_{<=k}, one path per group
    new = from_chunks(dL, NI).astype(float)
    assert np.abs(new[:, :kM] - flat_dL[:, :kM]).max() == 0.0    # the history before k is untouched
    # ... dL_k = ell(r_k) (dt + sq dB_k), |ell| from the kernel's own ell ell^T, rounded to
    # bfloat16 (via float32): within (2^-8 + 2^-24) of itself, plus a few float64 roundings
    ell_k = np.array([[sums["ll"][i, k, a, a] for a in range(m)] for i in range(P)]) ** 0.5
    want = ell_k * np.abs(dt + 0.5 * dB[:, k])[:, None]
    assert np.all(np.abs(np.abs(new[:, kM:kM + m]) - want) <= (2.0 ** -8 + 2.0 ** -23) * want + 1e-300)
    for a in range(m):
        ref = new[:, kM + a][:, None] * new[:, : kM + m]
        assert np.array_equal(sums["su"][:, a, : kM + m], ref)
        assert not sums["su"][:, a, kM + m:].any()
    # groups of several paths (the S_U row takes the alive paths two at a time; groups of 7 and a
    # last one of 5: an odd path left over), one path dead at this row (non-finite input: frozen,
    # left out of S_U): each group's row against the float64 sum of its alive paths' products
    # (each product exact, bfloat16 x bfloat16; the sum of <= 7 terms within 8 2^-53 of its
    # |terms|). A pair that took one path's x for both, or a dead path summed, moves it by O(1).
    bounds7 = np.array(list(range(0, P, 7)) + [P], dtype=np.int64)
    wpre7 = wpre.copy()
    wpre7[3] = np.inf
    su7 = row_k(bounds7, wpre7)["su"]
    new = from_chunks(dL, NI).astype(float)
    alive = np.isfinite(wpre7[:, 0, 0])
    for g in range(bounds7.size - 1):
        sel = np.arange(bounds7[g], bounds7[g + 1])
        sel = sel[alive[sel]]
        for a in range(m):
            terms = new[sel, kM + a][:, None] * new[sel, : kM + m]
            err = np.abs(su7[g, a, : kM + m] - terms.sum(0))
            assert np.all(err <= 8 * 2.0 ** -53 * np.abs(terms).sum(0)), (g, a, err.max())


@pytest.mark.parametrize("name,tau", [("committee", 0.2), ("committee", 0.0), ("logistic", 0.5)])
def test_C_theta_of_the_sweep_is_the_theta_side_formula(name, tau):
    """The sweep reports C_theta as the covariance of the input its paths got, formed row by row
    (``ThetaSide._C_row``: Phi0 Sigma0 Phi0^T + Phis rho Phis^T + W W^T with W = R_theta L); the
    theta-side's formula is Phi0 Sigma0 Phi0^T + Phis rho Phis^T + R_theta S_U R_theta^T, here in
    dense numpy from the reported Phi0, Phi_star, R_theta and S_U (one replica: the combined
    result averages each array over replicas, and the formula is not linear in them). They differ
    by R_theta (L L^T - S_U) R_theta^T: the factor's round-off, ~1e-15 of S_U for the Cholesky
    (tau 0.2) and the QR (tau 0, its tolerance 1e-12 on the columns' norms); with |R_theta| ~ 1
    over these short grids that is << 1e-9 of max |C|. A wrong row (W's row k against the
    wrong rows, a term left out) moves entries by O(Q) ~ 0.1-1."""
    from dmftgen.dmft import solve

    model = load_model(name)
    st = Settings(delta=3 if name == "committee" else 2, tau=tau, T=1.0, dt=0.05)
    res = solve(model, st, paths=1000, replicas=1, jackknife=False)
    assert res.status == "ok"
    n, m = len(res["t"]), model.m
    flat = lambda A: np.asarray(A).transpose(0, 2, 1, 3).reshape(A.shape[0] * m, A.shape[1] * m)
    R, S = flat(res["R_theta"]), flat(res["S_U"])
    NI = S.shape[0]
    P0 = np.asarray(res["Phi0"]).reshape(n * m, m)
    Ps = np.asarray(res["Phi_star"]).reshape(n * m, -1)
    s0 = model.init_std_value(model.param_vector()) ** 2
    ref = s0 * P0 @ P0.T + Ps @ np.asarray(res["rho"]) @ Ps.T + R[:, :NI] @ S @ R[:, :NI].T
    C = flat(res["C_theta"])
    assert np.abs(C - C.T).max() == 0.0
    assert np.abs(C - ref).max() <= 1e-9 * np.abs(ref).max()


def test_bfloat16_histories_round_to_nearest_in_numpy_and_in_the_kernel():
    """rside.encode_hist rounds to the nearer of the two bfloat16 neighbours (ties to even), keeps
    NaN, inf and signed zeros, and the kernel's codec (``henc`` / ``hval`` of a generated module)
    writes the same bits and reads the same values. The reference is independent: the two
    neighbours of each float32 in float64 arithmetic (truncated bits, and one bfloat16 ulp above).
    A truncating encoder fails the nearest check; an off-by-one shift fails the decode."""
    import numba

    from dmftgen.dmft.rside import HIST, decode_hist, encode_hist

    rng = np.random.default_rng(5)
    x32 = np.concatenate([rng.standard_normal(20000) * 10.0 ** rng.uniform(-30, 30, 20000),
                          np.array([0.0, -0.0, 1.0, -1.5, np.inf, -np.inf, 1e-40, 3.4e38])]).astype(np.float32)
    # exact ties: float32 values halfway between two bfloat16 (low 16 bits 0x8000), both parities
    ties = ((rng.integers(0x3F00, 0x4100, 64, dtype=np.uint32) << 16) | 0x8000).view(np.float32)
    x32 = np.concatenate([x32, ties])
    h = encode_hist(x32)
    assert h.dtype == HIST
    x, got = x32.astype(float), decode_hist(h).astype(float)
    fin = np.isfinite(x) & (np.abs(x) < 3.38e38)   # below the largest bfloat16: both neighbours finite
    bits = x32[fin].view(np.uint32)
    lo = (bits & np.uint32(0xFFFF0000)).view(np.float32).astype(float)                        # toward zero
    hi = ((bits & np.uint32(0xFFFF0000)) + np.uint32(0x10000)).view(np.float32).astype(float)  # away from it
    dlo, dhi = np.abs(x[fin] - lo), np.abs(hi - x[fin])
    nearest = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where((bits >> 16) & 1, hi, lo)))
    assert np.array_equal(got[fin], nearest)
    normal = fin & (np.abs(x) >= 2.0 ** -126)      # float32 subnormals have fewer bits
    assert np.all(np.abs(got[normal] - x[normal]) <= 2.0 ** -8 * np.abs(x[normal]))
    assert decode_hist(encode_hist(np.float32([3.4e38])))[0] == np.inf   # rounds past the largest
    assert np.array_equal(decode_hist(encode_hist(np.array([np.inf, -np.inf, 0.0, -0.0], np.float32))),
                          np.array([np.inf, -np.inf, 0.0, -0.0], np.float32))
    assert np.signbit(decode_hist(encode_hist(np.float32([-0.0])))[0])
    nan = np.array([np.nan, -np.nan], np.float32).view(np.uint32) | np.uint32(0xFFFF)  # payload in the low bits
    assert np.all(np.isnan(decode_hist(encode_hist(nan.view(np.float32)))))
    # the kernel's codec (the template body of every generated module)
    kern = load_kernels(load_model("linreg"))
    henc, hval = kern.henc, kern.hval

    @numba.njit
    def enc_dec(v, out, back):
        for i in range(v.size):
            out[i] = henc(v[i], out)
            back[i] = hval(out[i])

    vals = np.concatenate([x32, nan.view(np.float32)])
    out, back = np.zeros(vals.size, HIST), np.zeros(vals.size, np.float32)
    enc_dec(vals, out, back)
    assert np.array_equal(out[: x32.size], h)
    assert np.array_equal(back[: x32.size], decode_hist(h), equal_nan=True)
    assert np.all(np.isnan(back[x32.size:]))


def test_bfloat16_histories_move_a_solve_by_a_small_fraction_of_its_error_bars():
    """The same solve with bfloat16 and with float64 histories (option ``histories``; same seed,
    same paths). Rounding each stored entry to nearest moves it by <= 2^-8 of itself, in directions
    independent between entries and paths: each path's r_k moves by ~1e-3 of its fluctuation, the
    means over P paths by ~1e-3 / sqrt(P) of the paths' sd, i.e. ~1e-3 of their error bars, and the
    added variance biases a convex loss by ~2^-16 of it (measured at P = 8000 over four models:
    <= 4e-2 of the error bars at any time, typically 5e-3; dmftgen/dmft/rside.py, HIST; here
    <= 1.3e-2, the test loss). Bound 0.1 of the error bars. Rounding toward zero instead (a bias of
    -2^-9 on every |entry|, injected into both codecs) moved Q by 0.49, Gamma by 0.47 and the test
    loss by 0.20 of them; a misaligned decode moves them by many."""
    model = load_model("logistic")
    st = Settings(delta=2.0, tau=0.5, lam=0.0, T=2.0, dt=0.1, seed=4)
    a = solve(model, st, paths=4000)
    b = solve(model, st, paths=4000, histories="float64")
    assert a.ok and b.ok
    for key in ("train_loss", "test_loss", "Q", "M", "Gamma", "nu"):
        e = np.asarray(b[key + "_err"])
        d = np.abs(np.asarray(a[key]) - np.asarray(b[key]))
        assert np.all(d[1:] <= 0.1 * e[1:]), (key, float((d[1:] / e[1:]).max()))
    assert not np.array_equal(a["train_loss"], b["train_loss"])   # the option does change the storage


def test_row_size_counts_a_nan_as_beyond_every_bound_except_a_missing_loss():
    """The sweep's divergence test (forward.finite_row, one compiled pass since issue 12): the
    largest of |K_ell row|, |nu_k|, |tr <ell ell>_k| / P and |loss_k| / P, inf where K_ell, nu or
    <ell ell> holds a NaN; a NaN loss (a model declared by ell alone) is left out, not counted.
    max() alone would drop each NaN (each case below then returns a finite size)."""
    from dmftgen.dmft.forward import _row_size

    G, m, kk, P = 3, 2, 1, 10.0
    loss = np.full(G, 2.0)                         # sum 6 -> 0.6
    ll = np.zeros((G, m, m))
    ll[:, 0, 0], ll[:, 1, 1] = 1.0, 3.0            # trace of the sum 12 -> 1.2
    kl = np.array([[0.5, -7.0, 0.0], [1.0, 2.0, 3.0]])
    nu = np.array([[4.0], [-5.0]])
    assert _row_size(loss, ll, kl, nu, P) == 7.0
    nu[1, 0] = -9.0
    assert _row_size(loss, ll, kl, nu, P) == 9.0
    assert _row_size(np.full(G, 40.0), ll, kl, nu, P) == 12.0   # the loss, 120 / 10
    assert _row_size(np.full(G, np.nan), ll, kl, nu, P) == 9.0  # no loss declared: left out
    for arr, idx in ((kl, (1, 2)), (nu, (0, 0)), (ll, (1, 1, 1))):
        bad = arr.copy()
        bad[idx] = np.nan
        args = {"kl": kl, "nu": nu, "ll": ll}
        args[[k for k, v in args.items() if v is arr][0]] = bad
        assert _row_size(loss, args["ll"], args["kl"], args["nu"], P) == np.inf
