"""The adjoint's far field (dmftgen/dmft/farfield.py): interpolation weights, block decisions, and
a solve with it against the dense adjoint. The kernel's far-field recursion itself is checked
against a float64 reference in tests/test_tangents.py (test_far_field_adjoint_equals_its_reference)."""
import numpy as np
import pytest

from dmftgen import Settings, solve
from dmftgen.dmft.farfield import FarField, lagrange_weights, lobatto_steps
from dmftgen.errors import SettingsError
from dmftgen.model import load_model


@pytest.mark.parametrize("B,r", [(32, 8), (16, 6), (4, 3)])
def test_lagrange_weights_reproduce_polynomials(B, r):
    """Interpolation from r nodes is exact for polynomials of degree < r (and only those: the
    degree-r monomial through the same nodes is not reproduced). Tolerance: the weights are
    O(Lebesgue constant) <= 10 here, each value is O(1) (t = i / B), so the float64 round-off is
    ~r 10 eps ~ 1e-13."""
    x = lobatto_steps(B, r)
    assert x[0] == 0 and x[-1] == B - 1 and len(np.unique(x)) == r
    S = lagrange_weights(B, x)
    t = np.arange(B) / B
    rng = np.random.default_rng(0)
    c = rng.standard_normal(r)               # degree r - 1
    assert np.allclose(S @ np.polyval(c, t[x]), np.polyval(c, t), rtol=0, atol=1e-11)
    f = t ** r
    assert np.abs(S @ f[x] - f).max() > 1e-6


def _smooth_in_m(K, m, rng, rough=0.0):
    """A flat strictly causal R (K m square): smooth in the first time (exp(-0.01 (k - l)) times a
    cosine), rough in the second (random column factors), as R_theta is; ``rough`` adds
    noise of that size in the first time."""
    k = np.arange(K)[:, None]
    lag = (k - np.arange(K)[None, :]).astype(float)
    R = np.zeros((K * m, K * m))
    col = rng.uniform(0.5, 1.5, (K, m, m))
    for a in range(m):
        for b in range(m):
            R[a::m, b::m] = np.where(lag > 0, np.exp(-0.01 * lag) * np.cos(0.02 * lag + a - b), 0.0) * col[None, :, a, b]
    if rough:
        R += np.tril(rough * rng.standard_normal(R.shape), -m)
    return R


@pytest.mark.parametrize("m", [1, 2])
def test_blocks_are_interpolated_only_within_tolerance(m):
    """A block is interpolated where its rows, at every column the far field reads (l <= J B - D),
    are reproduced within tol x max |R| (checked here independently of FarField), and kept exact
    (all B rows as nodes, identity weights) where not; the node columns handed to the kernel are
    R^T's columns of the node rows; max_error is the largest change among the interpolated."""
    rng = np.random.default_rng(1)
    K, B, r, D, tol = 200, 16, 6, 8, 1e-6
    for rough, expect in ((0.0, "all"), (1e-3, "none")):
        R = _smooth_in_m(K, m, rng, rough)
        RT = np.ascontiguousarray(R.T, dtype=np.float32)
        far = FarField(K, m, tol, block=B, nodes=r, separation=D)
        far.update(R, RT, K)
        assert far.ready == K // B
        S, x = lagrange_weights(B, lobatto_steps(B, r)), lobatto_steps(B, r)
        worst = 0.0
        for J in range(far.ready):
            rows = R[J * B * m:(J + 1) * B * m].reshape(B, m, -1)
            scale = np.abs(R[:(J + 1) * B * m]).max()
            ncol = max(J * B - D + 1, 0) * m
            err = np.abs(np.einsum("xp,pal->xal", S, rows[x])[..., :ncol] - rows[..., :ncol]).max(initial=0) / scale
            n = far.off[J + 1] - far.off[J]
            if err <= tol:
                assert n == r
                worst = max(worst, err)
                nodes = x
            else:
                assert n == B
                assert np.allclose(far.S[J, : B * m, : B * m], np.eye(B * m))
                nodes = np.arange(B)
            cols = ((J * B + nodes)[:, None] * m + np.arange(m)).ravel()
            assert np.array_equal(far.RTc[:, far.off[J] * m:far.off[J + 1] * m], RT[:, cols])
        assert np.isclose(far.max_error, worst, rtol=1e-12, atol=0)
        if expect == "all":
            assert far.interpolated == far.ready
        else:
            assert far.interpolated <= 1   # the first block has no far columns (ncol 0)


@pytest.mark.parametrize("bad", [-1e-5, 1.0, float("nan")])
def test_adjoint_tol_is_validated(linreg, bad):
    with pytest.raises(SettingsError, match="adjoint_tol"):
        solve(linreg, Settings(T=1, dt=0.1), paths=200, adjoint_tol=bad)


def test_solve_with_far_field_agrees_with_the_dense_adjoint():
    """Committee, 151 steps (4 blocks of 32): the default solve interpolates the far blocks of
    R_theta in the adjoint (meta: how many, the largest change, <= adjoint_tol = 1e-5 of max
    |R_theta|). The adjoint is linear in R_theta, so K_ell moves by ~1e-5 of its own size, and the
    observables, smooth functions of K_ell, by ~1e-5 of theirs: against their Monte Carlo error
    bars (>= 1e-3 relative at 4000 paths) that is <= 1e-2 of an error bar, the bound asserted.
    (Measured at dt 0.01, K = 500, 2e4 paths: <= 8e-4 error bars.) The dense solve's meta says no
    far field, and its K_ell is not the same bytes (the far field was used)."""
    committee = load_model("committee")
    st = Settings(delta=3.0, tau=0.2, T=3.0, dt=0.02, seed=2)
    far = solve(committee, st, paths=4000)
    dense = solve(committee, st, paths=4000, adjoint_tol=0.0)
    assert far.ok and dense.ok
    info = far.meta["adjoint_far_field"]
    assert dense.meta["adjoint_far_field"] is None
    assert info["interpolated"] > 0 and 0 < info["max_error"] <= 1e-5
    assert not np.array_equal(far["K_ell"], dense["K_ell"])
    for key in ("Q", "M", "test_loss", "train_loss"):
        err = np.asarray(dense[key + "_err"])
        diff = np.abs(np.asarray(far[key]) - np.asarray(dense[key]))
        ok = err > 0
        assert np.all(diff[ok] <= 1e-2 * err[ok]), (key, (diff[ok] / err[ok]).max())
