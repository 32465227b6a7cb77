"""Test observables (Gaussian expectations on the common quasi-Monte Carlo sample) vs closed forms."""
import numpy as np
import pytest

from dmftgen.codegen import load_kernels
from dmftgen.model import load_model
from dmftgen.observables import test_observables


@pytest.mark.parametrize("Q, M", [(0.5, 0.3), (2.0, 1.2), (1e-12, 0.0)])
def test_linreg_test_loss_closed_form(Q, M):
    """E (w - r* - sigma z)^2 / 2 = (Q - 2M + rho + sigma^2) / 2 (docs/theory.md §5)."""
    model = load_model("linreg")
    p = model.param_vector({"sigma": 0.5})
    out = test_observables(load_kernels(model), model, [[[Q]]], [[[M]]], np.eye(1), p)
    want = 0.5 * (Q - 2 * M + 1.0 + 0.25)
    # The integrand is a quadratic form: scrambled Sobol with n = 2^16 integrates it to ~1e-5
    # relative (plain Monte Carlo would give ~ sqrt(2)/256 = 5e-3); 2e-4 leaves a 10x margin.
    assert abs(out["test_loss"][0] - want) < 2e-4 * want


def test_sign_teacher_error_is_arccos():
    """P(sign(w) != sign(r*)) = arccos(M / sqrt(Q rho)) / pi for the noiseless sign teacher."""
    model = load_model("sign")
    kern = load_kernels(model)
    Q = np.array([[[0.5]], [[1.0]], [[3.0]]])
    M = np.array([[[0.3]], [[0.9]], [[0.2]]])
    out = test_observables(kern, model, Q, M, np.eye(1), model.param_vector())
    want = np.arccos(M.ravel() / np.sqrt(Q.ravel())) / np.pi
    # A discontinuous indicator: QMC error ~ n^(-1/2 - 1/(2*dim)) ~ 1e-4 at n = 2^16, dim 2; 1e-3 bound.
    np.testing.assert_allclose(out["test_error"], want, atol=1e-3)
    assert np.all(np.isfinite(out["test_loss"]))


def test_labels_of_the_common_sample_do_not_move_with_the_student():
    """Teacher first: r* on the common sample depends on rho only, so a quantity of (r*, z) alone
    -- the labels -- is the same at every time whatever (Q, M) do, to the last bit. (With the
    joint symmetric square root, r* mixed in the student's normals as M moved, and labels on a
    discontinuous teacher flipped from one time to the next: the 0-1 error moved by the common
    sample's quantisation as well as by the dynamics.) A stand-in kernel whose loss is a label,
    1{u < sigmoid(5 r*)} as the logistic teacher's, and whose metric is the same label from a
    noise-free teacher, sign(r*)."""
    model = load_model("logistic")

    class LabelKernel:
        NAUX = 2

        @staticmethod
        def aux_batch(s, z, p, out):
            out[:, 0] = z[:, 0] < 1.0 / (1.0 + np.exp(-5.0 * s[:, 0]))
            out[:, 1] = s[:, 0] > 0

        @staticmethod
        def loss_aux_batch(r, a, p, out):
            out[:] = a[:, 0]

        @staticmethod
        def metrics_aux_batch(r, a, p, out):
            out[:, 0] = a[:, 1]

    Q = np.array([[[0.0]], [[0.5]], [[1.0]], [[3.0]]])
    M = np.array([[[0.0]], [[0.3]], [[0.9]], [[-0.2]]])
    out = test_observables(LabelKernel, model, Q, M, np.eye(1), model.param_vector())
    for key in ("test_loss", "test_error"):
        assert np.all(out[key] == out[key][0]), (key, out[key])
    assert abs(out["test_loss"][0] - 0.5) < 1e-3 and abs(out["test_error"][0] - 0.5) < 1e-3


def test_singular_covariance_at_zero_init():
    """Q = 0 (theta^0 = 0) is a valid, singular covariance: loss of the logistic model at r = 0 is log 2."""
    model = load_model("logistic")
    out = test_observables(load_kernels(model), model, [[[0.0]]], [[[0.0]]], np.eye(1), model.param_vector())
    assert abs(out["test_loss"][0] - np.log(2.0)) < 1e-12


def test_gradient_at_nodes_interpolates_the_gradient_at_every_time(monkeypatch):
    """The error-propagation gradient is differentiated at ``grad_nodes`` only; between them it is
    interpolated. For linreg the test loss is E = (Q - 2M + rho + sigma^2) / 2 exactly (a closed
    form, test above), so dE/dQ = 1/2 and dE/dM = -1 at every time, whatever the nodes; and on a
    logistic path (Q, M) ~ (2 t^2, t / 2) the interpolated gradient must match the every-time one to the
    interpolation error of a smooth curve (a few % here; a wrong node-to-time map gives O(1))."""
    import dmftgen.observables as ob

    model = load_model("linreg")
    kern = load_kernels(model)
    p = model.param_vector({})
    T = 60
    t = np.linspace(0, 3, T)
    # a PSD path well inside the cone (Q - M^2 / rho >= 1 > the finite-difference step 0.03 max Q)
    Q = (1.0 + 2.0 * t ** 2).reshape(T, 1, 1)
    M = (0.5 * t).reshape(T, 1, 1)
    base = test_observables(kern, model, Q, M, np.ones((1, 1)), p)
    g = ob.test_gradients(kern, model, Q, M, np.ones((1, 1)), p, base)["test_loss"]
    assert ob.grad_nodes(T).size < T
    # exact up to the 2^14-point sample's second moments (quasi-Monte Carlo, ~1e-4 off the unit ones)
    np.testing.assert_allclose(g[:, 0], 0.5, rtol=1e-3)
    np.testing.assert_allclose(g[:, 1], -1.0, rtol=1e-3)

    model = load_model("logistic")
    kern = load_kernels(model)
    p = model.param_vector({})
    base = test_observables(kern, model, Q, M, np.ones((1, 1)), p)
    g = ob.test_gradients(kern, model, Q, M, np.ones((1, 1)), p, base)["test_loss"]
    monkeypatch.setattr(ob, "GRAD_NODES", 10 ** 6)
    g_all = ob.test_gradients(kern, model, Q, M, np.ones((1, 1)), p, base)["test_loss"]
    scale = np.abs(g_all).max(0)
    assert np.max(np.abs(g - g_all) / scale) < 0.05


def test_sobol_normals_keep_their_second_moment():
    """The randomised-QMC uniforms (the DMFT's static draws, the common test sample) map to normals
    with E[xi^2] = 1 at any n: over 400 scrambles of n = 64 points the mean of ndtri(u)^2 - 1 has
    sd ~0.0013 (measured 0.0012 at n = 100), so 4 sd is 0.005; the clip to [0.5/n, 1 - 0.5/n] used
    before cut the tails by ~2/n = 0.031 (6x the bound). The uniform coordinates stay centred too
    (mean 1/2 within 4 sd of 400 x 64 stratified points: far below 1e-3), and all are inside (0, 1)."""
    from scipy.special import ndtri

    from dmftgen.observables import sobol_uniforms

    u = np.stack([sobol_uniforms(3, 64, s) for s in range(400)])
    assert 0.0 < u.min() and u.max() < 1.0
    m2 = (ndtri(u[:, :, :2]) ** 2).mean(axis=(1, 2)) - 1.0
    assert abs(m2.mean()) < 4 * m2.std(ddof=1) / np.sqrt(m2.size), (m2.mean(), m2.std())
    assert abs(u[:, :, 2].mean() - 0.5) < 1e-3
