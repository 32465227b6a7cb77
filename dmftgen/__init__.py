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

__all__ = [
    "Model", "Noise", "Normal", "Uniform", "Rademacher", "student", "teacher", "theta", "sigmoid", "softplus",
    "load_model", "Settings", "DmftgenError", "ModelError", "UnsupportedModelError", "CodegenError",
    "StaleKernelsError", "SettingsError", "__version__",
]
