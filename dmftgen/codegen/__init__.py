"""Code generation: Model -> SymbolicSystem -> KernelSpec[] -> module text -> generated/<name>.py.

    generate(model)      derive, emit and write generated/<name>.py if its bytes changed
    check(model)         None if generated/<name>.py is current, else a unified diff
    load_kernels(model)  import generated/<name>.py (one canonical module name), verify its hash
"""
from __future__ import annotations

import difflib
import importlib.util
import sys
import types
from pathlib import Path

from .._io import atomic_write
from ..errors import StaleKernelsError
from ..model import Model
from ..paths import GENERATED_DIR, kernel_dir
from ..symbolic import derive
from .emit import emit_module, regenerate_command
from .hashing import source_hash

PACKAGE = "dmftgen_generated"


def generated_dir(model: Model) -> Path:
    """generated/ of the built-in models, else <model dir>/generated or a user cache dir.

    See :func:`dmftgen.paths.kernel_dir`; DMFTGEN_GENERATED overrides (tests point it at a tmp dir).
    """
    return kernel_dir(model.source)


def generated_path(model: Model) -> Path:
    return generated_dir(model) / f"{model.name}.py"


def render(model: Model) -> str:
    """The text generated/<name>.py must have (derive + emit; no I/O)."""
    return emit_module(derive(model), source_hash(model))


def write_if_changed(path: Path, text: str) -> bool:
    """Atomically replace ``path`` by ``text`` unless it already has exactly these bytes.

    numba stamps its cache with the source file's hash, and rewriting identical bytes would at
    best waste work; a temp file + os.replace never leaves a half-written module behind.
    """
    data = text.encode()
    if path.exists() and path.read_bytes() == data:
        return False
    atomic_write(path, data)
    return True


def generate(model: Model) -> tuple[Path, bool]:
    """Regenerate generated/<name>.py; returns (path, whether the bytes changed)."""
    path = generated_path(model)
    return path, write_if_changed(path, render(model))


def check(model: Model) -> str | None:
    """None if the generated file is current, else a unified diff (file -> expected)."""
    path = generated_path(model)
    want = render(model)
    have = path.read_text() if path.exists() else ""
    if have == want:
        return None
    rel = path.name
    return "".join(difflib.unified_diff(have.splitlines(True), want.splitlines(True),
                                        fromfile=f"generated/{rel} (on disk)", tofile=f"generated/{rel} (expected)"))


def _file_hash(path: Path) -> str | None:
    with open(path) as fh:
        for _, line in zip(range(10), fh):
            if line.startswith("# Source hash: "):
                return line.split(":", 1)[1].strip()
    return None


def _ensure_package(directory: Path):
    pkg = sys.modules.get(PACKAGE)
    if pkg is None:
        pkg = types.ModuleType(PACKAGE)
        pkg.__path__ = []
        sys.modules[PACKAGE] = pkg
    if str(directory) not in pkg.__path__:
        pkg.__path__.append(str(directory))


def load_kernels(model: Model):
    """Import generated/<name>.py under the one module name ``dmftgen_generated.<name>``.

    One canonical import name matters: numba's cache records it, and importing the same file
    under two names crashes (measured with numba 0.60).

    Raises
    ------
    StaleKernelsError
        The file is missing or was generated from another declaration/template/emitter version;
        the message names the regenerate command.
    """
    path = generated_path(model)
    want = source_hash(model)
    if not path.exists():
        raise StaleKernelsError(f"generated/{model.name}.py does not exist for model `{model.name}` "
                                f"({model.display_source}). Run: {regenerate_command(model)}")
    have = _file_hash(path)
    if have != want:
        raise StaleKernelsError(
            f"{path.name} in {path.parent.name}/ was generated from a different declaration of model "
            f"`{model.name}` (file {str(have)[:15]}…, model {want[:15]}…). Run: {regenerate_command(model)}")
    name = f"{PACKAGE}.{model.name}"
    mod = sys.modules.get(name)
    if mod is not None and getattr(mod, "SOURCE_HASH", None) == want and Path(mod.__file__) == path:
        return mod
    if mod is not None:
        raise StaleKernelsError(f"kernels of another model named `{model.name}` are already loaded in this "
                                f"process (from {mod.__file__}); two models must not share a name.")
    _ensure_package(path.parent)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception:
        del sys.modules[name]
        raise
    return mod
