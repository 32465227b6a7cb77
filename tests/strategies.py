"""Hypothesis strategies: random smooth, globally Lipschitz models from a small grammar.

Coefficients are non-zero rationals by construction (a `.filter(c != 0)` rejected ~70 % of
draws, measured).  Every primitive is bounded or has a bounded
derivative, so ell is Lipschitz with Lipschitz Jacobian (assumption A2).
"""
import hashlib
import operator

import hypothesis.strategies as st
import sympy as sp

from dmftgen import Model, sigmoid, student, teacher

PRIMS = {
    "tanh": sp.tanh,
    "erf": sp.erf,
    "sigmoid": sigmoid,
    "softsign": lambda u: u / sp.sqrt(1 + u**2),
    "sin": sp.sin,
}

coef = st.builds(lambda sgn, p, q: sgn * sp.Rational(p, q),
                 st.sampled_from([-1, 1]), st.integers(1, 3), st.integers(1, 4))


def lipschitz_expr(variables, max_leaves=5):
    """Sums, scalings and compositions of bounded primitives of affine leaves c*v + b."""
    base = st.builds(lambda c, v, b: c * v + b, coef, st.sampled_from(variables), coef)
    return st.recursive(base, lambda ch: st.one_of(
        st.builds(lambda f, e: PRIMS[f](e), st.sampled_from(sorted(PRIMS)), ch),
        st.builds(operator.add, ch, ch),
        st.builds(operator.mul, coef, ch)), max_leaves=max_leaves)


def model_name(prefix, exprs) -> str:
    """Deterministic name from the expressions (generated file and numba cache key)."""
    h = hashlib.sha256("|".join(sp.srepr(e) for e in exprs).encode()).hexdigest()[:10]
    return f"{prefix}_{h}"


@st.composite
def ell_models(draw, max_m=3, max_k=2):
    """A Model declared by ell directly: m in 1..max_m, k in 0..max_k, one normal noise z."""
    m = draw(st.integers(1, max_m))
    k = draw(st.integers(0, max_k))
    r, s = student(m), teacher(k)
    z = sp.Symbol("z", real=True)
    variables = list(r) + list(s) + [z]
    ell = [draw(lipschitz_expr(variables)) for _ in range(m)]
    used_z = any(z in e.free_symbols for e in ell)
    return Model(name=model_name("rand", ell), student=r, teacher=s, noise={z: "normal"} if used_z else {},
                 ell=sp.Matrix(ell), source=__file__)


# ----------------------------------------------------------------------------------------------
# Models for the theory-vs-simulation agreement test (tests/test_agreement.py)
# ----------------------------------------------------------------------------------------------
#: Smooth bounded activations (each with bounded first and second derivatives), by name so that
#: a failing example prints readably.
ACTIVATIONS = {
    "tanh": sp.tanh,
    # erf(u), not erf(u/sqrt2): dmftgen.sigmoid/softplus cannot evalf an argument with an irrational
    # constant (no _eval_evalf), which would fail the Model's probe-point check.
    "erf": sp.erf,
    "sigmoid": sigmoid,
    "softsign": lambda u: u / sp.sqrt(1 + u**2),
    "id": lambda u: u,  # a degree-1 polynomial: with the square loss, ell is affine (Lipschitz)
}

small = st.builds(lambda sgn, p, q: sgn * sp.Rational(p, q),
                  st.sampled_from([-1, 1]), st.integers(1, 3), st.integers(2, 4))


@st.composite
def agreement_models(draw, max_m=3, max_k=2):
    """A smooth, globally Lipschitz model declared by a loss, plus a stable run setting.

    Grammar (every ell = dL/dr is Lipschitz with a Lipschitz Jacobian, assumption A2):

    * student output f(r) = sum_a c_a phi_a(r_a) [+ c phi(r_0) psi(r_1)] with phi, psi from
      ACTIVATIONS (bounded, or the identity; for the square loss either all identity or all
      bounded, see the comment in the body);
    * teacher target g(s) = sum_j b_j psi_j(s_j) (0 without teacher columns), label noise
      xi = z (z ~ N(0, 1)) or 7/2 (z - 1/2) (z ~ U(0, 1), variance 49/48), y = g(s) + sigma xi;
    * loss "square" (f - y)^2 / 2 or "soft" softplus(f) - sigmoid(y) f (cross-entropy with soft
      labels), plus an optional bounded-Hessian quadratic eps/2 * sum_a r_a^2;
    * width m in 1..max_m, teacher columns k in 0..max_k; init_std 1/2 (0 allowed for m = 1, k > 0).

    Returns
    -------
    (Model, dict)
        The model (deterministic name from its expressions) and the run description
        {"delta", "tau_frac", "lam"}: tau is set by the test to tau_frac / sup||grad ell||.
    """
    from dmftgen import softplus

    m = draw(st.integers(1, max_m), label="m")
    k = draw(st.integers(0, max_k), label="k")
    r, s = student(m), teacher(k)
    z = sp.Symbol("z", real=True)
    kind = draw(st.sampled_from(["square", "soft"]), label="loss")
    bounded = sorted(set(ACTIVATIONS) - {"id"})
    # Square loss: grad_a ell = phi_a'^2 + (f - y) phi_a'' is bounded only if f and y are bounded
    # or phi'' = 0, so the student is either linear (all "id") or bounded, and a nonlinear
    # student gets a bounded teacher target. (Mixing "id" with a curved phi gives an ell that is
    # not globally Lipschitz; dmftgen compare flags it, as it should.) The soft-label loss has
    # ell = (sigmoid(f) - sigmoid(y)) grad f, bounded with bounded derivatives for any phi.
    linear = kind == "square" and draw(st.booleans(), label="linear student")
    pool = ["id"] if linear else (bounded if kind == "square" else sorted(ACTIVATIONS))
    tpool = sorted(ACTIVATIONS) if (linear or kind == "soft") else bounded
    acts = [draw(st.sampled_from(pool), label=f"phi_{a}") for a in range(m)]
    f = sum(draw(small, label=f"c_{a}") * ACTIVATIONS[acts[a]](r[a]) for a in range(m))
    if m >= 2 and not linear and draw(st.booleans(), label="product term"):
        f = f + draw(small) * ACTIVATIONS[draw(st.sampled_from(["tanh", "erf", "sigmoid"]))](r[0]) \
            * ACTIVATIONS[draw(st.sampled_from(["tanh", "erf", "softsign"]))](r[1])
    g = sum((draw(small) * ACTIVATIONS[draw(st.sampled_from(tpool))](s[j]) for j in range(k)), sp.Integer(0))
    law = draw(st.sampled_from(["normal", "uniform"]), label="noise law")
    sigma = draw(st.sampled_from([sp.Integer(0), sp.Rational(1, 4), sp.Rational(1, 2)]), label="sigma")
    xi = z if law == "normal" else sp.Rational(7, 2) * (z - sp.Rational(1, 2))
    y = g + sigma * xi
    loss = (f - y) ** 2 / 2 if kind == "square" else softplus(f) - sigmoid(y) * f
    eps = draw(st.sampled_from([sp.Integer(0), sp.Rational(1, 4)]), label="eps")
    loss = loss + eps * sum(ra**2 for ra in r) / 2
    # theta^0 = 0 only with a teacher (else theta may stay at the trivial fixed point 0).
    zero_ok = m == 1 and k > 0
    init = draw(st.sampled_from([sp.Integer(0), sp.Rational(1, 2)])) if zero_ok else sp.Rational(1, 2)
    uses_z = z in loss.free_symbols
    desc = f"random {kind} model: f = {f}, y = {y}"
    # The name hashes everything that enters the source hash (two draws with equal losses, e.g.
    # f and -f under the square loss, still differ in the description).
    name = model_name("agree", [loss, init, sp.Symbol(law if uses_z else "none"), sp.Symbol(desc),
                                sp.Integer(m), sp.Integer(k)])
    model = Model(name=name, student=r, teacher=s, noise={z: law} if uses_z else {}, loss=loss,
                  init_std=init, teacher_std=1, description=desc, source=__file__)
    run = {"delta": draw(st.sampled_from([1.5, 2.0, 3.0]), label="delta"),
           "tau_frac": draw(st.sampled_from([0.0, 0.2, 0.4, 0.6]), label="tau * sup|grad ell|"),  # 0: gradient flow
           "lam": draw(st.sampled_from([0.0, 0.1]), label="lam")}
    return model, run
