"""Emit the text of ``generated/<model>.py`` from a SymbolicSystem (pure: no I/O but templates).

Module layout (docs/kernels.md): header with the source hash, module constants, the stable
helpers, one row kernel per derived quantity (sectioned bodies: inputs, canonical-CSE
intermediates, outputs), batch kernels over samples, then the template bodies (hot loops of the
simulator and the DMFT solver), which call the row kernels directly so numba inlines ℓ and ∇ℓ.

Determinism: every set is sorted, CSE order is canonical with counter-named temporaries, floats
are printed by ``repr``, and nothing host- or time-dependent is written.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from ..model import Model, theta
from ..paths import display_path, is_builtin
from ..symbolic import SymbolicSystem
from .hashing import CONTENT_PREFIX, content_hash
from .labels import split_labels
from .printer import count_ops, print_expr
from .unroll import adjoint_helpers

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_MARKER = "# --- template body ---"
#: a template line replaced by generated text (the unrolled adjoint helpers of templates/dmft.py)
UNROLL_MARKER = "# @unrolled adjoint helpers"
DECORATOR = '@njit(cache=True, nogil=True, error_model="numpy")'

HELPERS = '''
@njit(cache=True, nogil=True, error_model="numpy")
def _sigmoid(x):
    """Logistic function without overflow: branch on the sign of x."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True, nogil=True, error_model="numpy")
def _softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), finite for every finite x."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))
'''


@dataclass(frozen=True)
class KernelSpec:
    """One row kernel: a name, its array arguments, and (target, expression) outputs."""

    name: str
    args: tuple          # array argument names, in order
    doc: str
    outputs: tuple       # ((lhs, expr), ...); lhs None means "return expr"
    inputs: tuple = ()   # ((symbol, array element), ...) besides the model's own (labels.py: av[i])


#: Templates and kernels only some models can use: name -> predicate on the Model.  Everything
#: else goes into every generated module (``sim.py``, ``dmft.py``, the row kernels, ``h_row``,
#: which the simulator calls under ``if HAS_REG``).
#:   stationary.py   the windowed stationary DMFT, r-side (dmftgen/dmft/stationary_dmft.py): m <= 3
#:   stationary_theta.py  its Monte Carlo theta-side (dmftgen/dmft/stationary_theta_mc.py): m <= 3, a declared H
#:   theta_paths.py  the Monte Carlo theta-side (dmftgen/dmft/theta.py ThetaMC): a declared H
#:   jac_h_row, h_batch  the regulariser kernels that only the Monte Carlo theta-sides call
USED_ONLY_BY = {
    "stationary.py": lambda model: model.m <= 3,
    "stationary_theta.py": lambda model: model.m <= 3 and model.regularizer is not None,
    "theta_paths.py": lambda model: model.regularizer is not None,
    "jac_h_row": lambda model: model.regularizer is not None,
    "h_batch": lambda model: model.regularizer is not None,
}


def uses(model: Model, name: str) -> bool:
    """Whether the generated module of ``model`` carries the template or kernel ``name``."""
    rule = USED_ONLY_BY.get(name)
    return rule is None or bool(rule(model))


def template_texts(m: int) -> list[tuple[str, str]]:
    """(file name, body) of every template for student width ``m``, sorted by name for
    deterministic output."""
    out = []
    for path in sorted(TEMPLATE_DIR.glob("*.py")):
        text = path.read_text()
        if TEMPLATE_MARKER not in text:
            continue
        body = text.split(TEMPLATE_MARKER, 1)[1].strip("\n") + "\n"
        out.append((path.name, _unrolled(body, m)))
    return out


def _unrolled(body: str, m: int) -> str:
    """``body`` with its ``UNROLL_MARKER`` line (if any) replaced by the helpers of unroll.py for
    student width ``m``."""
    if UNROLL_MARKER not in body:
        return body
    lines = body.split("\n")
    at = next(i for i, line in enumerate(lines) if UNROLL_MARKER in line)
    return "\n".join(lines[:at]) + "\n" + adjoint_helpers(m) + "\n".join(lines[at + 1:])


def _input_map(model: Model) -> list[tuple[sp.Symbol, str]]:
    """Symbol -> array element, in the fixed role order of docs/kernels.md."""
    rows = [(s, f"rv[{a}]") for a, s in enumerate(model.student)]
    rows += [(s, f"sv[{j}]") for j, s in enumerate(model.teacher)]
    rows += [(s, f"zv[{j}]") for j, s in enumerate(model.noise_symbols)]
    rows += [(s, f"pv[{j}]") for j, s in enumerate(model.param_symbols)]
    rows += [(s, f"thv[{a}]") for a, s in enumerate(theta(model.m))]
    return rows


def specify(system: SymbolicSystem) -> list[KernelSpec]:
    """The row kernels of a model, in emission order."""
    mod = system.model
    m, k = mod.m, mod.k
    sample = ("rv", "sv", "zv", "pv")
    ell = [(f"out[{a}]", system.ell[a]) for a in range(m)]
    jac = [(f"out[{a}, {b}]", system.jac_ell[a, b]) for a in range(m) for b in range(m)]
    loss = system.loss if system.loss is not None else sp.nan
    metrics = [e for _, e in system.metrics]
    (loss_a, *metrics_a), aux = split_labels([loss, *metrics], mod.student, (*mod.teacher, *mod.noise_symbols))
    aux_in = tuple((a, f"av[{i}]") for i, (a, _) in enumerate(aux))
    specs = [
        KernelSpec("ell_row", sample + ("out",), "ell = dL/dr, out shape (M,).", tuple(ell)),
        KernelSpec("jac_ell_row", sample + ("out",), "out[a, b] = d ell_a / d r_b, shape (M, M).", tuple(jac)),
        KernelSpec("ell_jac_row", sample + ("g", "J"), "ell into g (M,) and its Jacobian into J (M, M), shared CSE.",
                   tuple((lhs.replace("out", "g"), e) for lhs, e in ell)
                   + tuple((lhs.replace("out", "J"), e) for lhs, e in jac)),
        KernelSpec("dell_ds_row", sample + ("out",),
                   "out[a, j] = d ell_a / d s_j (pathwise, a.e.; jumps ignored), shape (M, K).",
                   tuple((f"out[{a}, {j}]", system.dell_ds[a, j]) for a in range(m) for j in range(k))),
        KernelSpec("loss_row", sample, "Per-sample loss L (NaN if only ell was declared).", ((None, loss),)),
        KernelSpec("metrics_row", sample + ("out",), "Declared metrics, out shape (NMET,).",
                   tuple((f"out[{q}]", e) for q, e in enumerate(metrics))),
        KernelSpec("aux_row", ("sv", "zv", "pv", "out"),
                   "The label part of the loss and metrics (r*, z only), out shape (NAUX,): codegen/labels.py.",
                   tuple((f"out[{i}]", e) for i, (_, e) in enumerate(aux))),
        KernelSpec("loss_aux_row", ("rv", "av", "pv"), "loss_row with the label part av = aux_row(...) given.",
                   ((None, loss_a),), aux_in),
        KernelSpec("metrics_aux_row", ("rv", "av", "pv", "out"), "metrics_row with the label part av given.",
                   tuple((f"out[{q}]", e) for q, e in enumerate(metrics_a)), aux_in),
        KernelSpec("h_row", ("thv", "pv", "out"), "Gradient of the declared regulariser H (ridge not included).",
                   tuple((f"out[{a}]", system.h[a]) for a in range(m))),
        KernelSpec("jac_h_row", ("thv", "pv", "out"), "Jacobian of h, shape (M, M).",
                   tuple((f"out[{a}, {b}]", system.jac_h[a, b]) for a in range(m) for b in range(m))),
    ]
    return [s for s in specs if uses(mod, s.name)]


def emit_kernel(spec: KernelSpec, model: Model) -> str:
    """Text of one row kernel: inputs, canonical-CSE intermediates, outputs."""
    exprs = [sp.sympify(e) for _, e in spec.outputs]
    temps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_t"), optimizations=None, order="canonical")
    used = set()
    for e in [t[1] for t in temps] + reduced:
        used |= e.free_symbols
    lines = [DECORATOR, f"def {spec.name}({', '.join(spec.args)}):", f'    """{spec.doc}"""']
    lines.append(f"    # Total ops: {count_ops([t[1] for t in temps] + reduced)}")
    inputs = [(s, src) for s, src in list(_input_map(model)) + list(spec.inputs)
              if s in used and src.split("[")[0] in spec.args]
    if inputs:
        lines.append("    # Inputs")
        lines += [f"    {s.name} = {src}" for s, src in inputs]
    if temps:
        lines.append(f"    # Intermediate terms ({len(temps)})")
        lines += [f"    {t} = {print_expr(e, f'kernel {spec.name} of model {model.name}')}" for t, e in temps]
    lines.append("    # Outputs")
    for (lhs, _), e in zip(spec.outputs, reduced):
        code = print_expr(e, f"kernel {spec.name} of model {model.name}")
        lines.append(f"    return {code}" if lhs is None else f"    {lhs} = {code}")
    if not spec.outputs:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


BATCH = '''
{dec}
def ell_batch(r, s, z, p, out):
    """ell for every sample: r (n, M), s (n, K), z (n, NZ) -> out (n, M)."""
    for i in range(r.shape[0]):
        ell_row(r[i], s[i], z[i], p, out[i])


{dec}
def jac_ell_batch(r, s, z, p, out):
    """Jacobian of ell for every sample -> out (n, M, M)."""
    for i in range(r.shape[0]):
        jac_ell_row(r[i], s[i], z[i], p, out[i])


{dec}
def loss_batch(r, s, z, p, out):
    """Per-sample loss -> out (n,)."""
    for i in range(r.shape[0]):
        out[i] = loss_row(r[i], s[i], z[i], p)


{dec}
def metrics_batch(r, s, z, p, out):
    """Declared metrics for every sample -> out (n, NMET)."""
    for i in range(r.shape[0]):
        metrics_row(r[i], s[i], z[i], p, out[i])


{dec}
def aux_batch(s, z, p, out):
    """The label part of the loss and metrics for every sample -> out (n, NAUX)."""
    for i in range(s.shape[0]):
        aux_row(s[i], z[i], p, out[i])


{dec}
def loss_aux_batch(r, a, p, out):
    """loss_batch with the label part a = aux_batch(s, z, p) given -> out (n,)."""
    for i in range(r.shape[0]):
        out[i] = loss_aux_row(r[i], a[i], p)


{dec}
def metrics_aux_batch(r, a, p, out):
    """metrics_batch with the label part a given -> out (n, NMET)."""
    for i in range(r.shape[0]):
        metrics_aux_row(r[i], a[i], p, out[i])
'''.format(dec=DECORATOR)

H_BATCH = '''
{dec}
def h_batch(th, p, out):
    """Regulariser gradient for every row of theta: th (d, M) -> out (d, M)."""
    for j in range(th.shape[0]):
        h_row(th[j], p, out[j])
'''.format(dec=DECORATOR)


def _short(expr, limit=300) -> str:
    text = sp.sstr(expr)
    return text if len(text) <= limit else text[: limit - 5] + " ..."


def regenerate_command(model: Model) -> str:
    src = Path(model.source).resolve()
    if is_builtin(src):
        return f"python -m dmftgen generate {model.name}"
    return f"python -m dmftgen generate {src.name}  (from the directory of the model file)"


def source_label(model: Model) -> str:
    label = display_path(model.source)
    return label if not Path(label).is_absolute() else Path(label).name  # no absolute paths in generated files


def emit_module(system: SymbolicSystem, source_hash: str) -> str:
    """The full, deterministic text of ``generated/<model>.py``."""
    mod = system.model
    specs = {spec.name: spec for spec in specify(system)}
    rule = "# " + "-" * 97
    doc_lines = [f"    ell[{a}] = {_short(e)}" for a, e in enumerate(system.ell)]
    doc_lines += [f"    labels = {_short(mod.labels)}"] if mod.labels is not None else []
    doc_lines += [f"    DMFT route for nu: {system.route}"]
    head = [
        rule,
        f"# Generated by dmftgen from {source_label(mod)} -- do NOT edit by hand.",
        f"# Regenerate:  {regenerate_command(mod)}",
        f"# Source hash: {source_hash}",
        CONTENT_PREFIX + "@CONTENT@",
        rule,
        f'"""Numba kernels for model `{mod.name}` (M = {mod.m} student, K = {mod.k} teacher columns).',
        "",
        *doc_lines,
        '"""',
        "import math",
        "",
        "import numpy as np",
        "from numba import njit, prange",
        "",
        f'MODEL = "{mod.name}"',
        f'SOURCE_HASH = "{source_hash}"',
        f"M = {mod.m}",
        f"K = {mod.k}",
        f"NZ = {len(mod.noise)}",
        f"NP = {len(mod.params)}",
        f"NMET = {len(mod.metrics)}",
        f"NAUX = {len(specs['aux_row'].outputs)}",
        f"PARAMS = {tuple(mod.param_names)!r}",
        f"NOISE = {tuple(mod.noise_laws)!r}",
        f"METRICS = {tuple(mod.metrics)!r}",
        f"LINEAR_ELL = {system.linear_ell}",
        f"DISCONTINUOUS = {system.discontinuous}",
        f"ELL_JUMPS = {system.ell_jumps}",
        f"ELL_JUMP_REASON = {system.ell_jump_reason!r}",
        f"HAS_LOSS = {system.loss is not None}",
        f"HAS_REG = {mod.regularizer is not None}",
        "",
        "# " + "=" * 40 + " stable helpers",
        HELPERS.strip("\n"),
        "",
        "",
        "# " + "=" * 40 + " row kernels (one sample)",
    ]
    parts = ["\n".join(head)]
    for spec in specs.values():
        parts.append(emit_kernel(spec, mod))
    batch = BATCH.rstrip("\n") + ("\n\n" + H_BATCH.rstrip("\n") if uses(mod, "h_batch") else "")
    parts.append("# " + "=" * 40 + " batch kernels (loop over samples)" + batch + "\n")
    for name, body in template_texts(mod.m):
        if uses(mod, name):
            parts.append("# " + "=" * 40 + f" template {name}\n" + body)
    text = "\n\n\n".join(p.rstrip("\n") for p in parts) + "\n"
    return text.replace(CONTENT_PREFIX + "@CONTENT@", CONTENT_PREFIX + content_hash(text), 1)
