"""Exceptions of dmftgen, split by who is at fault.

User errors (`DmftgenError` and its subclasses) are printed by the CLI as a
one-paragraph message without a traceback, with exit status 2.  Their text is part of the API:
tests match it.  Every message names the file, the role of the offending object and the fix.
"""


class DmftgenError(Exception):
    """Base class of every error a user can cause and fix."""


class ModelError(DmftgenError):
    """A model declaration is malformed.

    Typical causes: an undeclared symbol in ``ell``/``loss``; ``ell`` of the wrong shape; both or
    neither of ``loss`` and ``ell``; a parameter without a default; a missing or unknown noise law;
    non-real or non-finite values at probe points; a model file that does not exist or defines no
    ``MODEL``; two models with the same name.
    """


class UnsupportedModelError(ModelError):
    """A model uses a construct dmftgen cannot turn into kernels (undefined function, integral...)."""


class CodegenError(DmftgenError):
    """An expression cannot be printed as numba code (strict printer)."""


class StaleKernelsError(DmftgenError):
    """``generated/<model>.py`` was produced from a different declaration or dmftgen version."""


class SettingsError(DmftgenError):
    """A run setting is out of range (delta <= 0, tau < 0, dt <= 0, unknown parameter, ...)."""
