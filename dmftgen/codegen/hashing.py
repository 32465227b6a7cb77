"""source_hash(model): sha256 over the declaration, the templates and the emitter itself.

Cheap (no derivation, no printing), so ``load_kernels`` can check staleness on every load.  Only
what changes the generated code enters: parameter *defaults* and run settings do not (they are
run-time inputs), the emitter's own source does (so a change to the printer makes every
generated file stale instead of silently mismatching).  Never Python's randomised ``hash()``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import sympy as sp

from ..model import Model

CODEGEN_VERSION = 1
_SELF = [Path(__file__).parent / n for n in ("emit.py", "printer.py")]


def source_hash(model: Model) -> str:
    from .emit import template_texts

    items = [
        f"CODEGEN_VERSION {CODEGEN_VERSION}",
        f"name {model.name}",
        f"m {model.m} k {model.k}",
        "noise " + " ".join(f"{s.name}:{law}" for s, law in zip(model.noise_symbols, model.noise_laws)),
        "params " + " ".join(model.param_names),
        "loss " + (sp.srepr(model.loss) if model.loss is not None else "None"),
        "ell " + (sp.srepr(model.ell) if model.ell is not None else "None"),
        "metrics " + " | ".join(f"{n}={sp.srepr(e)}" for n, e in model.metrics.items()),
        "regularizer " + (sp.srepr(model.regularizer) if model.regularizer is not None else "None"),
        "labels " + (sp.srepr(sp.sympify(model.labels)) if model.labels is not None else "None"),
        "source " + Path(model.source).name,
    ]
    items += [f"template {name}\n{body}" for name, body in template_texts()]
    items += [f"emitter {p.name}\n{p.read_text()}" for p in _SELF]
    return "sha256:" + hashlib.sha256("\n".join(items).encode()).hexdigest()
