"""Generated kernels against independent references: sympy.lambdify and finite differences."""
import numpy as np
import numba
import pytest
import sympy as sp
from hypothesis import given, note
from scipy.special import erf, expit

from dmftgen.codegen import generate, load_kernels
from dmftgen.model import all_builtin_models, load_model
from dmftgen.symbolic import derive

from .strategies import ell_models

LAMBDIFY_MODULES = [{"sigmoid": expit, "softplus": lambda x: np.logaddexp(0.0, x), "erf": erf}, "numpy"]


def _reference(model):
    """lambdify ell, jac_ell and loss of the derived system: the slow but independent path."""
    sysm = derive(model)
    args = list(model.student) + list(model.teacher) + list(model.noise_symbols) + list(model.param_symbols)
    f = {
        "ell": sp.lambdify(args, list(sysm.ell), modules=LAMBDIFY_MODULES),
        "jac": sp.lambdify(args, list(sysm.jac_ell), modules=LAMBDIFY_MODULES),
    }
    if sysm.loss is not None:
        f["loss"] = sp.lambdify(args, sysm.loss, modules=LAMBDIFY_MODULES)
    if sysm.metrics:
        f["metrics"] = sp.lambdify(args, [e for _, e in sysm.metrics], modules=LAMBDIFY_MODULES)
    return f


def _points(model, n, seed):
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 2, (n, model.m))
    s = rng.normal(0, 1.5, (n, model.k))
    z = np.empty((n, len(model.noise)))
    for j, law in enumerate(model.noise.values()):
        z[:, j] = law.sample(rng, n)
    return r, s, z


def _compare(model, kern, n=64, seed=0):
    ref = _reference(model)
    p = model.param_vector()
    r, s, z = _points(model, n, seed)
    g = np.empty((n, model.m))
    J = np.empty((n, model.m, model.m))
    kern.ell_batch(r, s, z, p, g)
    kern.jac_ell_batch(r, s, z, p, J)
    for i in range(n):
        args = list(r[i]) + list(s[i]) + list(z[i]) + list(p)
        # 1e-10 relative: both evaluate the same formula in double precision; only the
        # association order (CSE) and the stable sigmoid/softplus branches differ.
        np.testing.assert_allclose(g[i], np.array(ref["ell"](*args), dtype=float), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(J[i].ravel(), np.array(ref["jac"](*args), dtype=float), rtol=1e-10, atol=1e-12)
    # the label part once per sample (codegen/labels.py), then the loss and metrics from it: the
    # same values as the whole expressions
    aux = np.empty((n, int(kern.NAUX)))
    kern.aux_batch(s, z, p, aux)
    if "loss" in ref:
        L = np.empty(n)
        kern.loss_batch(r, s, z, p, L)
        want = np.array([ref["loss"](*(list(r[i]) + list(s[i]) + list(z[i]) + list(p))) for i in range(n)])
        np.testing.assert_allclose(L, want, rtol=1e-10, atol=1e-12)
        kern.loss_aux_batch(r, aux, p, L)
        np.testing.assert_allclose(L, want, rtol=1e-10, atol=1e-12)
    if "metrics" in ref:
        met = np.empty((n, int(kern.NMET)))
        want = np.array([ref["metrics"](*(list(r[i]) + list(s[i]) + list(z[i]) + list(p))) for i in range(n)],
                        dtype=float)
        kern.metrics_batch(r, s, z, p, met)
        np.testing.assert_allclose(met, want, rtol=1e-10, atol=1e-12)
        kern.metrics_aux_batch(r, aux, p, met)
        np.testing.assert_allclose(met, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", [m.name for m in all_builtin_models()])
def test_builtin_kernels_match_lambdify(name):
    model = load_model(name)
    _compare(model, load_kernels(model))


@given(ell_models())
def test_random_models_match_lambdify(gen_dir, model):
    """The printer on random expressions: generated code (run as Python, JIT off) == lambdify."""
    note(f"ell = {list(model.ell)}")
    generate(model)
    saved = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = True  # tests the printed code without paying a compile per example
    try:
        kern = load_kernels(model)
    finally:
        numba.config.DISABLE_JIT = saved
    _compare(model, kern, n=8)


def test_label_split_of_mixed_products(gen_dir):
    """codegen/labels.py: r* and z appear bare in products and inside functions with r (r0 r*,
    z r1, Heaviside(r0 - r*)); every part without r becomes an input of the ``*_aux`` kernels
    (which take no r*, z: a label part left in place would not even compile), and loss and
    metrics from them equal the whole expressions and lambdify."""
    from dmftgen.codegen.labels import split_labels
    from dmftgen.model import Model, student, teacher

    r, s = student(2), teacher(1)
    z = sp.Symbol("z", real=True)
    loss = (r[0] * s[0] - z) ** 2 / 2 + z * r[1] + sp.exp(-(r[1] - s[0]) ** 2) + sp.cos(s[0]) * r[0] ** 2
    metric = sp.Heaviside(r[0] - s[0], 0) * sp.Heaviside(z, 0)
    model = Model(name="mixed_labels", student=r, teacher=s, noise={z: "normal"}, loss=loss,
                  metrics={"hit": metric}, init_std=sp.Rational(1, 2), teacher_std=1, source=__file__)
    reduced, aux = split_labels([loss, metric], r, (s[0], z))
    for e in reduced:
        assert not (e.free_symbols & {s[0], z}), e
    back = [e.xreplace(dict(aux)) for e in reduced]
    assert sp.simplify(back[0] - loss) == 0 and sp.simplify(back[1] - metric) == 0
    generate(model)
    saved = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = True
    try:
        kern = load_kernels(model)
    finally:
        numba.config.DISABLE_JIT = saved
    assert kern.NAUX == len(aux) >= 3
    _compare(model, kern, n=16)


@pytest.mark.parametrize("name", ["logistic", "committee", "twolayer", "sign"])
def test_jacobian_taylor(name):
    """|ell(r + e v) - ell(r) - e J v| = O(e^2) while |ell(r + e v) - ell(r)| = O(e): slopes 2 and 1."""
    model = load_model(name)
    kern = load_kernels(model)
    p = model.param_vector()
    r, s, z = _points(model, 16, 1)
    v = np.random.default_rng(2).normal(size=r.shape)
    eps = np.array([1e-1, 5e-2, 2.5e-2, 1.25e-2, 6.25e-3])
    g0, J = np.empty_like(r), np.empty((len(r), model.m, model.m))
    kern.ell_batch(r, s, z, p, g0)
    kern.jac_ell_batch(r, s, z, p, J)
    Jv = np.einsum("nab,nb->na", J, v)
    res1, res2 = [], []
    for e in eps:
        g = np.empty_like(r)
        kern.ell_batch(r + e * v, s, z, p, g)
        res1.append(np.linalg.norm(g - g0))
        res2.append(np.linalg.norm(g - g0 - e * Jv))
    slope1 = np.polyfit(np.log(eps), np.log(res1), 1)[0]
    slope2 = np.polyfit(np.log(eps), np.log(res2), 1)[0]
    # Exact slopes are 1 and 2 for C^2 ell; 0.1 allows the O(e) curvature of the fit over one octave range.
    assert abs(slope1 - 1) < 0.1 and abs(slope2 - 2) < 0.1, (slope1, slope2)


def test_stable_logistic_kernels_at_extreme_inputs():
    model = load_model("logistic")
    kern = load_kernels(model)
    r = np.array([[-800.0], [-30.0], [0.0], [30.0], [800.0]])
    s = np.zeros((5, 1))
    z = np.full((5, 1), 0.25)
    J = np.empty((5, 1, 1))
    kern.jac_ell_batch(r, s, z, model.param_vector(), J)
    np.testing.assert_allclose(J.ravel(), expit(r.ravel()) * expit(-r.ravel()), rtol=1e-14, atol=0)
    L = np.empty(5)
    kern.loss_batch(r, s, z, model.param_vector(), L)
    assert np.all(np.isfinite(L)) and abs(L[-1] - 0.0) < 1e-300 + 1e-12 and abs(L[0] - 800.0) < 1e-9
