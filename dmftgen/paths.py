"""Where the built-in models, their generated kernels and the kernels of other models live.

Two layouts hold the built-in models:

* a source checkout (or an editable install): ``<repo>/models/`` and ``<repo>/generated/``;
* an installed wheel: the same two folders shipped as package data in ``dmftgen/_builtin/``
  (``pyproject.toml`` force-includes them), so ``pip install .`` needs no checkout.

The wheel layout is looked for first: an installed package never reads folders that happen to
sit beside it in ``site-packages``.

Kernels of a model outside the package go to ``generated/`` beside the model file when that
folder can be written, else to a per-folder directory in the user cache
(``$DMFTGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/dmftgen``, else ``~/.cache/dmftgen``);
``dmftgen show`` states which.  ``$DMFTGEN_GENERATED`` overrides all of this (tests use it).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_ROOT = PACKAGE_DIR / "_builtin"


def builtin_root(package_dir: Path = PACKAGE_DIR) -> Path:
    """The folder holding ``models/`` and ``generated/`` of the built-in models.

    ``package_dir/_builtin`` in an installed wheel, else the repository root above the package.
    """
    bundled = package_dir / "_builtin"
    if (bundled / "models").is_dir():
        return bundled
    return package_dir.parent


ROOT = builtin_root()
MODELS_DIR = ROOT / "models"
GENERATED_DIR = ROOT / "generated"


def is_builtin(source) -> bool:
    """Whether a model file is one of the built-in models (lives in MODELS_DIR)."""
    return Path(source).resolve().parent == MODELS_DIR.resolve()


def user_cache_dir() -> Path:
    """Root of dmftgen's per-user cache (``$DMFTGEN_CACHE_DIR`` > ``$XDG_CACHE_HOME/dmftgen`` > ~/.cache)."""
    env = os.environ.get("DMFTGEN_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dmftgen"


def _writable(directory: Path) -> bool:
    """Whether files can be created in ``directory`` (or, if it does not exist, in its nearest parent)."""
    d = directory
    while not d.exists():
        if d.parent == d:
            return False
        d = d.parent
    return d.is_dir() and os.access(d, os.W_OK | os.X_OK)


def kernel_dir(source) -> Path:
    """The folder of generated kernels for the model file ``source``.

    Built-in models: GENERATED_DIR.  Other models: ``<model dir>/generated`` if writable, else
    ``user_cache_dir()/generated/<model dir name>-<sha1 of its path, 12 hex>``.
    """
    env = os.environ.get("DMFTGEN_GENERATED")
    if env:
        return Path(env)
    src = Path(source).resolve()
    if is_builtin(src):
        return GENERATED_DIR
    beside = src.parent / "generated"
    if _writable(beside):
        return beside
    tag = hashlib.sha1(str(src.parent).encode()).hexdigest()[:12]
    return user_cache_dir() / "generated" / f"{src.parent.name}-{tag}"


def display_path(path) -> str:
    """``models/<file>`` for built-in models, a path relative to the root otherwise if possible."""
    p = Path(path).resolve()
    if is_builtin(p):
        return f"models/{p.name}"
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(path)
