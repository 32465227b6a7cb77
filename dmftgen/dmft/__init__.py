"""DMFT solver of the stochastic gradient flow (docs/theory.md §2-3).

    from dmftgen.dmft import solve, richardson
    res = solve(model, settings, paths=20000, method="sweep")

The per-path r-side sweep is the generated kernel ``dmft_paths`` (template
dmftgen/codegen/templates/dmft.py); the theta-side linear algebra is in :mod:`.theta`, the
orchestration (Gaussian sampler, kernel estimates, fixed point, observables) in :mod:`.solver`.
Long horizons (coarse step + Richardson) in :mod:`.longtime`, the stationary regime (plateau
test, stationary states) in :mod:`.stationary`, the direct stationary solve
(`stationary`, any m <= 3, tau >= 0) in :mod:`.stationary_state`; see docs/longtime.md.
"""
from .longtime import solve_long
from .solver import richardson, solve
from .stationary import linreg_stationary, plateau, stationary_values
from .stationary_dmft import solve_stationary
from .stationary_state import stationary

__all__ = ["solve", "richardson", "solve_long", "plateau", "stationary_values", "linreg_stationary",
           "solve_stationary", "stationary"]
