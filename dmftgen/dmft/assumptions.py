"""The theory's assumptions on a model, checked before a DMFT solve (docs/theory.md).

The DMFT of the SGF assumes ell Lipschitz in the student field r. A loss whose gradient jumps in
r (least absolute deviations |r - y|, the hinge max(0, 1 - y r), a 0-1 loss) gives the responses
Gamma = E[grad ell] and R_ell a Dirac part at the jump, which the tangent estimators drop: the
solve would be silently wrong. Such models are refused unless the caller opts in, and an opted-in
result is marked ``outside_theory``. Losses whose ell is continuous but whose Jacobian jumps
(square hinge, Huber) satisfy the assumption.
"""
from __future__ import annotations

from ..errors import UnsupportedModelError


def outside_theory_reason(kern) -> str:
    """Why the model of generated module ``kern`` is outside the theory ('' if it is not)."""
    if getattr(kern, "ELL_JUMPS", False):
        return f"its loss gradient ell is discontinuous in the student field r ({kern.ELL_JUMP_REASON})"
    return ""


def require_theory(model, kern=None, allow: bool = False) -> str:
    """Raise UnsupportedModelError if ``model`` is outside the theory and ``allow`` is False.

    Returns the reason ('' inside the theory) so that an opted-in run can record it."""
    if kern is None:
        from ..codegen import load_kernels

        kern = load_kernels(model)
    reason = outside_theory_reason(kern)
    if reason and not allow:
        where = f" ({model.display_source})" if getattr(model, "source", None) else ""
        raise UnsupportedModelError(
            f"model `{model.name}`{where}: {reason}. The DMFT needs ell Lipschitz in r: the responses "
            "Gamma and R_ell would have a Dirac part at the jump that the solver cannot represent, so "
            "its curves would be wrong. Use a smooth surrogate of the loss, e.g. pseudo-Huber "
            "c^2 (sqrt(1 + ((r - y)/c)^2) - 1) for |r - y|, or softplus smoothing "
            "eps*softplus(x/eps) for max(0, x), with a width parameter; or pass --outside-theory "
            "(allow_outside_theory=True) to run it anyway, marked outside_theory.")
    return reason
