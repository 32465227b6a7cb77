"""A corrupt numba cache file is a cache miss, not a crash.

numba keeps each ``cache=True`` kernel's machine code in ``__pycache__`` beside its module (an index
``*.nbi`` and data ``*.nbc`` per function). It treats a *missing* file as a miss, but a truncated
or overwritten one raises (``UnpicklingError``, ``EOFError``, ...) wherever the kernel is first
called: at import for the eagerly compiled ones, deep inside a simulation or a solve for the others,
and ``dmftgen generate`` does not help (the kernels' source is current). A cache is disposable:
:func:`tolerate_corrupt_caches` makes an unreadable entry a miss — its index is removed, the kernel
is compiled again and the cache written afresh — with one warning naming the file.
"""
from __future__ import annotations

import os
import warnings


class CorruptCacheWarning(RuntimeWarning):
    """A numba cache file could not be read; it was removed and the kernel is compiled again."""


def tolerate_corrupt_caches() -> None:
    """Patch numba's cache file loader once per process (idempotent; a no-op if numba's internals
    differ from the ones this was written for, numba 0.60-0.68)."""
    try:
        from numba.core.caching import IndexDataCacheFile
    except ImportError:  # pragma: no cover - another numba layout: keep its behaviour
        return
    if getattr(IndexDataCacheFile, "_dmftgen_tolerant", False) or not hasattr(IndexDataCacheFile, "load"):
        return
    load = IndexDataCacheFile.load

    def tolerant_load(self, key):
        try:
            return load(self, key)
        except Exception as exc:  # numba catches OSError itself; anything else is a corrupt file
            index = getattr(self, "_index_path", "?")
            warnings.warn(f"numba cache {index} (or its data file) could not be read ({type(exc).__name__}: "
                          f"{exc}); removed, the kernel is compiled again", CorruptCacheWarning, stacklevel=2)
            try:
                os.remove(index)  # without its index the entry is a miss; the data file is rewritten
            except OSError:
                pass
            return None

    IndexDataCacheFile.load = tolerant_load
    IndexDataCacheFile._dmftgen_tolerant = True
