"""dmftgen: from a few lines of sympy to a simulator of SGD / stochastic gradient flow, its exact
high-dimensional DMFT, and the evidence that the two agree.

Public surface (pipeline order; the theory is docs/theory.md):

    Model, student, teacher, theta, Noise, sigmoid, softplus, load_model    declare
    generate, load_kernels                                                  derive + generate
    Settings, simulate, solve, solve_long                                   run (-> Result)
    compare, run_sweep                                                      compare, sweep
    Result, load                                                            results (xarray.Dataset)
    DmftgenError and subclasses                                             user errors
"""
from .threads import sleep_when_idle

sleep_when_idle()  # before numba starts its OpenMP workers (dmftgen/threads.py)

from .comparison import compare  # light (numpy only); the module is dmftgen.comparison
from .config import Settings
from .dataset import load
from .errors import (CodegenError, DmftgenError, ModelError, SettingsError, StaleKernelsError,
                     UnsupportedModelError)
from .functions import sigmoid, softplus
from .model import Model, Noise, load_model, student, teacher, theta

__version__ = "0.1.0"

# The run stages import numba and friends; load them on first use so that model files (which
# import dmftgen) and `dmftgen list` stay fast.
_LAZY = {"simulate": ("dmftgen.sim", "simulate"), "solve": ("dmftgen.dmft", "solve"),
         "solve_long": ("dmftgen.dmft.longtime", "solve_long"), "run_sweep": ("dmftgen.sweep", "run_sweep"),
         "stationary": ("dmftgen.dmft", "stationary"),
         "load_kernels": ("dmftgen.codegen", "load_kernels"), "generate": ("dmftgen.codegen", "generate"),
         "Result": ("dmftgen.results", "Result")}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'dmftgen' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Model", "Noise", "student", "teacher", "theta", "sigmoid", "softplus", "load_model",
    "generate", "load_kernels", "Settings", "simulate", "solve", "solve_long", "stationary", "compare", "run_sweep",
    "Result", "load", "DmftgenError", "ModelError", "UnsupportedModelError", "CodegenError",
    "StaleKernelsError", "SettingsError", "__version__",
]
