"""DMFT solver of the stochastic gradient flow (math.md sections 2 and 5.3).

    from dmftgen.dmft import solve, richardson
    res = solve(model, settings, paths=20000, method="sweep")

The per-path r-side sweep is the generated kernel ``dmft_paths`` (template
dmftgen/codegen/templates/dmft.py); the theta-side linear algebra is in :mod:`.theta`, the
orchestration (Gaussian sampler, kernel estimates, fixed point, observables) in :mod:`.solver`.
"""
from .solver import richardson, solve

__all__ = ["solve", "richardson"]
