"""Wheel build hook: ship the built-in models and their committed kernels inside the package.

In the repository they stay at the top level (``models/``, ``generated/``); in a wheel they land
in ``dmftgen/_builtin/`` where :mod:`dmftgen.paths` looks first.  Only the ``*.py`` files are
listed (a directory-level ``force-include`` would copy ``__pycache__`` and numba caches
verbatim).  Editable installs read the top-level folders directly and need nothing.
"""
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SHIPPED = ("models", "generated")


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if self.target_name != "wheel" or version == "editable":
            return
        root = Path(self.root)
        for folder in SHIPPED:
            for path in sorted((root / folder).glob("*.py")):
                build_data["force_include"][str(path)] = f"dmftgen/_builtin/{folder}/{path.name}"
