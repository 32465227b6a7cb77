"""DMFT solver of the stochastic gradient flow (docs/theory.md §2-3).

    from dmftgen.dmft import solve, richardson
    res = solve(model, settings, paths=20000, method="sweep")

The per-path r-side sweep is the generated kernel ``dmft_paths`` (template
dmftgen/codegen/templates/dmft.py), driven by :mod:`.rside`; the theta-side is :mod:`.theta`
(h = lam theta) or :mod:`.theta_mc` (declared H); :mod:`.solver` holds ``solve`` and lists the
other pieces (options, streams, estimators, error bars, drivers). Long horizons (coarse step +
Richardson) in :mod:`.longtime`, the stationary regime (plateau test, stationary states) in
:mod:`.stationary`, the direct stationary solve (`stationary`, any m <= 3, tau >= 0) in
:mod:`.stationary_state`; see docs/longtime.md.
"""
from .extrapolation import richardson
from .longtime import solve_long
from .options import SolveOptions
from .solver import solve
from .stationary import linreg_stationary, plateau, stationary_values
from .stationary_dmft import solve_stationary
from .stationary_state import stationary

__all__ = ["solve", "richardson", "solve_long", "SolveOptions", "plateau", "stationary_values",
           "linreg_stationary", "solve_stationary", "stationary"]
