"""Closed-form and low-dimensional reference curves for checking simulations and the DMFT.

* :mod:`.marchenko_pastur` — gradient flow / gradient descent on ridge regression (τ = 0).
* :mod:`.volterra` — homogenized-SGF Marchenko–Pastur Volterra risk curves (ridge regression).
* :mod:`.online` — online-SGD overlap ODEs (δ → ∞ at fixed τ) for GLMs / two-layer students.

Only numpy and scipy are used.
"""

from .marchenko_pastur import (
    RidgeCurves,
    gradient_flow,
    mp_atom,
    mp_density,
    mp_quadrature,
    mp_support,
)
from .online import (
    OnlineCurves,
    from_kernels,
    noise_rule,
    online_expectations,
    online_rhs,
    solve_online,
)
from .volterra import (
    critical_tau,
    is_stable,
    kernel_integrals,
    noise_floor,
    volterra,
    volterra_kernels,
)

__all__ = [
    "RidgeCurves", "gradient_flow", "mp_atom", "mp_density", "mp_quadrature", "mp_support",
    "OnlineCurves", "from_kernels", "noise_rule", "online_expectations", "online_rhs",
    "solve_online",
    "critical_tau", "is_stable", "kernel_integrals", "noise_floor", "volterra", "volterra_kernels",
]
