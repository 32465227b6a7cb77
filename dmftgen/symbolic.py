"""Derive every per-sample term the simulator and the DMFT need from a Model (no printing).

    ell      = dL/dr                       (m x 1)   the loss gradient
    jac_ell  = d ell / d r                 (m x m)   -> Gamma and R_ell tangents
    dell_ds  = d ell / d s                 (m x k)   -> pathwise teacher drift nu
    h        = grad H(theta),  jac_h       (m x 1), (m x m)   nonlinear regulariser
    loss, metrics                                   observables

and the facts that pick the DMFT route: whether jac_ell is constant (deterministic tangents),
whether the labels jump in the teacher field (then d ell/d s misses the jump and the Stein
estimator of nu must be used, docs/theory.md), and whether ell itself jumps in the student field r
(outside the theory: Gamma and R_ell would have a Dirac part; the solver refuses such a model).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .model import Model, theta

#: Functions whose value jumps when their argument crosses a point.
_JUMPS = (sp.Heaviside, sp.sign, sp.floor, sp.ceiling)


@dataclass(frozen=True)
class SymbolicSystem:
    """The derived per-sample expressions of a model, canonical and ready to print."""

    model: Model
    ell: sp.ImmutableMatrix
    jac_ell: sp.ImmutableMatrix
    dell_ds: sp.ImmutableMatrix
    loss: sp.Expr | None
    metrics: tuple
    h: sp.ImmutableMatrix
    jac_h: sp.ImmutableMatrix
    linear_ell: bool
    discontinuous: bool
    discontinuity_reason: str
    ell_jumps: bool = False
    ell_jump_reason: str = ""

    @property
    def route(self) -> str:
        """Which estimator of the teacher drift nu the DMFT solver uses."""
        if self.model.k == 0:
            return "no teacher (nu not needed)"
        return "Stein (labels jump in the teacher field)" if self.discontinuous else "pathwise tangent"


def _jump_reason(expr, teacher_syms) -> str:
    """Describe the first jump of ``expr`` in the teacher field, or '' if it is continuous there.

    Conservative: any Heaviside/sign/floor/ceiling of, or Piecewise condition on, an argument that
    depends on the teacher is treated as a jump.  Misclassifying a continuous model only costs
    Monte Carlo variance (Stein is unbiased either way); the opposite would bias nu.
    """
    ts = set(teacher_syms)
    for node in sp.preorder_traversal(expr):
        if isinstance(node, _JUMPS) and node.args[0].free_symbols & ts:
            return f"{type(node).__name__}({node.args[0]})"
        if isinstance(node, sp.Piecewise):
            for _, cond in node.args:
                if cond is not sp.true and getattr(cond, "free_symbols", set()) & ts:
                    return f"Piecewise condition {cond}"
    return ""


def _ae(mat):
    """Almost-everywhere derivative: the DiracDelta of a differentiated jump is 0 off the jump."""
    return mat.applyfunc(lambda e: e.replace(sp.DiracDelta, lambda *args: sp.S.Zero))


def derive(model: Model) -> SymbolicSystem:
    """Derive ell, its Jacobians, loss, metrics and regulariser terms of ``model``."""
    r = sp.Matrix(model.student)
    if model.loss is not None:
        ell = sp.Matrix([sp.diff(model.loss, ra) for ra in model.student])
    else:
        ell = sp.Matrix(model.ell)
    jac = _ae(ell.jacobian(r))
    dds = _ae(ell.jacobian(sp.Matrix(model.teacher))) if model.k else sp.zeros(model.m, 0)
    th = theta(model.m)
    if model.regularizer is not None:
        h = sp.Matrix([sp.diff(model.regularizer, t) for t in th])
        jac_h = h.jacobian(sp.Matrix(th))
    else:
        h, jac_h = sp.zeros(model.m, 1), sp.zeros(model.m, model.m)
    var = set(model.student) | set(model.teacher) | set(model.noise)
    linear = all(not (e.free_symbols & var) for e in jac)
    from .continuity import find_jump

    reason = ""
    for e in list(ell):
        reason = _jump_reason(e, model.teacher)
        if reason:
            break
    if reason:
        # a non-smooth function of the teacher field is only a candidate: Huber's clip(r - y) is
        # continuous in s, sign(s) labels are not (continuity.find_jump decides numerically)
        found = find_jump(model, list(ell), "teacher")
        reason = f"{reason}: ell {found}" if found else ""
    r_jump = find_jump(model, list(ell), "student")
    return SymbolicSystem(
        model=model,
        ell=sp.ImmutableMatrix(ell),
        jac_ell=sp.ImmutableMatrix(jac),
        dell_ds=sp.ImmutableMatrix(dds),
        loss=model.loss,
        metrics=tuple(model.metrics.items()),
        h=sp.ImmutableMatrix(h),
        jac_h=sp.ImmutableMatrix(jac_h),
        linear_ell=bool(linear),
        discontinuous=bool(reason),
        discontinuity_reason=reason,
        ell_jumps=bool(r_jump),
        ell_jump_reason=r_jump,
    )
