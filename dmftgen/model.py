"""Declare a model: width m, teacher columns, noise laws, loss or ell, regulariser, parameters.

A model file ``models/<name>.py`` builds one ``MODEL = Model(...)`` from sympy expressions in the
canonical symbols returned by :func:`student`, :func:`teacher` and :func:`theta`::

    r = student(1)                      # r0 = x^T theta          (student pre-activation)
    s = teacher(1)                      # s0 = x^T theta*         (frozen teacher column)
    z, sigma = sp.symbols("z sigma", real=True)
    MODEL = Model(name="linreg", student=r, teacher=s, noise={z: "normal"},
                  params={sigma: 0.5}, loss=(r[0] - s[0] - sigma*z)**2 / 2)

Everything is checked when the Model is constructed (``require_*`` functions below), so a
malformed model fails at import with a message that names the file, the role and the fix.

Size: above 400 lines on purpose, because it is one job: the declaration of a model and the
validation of that one declaration.  The validators (``require_*``, about half of the file) are
run by ``Model.__post_init__`` through ``_validate``, read only the declaration's fields and
report in its terms (file, role, fix); kept beside the fields they check, a new field and its
check change together.  The loaders at the end (``load_model`` and friends, under 100 lines)
only import model files and return these validated declarations.
"""
from __future__ import annotations

import builtins
import hashlib
import importlib.util
import keyword
import math
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import sympy as sp

from .errors import ModelError, SettingsError, UnsupportedModelError
from .functions import KNOWN_FUNCTIONS

from .paths import MODELS_DIR, ROOT as REPO_ROOT, display_path, is_builtin  # noqa: F401  (REPO_ROOT re-exported)

# Names used by the generated code itself; user symbols may not take them.  Python builtins
# (abs, min, max, ...) are refused too: the printer emits calls to them, and a local variable of
# that name in a kernel would shadow the function.
RESERVED = {"rv", "sv", "zv", "pv", "thv", "out", "g", "J", "math", "np", "njit", "prange",
            "M", "K", "NZ", "NP", "NMET"}
BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("_"))


def nfkc(name: str) -> str:
    """The identifier Python makes of ``name`` (PEP 3131: NFKC normalisation, so ``ﬁ`` is ``fi``)."""
    return unicodedata.normalize("NFKC", name)


# ----------------------------------------------------------------------------------------------
# Canonical symbols
# ----------------------------------------------------------------------------------------------
def student(m: int) -> tuple:
    """Student pre-activations ``(r0, ..., r{m-1})``, r_i = x^T theta_{:, i}."""
    return tuple(sp.Symbol(f"r{a}", real=True) for a in range(int(m)))


def teacher(k: int) -> tuple:
    """Frozen teacher pre-activations ``(s0, ..., s{k-1})``, s_j = x^T theta*_{:, j}."""
    return tuple(sp.Symbol(f"s{j}", real=True) for j in range(int(k)))


def theta(m: int) -> tuple:
    """Entries ``(th0, ..., th{m-1})`` of one row of theta, the argument of a regulariser H."""
    return tuple(sp.Symbol(f"th{a}", real=True) for a in range(int(m)))


# ----------------------------------------------------------------------------------------------
# Noise laws
# ----------------------------------------------------------------------------------------------
NOISE_LAWS = {
    "normal": "standard normal N(0, 1)",
    "uniform": "uniform U(0, 1)",
    "rademacher": "uniform on {-1, +1}",
}


@dataclass(frozen=True)
class Noise:
    """Law of one per-sample noise variable (label noise, Bernoulli uniforms)."""

    law: str

    def __post_init__(self):
        if self.law not in NOISE_LAWS:
            raise ModelError(f"unknown noise law {self.law!r}; known laws: {', '.join(NOISE_LAWS)}.")

    def sample(self, rng: np.random.Generator, shape) -> np.ndarray:
        """Draw i.i.d. samples of this law with ``rng``."""
        if self.law == "normal":
            return rng.standard_normal(shape)
        if self.law == "uniform":
            return rng.random(shape)
        return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """The law's quantile function at u in (0, 1): maps (quasi-)uniform points to samples."""
        if self.law == "normal":
            from scipy.special import ndtri
            return ndtri(u)
        if self.law == "uniform":
            return np.asarray(u, dtype=float)
        return np.where(np.asarray(u) < 0.5, -1.0, 1.0)


# ----------------------------------------------------------------------------------------------
# The declaration
# ----------------------------------------------------------------------------------------------
def _caller_file() -> str:
    """The file that constructed the Model (for messages), skipping dataclass/this module frames."""
    f = sys._getframe(1)
    while f is not None and (f.f_code.co_filename == __file__ or f.f_code.co_filename.startswith("<")):
        f = f.f_back
    return f.f_code.co_filename if f is not None else "<unknown>"


def _display(path: str) -> str:
    return display_path(path)


@dataclass(frozen=True)
class Model:
    """A frozen, validated model declaration.

    Parameters
    ----------
    name : str
        Identifier; the generated file is ``generated/<name>.py``.
    student : tuple of Symbol
        ``student(m)``: the m student pre-activations r = x^T theta.
    teacher : tuple of Symbol
        ``teacher(k)``: the k frozen teacher pre-activations r* = x^T theta* (may be empty).
    noise : mapping Symbol -> law
        Per-sample noise variables z and their laws ("normal", "uniform", "rademacher").
    params : mapping Symbol -> float
        Named parameters with defaults; overridable at run time without regenerating code.
    loss : Expr, optional
        Per-sample loss L(r; s, z); then ell = dL/dr.  Exactly one of ``loss`` and ``ell``.
    ell : Matrix or sequence, optional
        The loss gradient ell(r; s, z) in R^m directly (then train/test loss are NaN unless a
        ``loss`` is also ... not given; declare a metric instead).
    labels : Expr or tuple, optional
        The label map y = phi(s, z), for display and documentation.
    regularizer : Expr, optional
        Row-wise penalty H(theta_j) in ``theta(m)``; its gradient h = grad H is added to the
        run-time ridge lam*theta.
    init_std : float or Symbol
        Student initialisation theta^0_{j,a} ~ N(0, init_std^2) i.i.d. (a parameter symbol is
        allowed).
    teacher_std : float or Symbol
        Teacher theta*_{j,b} ~ N(0, teacher_std^2) i.i.d., independent of theta^0.
    metrics : mapping str -> Expr
        Extra per-sample observables, e.g. the 0-1 error.
    description : str
        One line for ``dmftgen list``.
    """

    name: str
    student: tuple
    teacher: tuple = ()
    noise: Mapping = field(default_factory=dict)
    params: Mapping = field(default_factory=dict)
    loss: sp.Expr | None = None
    ell: object = None
    labels: object = None
    regularizer: sp.Expr | None = None
    init_std: object = 0.0
    teacher_std: object = 1.0
    metrics: Mapping = field(default_factory=dict)
    description: str = ""
    source: str = ""

    def __post_init__(self):
        if not self.source:
            object.__setattr__(self, "source", _caller_file())
        _validate(self)

    # -- derived, cheap facts -------------------------------------------------------------------
    @property
    def m(self) -> int:
        return len(self.student)

    @property
    def k(self) -> int:
        return len(self.teacher)

    @property
    def noise_symbols(self) -> tuple:
        return tuple(self.noise)

    @property
    def noise_laws(self) -> tuple:
        return tuple(v.law for v in self.noise.values())

    @property
    def param_symbols(self) -> tuple:
        return tuple(self.params)

    @property
    def param_names(self) -> tuple:
        return tuple(s.name for s in self.params)

    @property
    def display_source(self) -> str:
        return _display(self.source)

    def param_vector(self, overrides: Mapping[str, float] | None = None) -> np.ndarray:
        """Parameter values in declaration order, defaults replaced by ``overrides``.

        Raises SettingsError for an unknown parameter name.
        """
        values = {s.name: float(v) for s, v in self.params.items()}
        for k, v in dict(overrides or {}).items():
            k = nfkc(str(k))
            if k not in values:
                known = ", ".join(values) or "none"
                raise SettingsError(
                    f"model `{self.name}` has no parameter `{k}` (known: {known}); "
                    f"see `dmftgen show {self.name}`.")
            values[k] = float(v)
        p = np.array([values[n] for n in self.param_names], dtype=np.float64)
        if overrides:
            # a standard deviation that depends on a parameter: the model file's check (>= 0 at
            # the defaults, _validate) does not cover a value given on the command line
            for role in ("init_std", "teacher_std"):
                if not sp.sympify(getattr(self, role)).free_symbols:
                    continue  # a number, checked when the model was loaded
                v = self._value(getattr(self, role), p)
                if not (math.isfinite(v) and v >= 0.0):
                    given = ", ".join(f"{k}={float(x):g}" for k, x in dict(overrides).items())
                    raise SettingsError(
                        f"model `{self.name}`: {role} = {v:g} with the parameters given ({given}); "
                        f"it is a standard deviation and must be a finite number >= 0: change the parameter.")
        return p

    def _value(self, expr, p: np.ndarray) -> float:
        e = sp.sympify(expr).subs(dict(zip(self.param_symbols, [float(x) for x in p])))
        return float(e)

    def init_std_value(self, p: np.ndarray) -> float:
        return self._value(self.init_std, p)

    def teacher_std_value(self, p: np.ndarray) -> float:
        return self._value(self.teacher_std, p)


# ----------------------------------------------------------------------------------------------
# Validation (require_* checks; each raises with file, role and fix)
# ----------------------------------------------------------------------------------------------
def _fail(model, msg, cls=ModelError):
    raise cls(f"{_display(model.source)}: model `{model.name}`: {msg}")


def _validate(model: Model) -> None:
    require_name(model)
    require_symbols(model)
    require_params(model)
    require_noise(model)
    require_loss_or_ell(model)
    require_normal_names(model)
    for role, expr in _declared_expressions(model):
        require_declared(model, role, expr)
        require_known_functions(model, role, expr)
    require_finite_at_probes(model)


def require_name(model):
    if not isinstance(model.name, str) or not model.name.isidentifier() or keyword.iskeyword(model.name):
        raise ModelError(f"{_display(model.source)}: model name {model.name!r} must be a Python identifier "
                         "(it names generated/<name>.py).")
    if nfkc(model.name) != model.name:
        raise ModelError(f"{_display(model.source)}: model name {model.name!r} is not in Unicode normal form "
                         f"NFKC; Python reads it as {nfkc(model.name)!r}. Write name={nfkc(model.name)!r}.")


def require_symbols(model):
    m = len(model.student) if isinstance(model.student, (tuple, list)) else 0
    if m < 1 or tuple(model.student) != student(m):
        _fail(model, "`student` must be the symbols returned by dmftgen.student(m), m >= 1, "
                     f"got {model.student!r}. Write student=student(2) for a width-2 student.")
    object.__setattr__(model, "student", tuple(model.student))
    k = len(model.teacher) if isinstance(model.teacher, (tuple, list)) else -1
    if k < 0 or tuple(model.teacher) != teacher(k):
        _fail(model, "`teacher` must be the symbols returned by dmftgen.teacher(k), k >= 0, "
                     f"got {model.teacher!r}.")
    object.__setattr__(model, "teacher", tuple(model.teacher))


def _check_user_symbol(model, sym, role):
    if not isinstance(sym, sp.Symbol):
        _fail(model, f"{role} key {sym!r} must be a sympy Symbol (e.g. sp.Symbol('sigma', real=True)).")
    n = nfkc(sym.name)  # the identifier the generated code will really have
    if n in BUILTINS:
        _fail(model, f"{role} name `{sym.name}` is a Python builtin; the generated kernels call `{n}()`, so "
                     f"a variable of that name would shadow it. Rename it, e.g. `{n}_`.")
    if (not n.isidentifier() or keyword.iskeyword(n) or n.startswith("_") or n in RESERVED
            or n[:1] in "rs" and n[1:].isdigit() or n[:2] == "th" and n[2:].isdigit()):
        _fail(model, f"{role} name `{sym.name}` is not allowed (Python keyword, reserved name or clash with "
                     "r<i>/s<j>/th<i>); rename it.")


def _user_items(model, mapping, role):
    """(symbol, value) of a user mapping: names given as strings become real Symbols, and every
    name is checked (:func:`_check_user_symbol`)."""
    for sym, value in dict(mapping).items():
        if isinstance(sym, str):
            sym = sp.Symbol(sym, real=True)
        _check_user_symbol(model, sym, role)
        yield sym, value


def require_params(model):
    params = {}
    for sym, default in _user_items(model, model.params, "parameter"):
        if default is None:
            _fail(model, f"parameter `{sym.name}` has no default. Give one: params={{{sym.name}: 1.0}}.")
        try:
            value = float(default)
        except (TypeError, ValueError):
            _fail(model, f"parameter `{sym.name}` default must be a number, got {default!r}.")
        if not math.isfinite(value):
            _fail(model, f"parameter `{sym.name}` default must be finite, got {default!r}.")
        params[sym] = value
    object.__setattr__(model, "params", params)


def require_noise(model):
    noise = {}
    for sym, law in _user_items(model, model.noise, "noise variable"):
        if law is None:
            _fail(model, f"noise variable `{sym.name}` has no law. Give one of: {', '.join(NOISE_LAWS)} "
                         f"(e.g. noise={{{sym.name}: 'normal'}}).")
        if isinstance(law, str):
            if law not in NOISE_LAWS:
                _fail(model, f"noise variable `{sym.name}` has unknown law {law!r}; known laws: "
                             f"{', '.join(NOISE_LAWS)}.")
            law = Noise(law)
        if not isinstance(law, Noise):
            _fail(model, f"noise variable `{sym.name}`: law must be a string or dmftgen.Noise, got {law!r}.")
        noise[sym] = law
    object.__setattr__(model, "noise", noise)
    clash = set(model.noise) & set(model.params)
    if clash:
        _fail(model, f"`{sorted(s.name for s in clash)[0]}` is declared both as noise and as a parameter.")


def require_loss_or_ell(model):
    if model.loss is None and model.ell is None:
        _fail(model, "declare either `loss` (per-sample loss L(r; s, z); ell = dL/dr is derived) or `ell` "
                     "(the gradient directly); got neither.")
    if model.loss is not None and model.ell is not None:
        _fail(model, "declare either `loss` or `ell`, not both: ell is derived from the loss. "
                     "Keep `loss` if you want train/test loss curves.")
    if model.loss is not None:
        loss = _sympify(model, "loss", model.loss)
        if isinstance(loss, sp.MatrixBase):
            _fail(model, "`loss` must be a scalar expression L(r; s, z), got a matrix. Use `ell=` for a vector.")
        if not loss.free_symbols & set(model.student):
            _fail(model, f"`loss` = {loss} does not depend on the student pre-activations "
                         f"{', '.join(map(str, model.student))}: its gradient is zero and nothing is learned. "
                         "Write the loss in terms of r = student(m).")
        object.__setattr__(model, "loss", loss)
    else:
        ell = model.ell
        if isinstance(ell, (list, tuple)):
            ell = sp.Matrix(ell)
        ell = _sympify(model, "ell", ell)
        if not isinstance(ell, sp.MatrixBase):
            ell = sp.Matrix([ell])
        if ell.shape != (model.m, 1):
            _fail(model, f"`ell` must be an m x 1 Matrix with m={model.m} (one entry per student "
                         f"pre-activation); got shape {ell.shape}.")
        if all(e == 0 for e in ell):
            _fail(model, "`ell` is identically zero: the gradient vanishes and nothing is learned.")
        object.__setattr__(model, "ell", sp.ImmutableMatrix(ell))
    if model.regularizer is not None:
        object.__setattr__(model, "regularizer", _sympify(model, "regularizer", model.regularizer))
    metrics = {}
    for name, expr in dict(model.metrics).items():
        if not isinstance(name, str) or not name.isidentifier():
            _fail(model, f"metric name {name!r} must be an identifier (it names result keys train_<name>).")
        if name == "loss":
            _fail(model, "metric name `loss` is reserved for the declared loss; choose another name.")
        metrics[name] = _sympify(model, f"metric `{name}`", expr)
    object.__setattr__(model, "metrics", metrics)
    object.__setattr__(model, "init_std", _sympify(model, "init_std", model.init_std))
    object.__setattr__(model, "teacher_std", _sympify(model, "teacher_std", model.teacher_std))


def require_normal_names(model):
    """Unicode names: two symbols that Python reads as one identifier are refused; a single
    non-normalised name (``ﬁ``) is renamed to its NFKC form (``fi``) everywhere, as Python would."""
    syms = set(model.params) | set(model.noise)
    for _, e in _declared_expressions(model):
        syms |= e.free_symbols
    if model.labels is not None:
        try:
            syms |= sp.sympify(model.labels).free_symbols
        except (sp.SympifyError, TypeError, AttributeError):
            pass
    groups = {}
    for sym in syms:
        if isinstance(sym, sp.Symbol):
            groups.setdefault(nfkc(sym.name), set()).add(sym.name)
    for norm, names in sorted(groups.items()):
        if len(names) > 1:
            a, b = sorted(names)[:2]
            _fail(model, f"symbols `{a}` and `{b}` are the same Python identifier `{norm}` after Unicode NFKC "
                         "normalisation (the generated code could not tell them apart); rename one.")
    ren = {sym: sp.Symbol(nfkc(sym.name), **sym.assumptions0) for sym in syms
           if isinstance(sym, sp.Symbol) and nfkc(sym.name) != sym.name}
    if not ren:
        return

    def sub(e):
        return e.xreplace(ren) if hasattr(e, "xreplace") else e

    object.__setattr__(model, "params", {ren.get(k, k): v for k, v in model.params.items()})
    object.__setattr__(model, "noise", {ren.get(k, k): v for k, v in model.noise.items()})
    for attr in ("loss", "ell", "regularizer", "init_std", "teacher_std"):
        if getattr(model, attr) is not None:
            object.__setattr__(model, attr, sub(getattr(model, attr)))
    object.__setattr__(model, "metrics", {k: sub(v) for k, v in model.metrics.items()})
    if model.labels is not None:
        object.__setattr__(model, "labels", sub(sp.sympify(model.labels)) if not isinstance(
            model.labels, (tuple, list)) else type(model.labels)(sub(sp.sympify(x)) for x in model.labels))


def _sympify(model, role, expr):
    try:
        return sp.sympify(expr)
    except (sp.SympifyError, TypeError) as exc:
        _fail(model, f"`{role}` is not a sympy expression ({exc}).")


def _declared_expressions(model):
    """(role, expression) pairs in a fixed order: the per-sample ones first."""
    out = []
    if model.loss is not None:
        out.append(("loss", model.loss))
    else:
        out += [(f"ell[{a}]", e) for a, e in enumerate(model.ell)]
    out += [(f"metric `{n}`", e) for n, e in model.metrics.items()]
    if model.regularizer is not None:
        out.append(("regularizer", model.regularizer))
    out.append(("init_std", model.init_std))
    out.append(("teacher_std", model.teacher_std))
    return out


def _allowed_symbols(model, role):
    if role == "regularizer":
        return set(theta(model.m)) | set(model.params)
    if role in ("init_std", "teacher_std"):
        return set(model.params)
    return set(model.student) | set(model.teacher) | set(model.noise) | set(model.params)


def require_declared(model, role, expr):
    allowed = _allowed_symbols(model, role)
    free = sorted(expr.free_symbols, key=lambda s: s.name)  # sorted for deterministic messages
    for sym in free:
        if sym in allowed:
            continue
        same_name = [a for a in allowed if a.name == sym.name]
        if same_name:
            _fail(model, f"{role} uses symbol `{sym.name}` with different assumptions than the declared one "
                         f"({sym.assumptions0} vs {same_name[0].assumptions0}); create both with real=True.")
        if sym.name.startswith("s") and sym.name[1:].isdigit() and role not in ("regularizer",):
            _fail(model, f"{role} uses teacher pre-activation `{sym.name}` but the model declares "
                         f"teacher=teacher({model.k}); declare teacher=teacher({int(sym.name[1:]) + 1}) "
                         "(missing teacher).")
        groups = [f"{', '.join(x.name for x in model.student)} (student)"]
        if model.teacher:
            groups.append(f"{', '.join(x.name for x in model.teacher)} (teacher)")
        if model.noise:
            groups.append(f"{', '.join(x.name for x in model.noise)} (noise)")
        if model.params:
            groups.append(f"params {', '.join(x.name for x in model.params)}")
        declared = "; ".join(groups)
        if role == "regularizer":
            declared = f"{', '.join(s.name for s in theta(model.m))} (row of theta), params"
        _fail(model, f"{role} depends on undeclared symbol `{sym.name}`. Declared: {declared}. "
                     "Add it to params={...} or noise={...}, or remove it.")


_FORBIDDEN = (sp.Integral, sp.Derivative, sp.Sum, sp.Product, sp.Limit, sp.Subs)


def require_known_functions(model, role, expr):
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.core.function.AppliedUndef) and type(node).__name__ not in KNOWN_FUNCTIONS:
            _fail(model, f"{role} contains the undefined function `{node}`; dmftgen needs explicit formulas. "
                         "Write it out with sympy functions (exp, tanh, erf, ...) or dmftgen.sigmoid/softplus.",
                  UnsupportedModelError)
        if isinstance(node, _FORBIDDEN):
            _fail(model, f"{role} contains `{type(node).__name__}` ({node}), which cannot be turned into a "
                         "kernel; evaluate it in closed form first (e.g. with .doit()).", UnsupportedModelError)


def require_finite_at_probes(model, n_probe: int = 8):
    """Evaluate the per-sample expressions at fixed probe points: real and finite, or an error.

    Probe points are a fixed grid of moderate values (deterministic, no RNG): pre-activations in
    [-2.5, 2.5], noise values in the support of their law, parameters at their defaults.
    """
    subs_p = {s: v for s, v in model.params.items()}
    rng = np.random.default_rng(12345)
    per_sample = [(r, e) for r, e in _declared_expressions(model)
                  if r not in ("regularizer", "init_std", "teacher_std")]
    for j in range(n_probe):
        point = dict(subs_p)
        for sym in model.student + model.teacher:
            point[sym] = float(np.round(rng.uniform(-2.5, 2.5), 3))
        for sym, law in model.noise.items():
            point[sym] = {"normal": float(np.round(rng.normal(), 3)), "uniform": float(np.round(rng.uniform(0.01, 0.99), 3)),
                          "rademacher": float(rng.choice([-1.0, 1.0]))}[law.law]
        for role, expr in per_sample:
            _probe(model, role, expr, point)
        if model.regularizer is not None:
            pt = dict(subs_p)
            pt.update({s: float(np.round(rng.uniform(-2.5, 2.5), 3)) for s in theta(model.m)})
            _probe(model, "regularizer", model.regularizer, pt)
    for role in ("init_std", "teacher_std"):
        v = _probe(model, role, getattr(model, role), subs_p)
        if v < 0:
            _fail(model, f"`{role}` must be >= 0 at the default parameters, got {v}.")


def _probe(model, role, expr, point):
    try:
        val = complex(sp.N(expr.xreplace({k: sp.Float(v) for k, v in point.items()}), 15))
    except (TypeError, ValueError) as exc:
        _fail(model, f"{role} cannot be evaluated to a number at probe point "
                     f"{ {k.name: v for k, v in point.items()} } ({exc}).")
    where = ", ".join(f"{k.name}={v}" for k, v in sorted(point.items(), key=lambda kv: kv[0].name))
    if abs(val.imag) > 1e-12 * max(1.0, abs(val.real)):
        _fail(model, f"{role} is not real at the probe point {where} (value {val}); "
                     "check square roots/logarithms of possibly negative arguments.")
    if not math.isfinite(val.real):
        _fail(model, f"{role} is not finite at the probe point {where} (value {val}); "
                     "use dmftgen.sigmoid/softplus for stable forms, or guard divisions.")
    return val.real


# ----------------------------------------------------------------------------------------------
# Loading model files and the registry of built-in models
# ----------------------------------------------------------------------------------------------
def builtin_model_files() -> list[Path]:
    return sorted(p for p in MODELS_DIR.glob("*.py") if not p.name.startswith("_"))


def _load_file(path: Path) -> Model:
    path = Path(path).resolve()
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist. Give a built-in name "
                         f"({', '.join(builtin_names())}) or the path of a model file.")
    modname = f"dmftgen_models.{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (ModelError, SettingsError):
        raise
    except SyntaxError as exc:
        where = f", line {exc.lineno}" if exc.lineno else ""
        raise ModelError(f"{_display(path)}: syntax error in model file{where}: {exc.msg}.") from None
    except Exception as exc:  # a user's file can raise anything; report it as a model error
        raise ModelError(f"{_display(path)}: executing the model file failed: "
                         f"{type(exc).__name__}: {exc}.") from exc
    model = getattr(module, "MODEL", None)
    if not isinstance(model, Model):
        what = ("defines no model" if model is None and not hasattr(module, "MODEL") else
                f"its MODEL is of type {type(model).__name__}, not a dmftgen.Model")
        raise ModelError(f"{_display(path)}: {what}. A model file must end with "
                         "`MODEL = Model(...)` (see models/linreg.py).")
    if model.source != str(path):
        object.__setattr__(model, "source", str(path))
    return model


def builtin_names() -> list[str]:
    return [p.stem for p in builtin_model_files()]


_CACHE: dict[str, Model] = {}
_STAMPS: dict[str, tuple] = {}  # key -> (mtime_ns, size) of the model file when it was loaded


def _stamp(path) -> tuple | None:
    try:
        st = Path(path).stat()
    except (OSError, TypeError, ValueError):
        return None
    return (st.st_mtime_ns, st.st_size)


def load_model(name_or_path) -> Model:
    """Load a built-in model by name or a model file by path; cached per process until the file
    changes (an edited model file is read again, as a fresh process would).

    A model file is Python code and is executed on load (like an import): load only files you
    trust.

    Raises ModelError if the file does not exist, defines no model, or two built-in files
    declare the same model name.
    """
    key = str(name_or_path)
    if key in _CACHE and _STAMPS.get(key) == _stamp(_CACHE[key].source):
        return _CACHE[key]
    p = Path(key)
    if key.endswith(".py") or p.is_file() or "/" in key:
        model = _load_file(p)
    else:
        path = MODELS_DIR / f"{key}.py"
        if not path.is_file():
            raise ModelError(f"unknown model `{key}`. Built-in models: {', '.join(builtin_names())}; "
                             "or give the path of a model file (e.g. ./mymodel.py).")
        model = _load_file(path)
    others = {}
    for f in builtin_model_files():
        if f.resolve() == Path(model.source).resolve():
            continue
        if f.stem == model.name:
            others[f] = True
    if others:
        f = next(iter(others))
        raise ModelError(f"two models are named `{model.name}`: {_display(model.source)} and {_display(f)}. "
                         "Rename one (the name picks generated/<name>.py).")
    if model.name != Path(model.source).stem and is_builtin(model.source):
        raise ModelError(f"{_display(model.source)}: declares name `{model.name}`, but built-in model files "
                         "must be named after their model (models/<name>.py).")
    _CACHE[key] = model
    _STAMPS[key] = _stamp(model.source)
    return model


def all_builtin_models() -> list[Model]:
    """Every built-in model; raises ModelError if two share a name."""
    models = [load_model(n) for n in builtin_names()]
    seen = {}
    for m in models:
        if m.name in seen:
            raise ModelError(f"two models are named `{m.name}`: {seen[m.name].display_source} and "
                             f"{m.display_source}. Rename one.")
        seen[m.name] = m
    return models
