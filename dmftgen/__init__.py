"""dmftgen: from a few lines of sympy to a simulator of SGD / stochastic gradient flow, its exact
high-dimensional DMFT, and the evidence that the two agree.

Public surface (pipeline order): declare -> derive -> generate -> simulate / solve -> compare.
"""
from .config import Settings
from .errors import (CodegenError, DmftgenError, ModelError, SettingsError, StaleKernelsError,
                     UnsupportedModelError)
from .functions import sigmoid, softplus
from .model import Model, Noise, Normal, Rademacher, Uniform, load_model, student, teacher, theta

__version__ = "0.1.0"

# The run stages import numba and friends; load them on first use so that model files (which
# import dmftgen) and `dmftgen list` stay fast.
_LAZY = {"simulate": ("dmftgen.sim", "simulate"), "solve": ("dmftgen.dmft", "solve"),
         "stationary": ("dmftgen.dmft", "stationary"),
         "load_kernels": ("dmftgen.codegen", "load_kernels"), "generate": ("dmftgen.codegen", "generate"),
         "Result": ("dmftgen.results", "Result")}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'dmftgen' has no attribute {name!r}")

__all__ = [
    "Model", "Noise", "Normal", "Uniform", "Rademacher", "student", "teacher", "theta", "sigmoid", "softplus",
    "load_model", "Settings", "DmftgenError", "ModelError", "UnsupportedModelError", "CodegenError",
    "StaleKernelsError", "SettingsError", "__version__", "simulate", "solve", "stationary", "load_kernels", "generate", "Result",
]
