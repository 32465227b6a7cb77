"""Hypothesis strategies: random smooth, globally Lipschitz models from a small grammar.

Coefficients are non-zero rationals by construction (a `.filter(c != 0)` rejected ~70 % of
draws, numba-sympy-notes.md section 3).  Every primitive is bounded or has a bounded
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
