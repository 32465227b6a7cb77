r"""Learning-rate schedules gamma(t) >= 0 on the SGF clock (docs/theory.md §1).

SGD with eta_k = eta * gamma(t_k), t_k = k eta / d, is the SGF with ell_t = gamma(t) ell and
h_t = gamma(t) h: the drift scales by gamma and the noise covariance by gamma^2,

.. math::

    d\theta = -\gamma(t)\big(h\,dt + \delta^{-1}X^\top dL\big),\qquad
    dL_i = \ell_i\,(dt + \sqrt{\tau\delta}\,dB_i).

So the SGF step uses dt -> gamma(t_k) dt in the drift and sqrt(tau delta) -> gamma(t_k) sqrt(tau delta)
in the noise, and SGD uses the per-step rates eta_k (Ito: gamma at the left end of each step).
"""
from __future__ import annotations

import ast

import numpy as np

from ..errors import SettingsError

#: functions a schedule formula may call (sympy names); nothing else is callable.
FUNCTIONS = ("exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh", "atan", "Abs", "abs",
             "Min", "Max", "min", "max", "Piecewise", "Heaviside", "floor", "ceiling", "sign")
#: named constants
CONSTANTS = ("pi", "E")
_MAX_LEN = 500


def parse_formula(text: str):
    """Parse ``text`` as an arithmetic expression in ``t`` -- without evaluating any Python.

    The string is parsed by ``ast.parse(mode="eval")`` and the tree is walked node by node: only
    numbers, the name ``t``, the constants pi and E, + - * / ** (and unary -), comparisons (for
    Piecewise conditions), tuples inside a Piecewise and calls of the names in :data:`FUNCTIONS`
    are accepted; every other node (attributes, subscripts, other names, keywords, lambdas,
    strings, ...) is a SettingsError.  The sympy expression is then built from the accepted nodes,
    so no ``eval``/``sympify`` of user text ever happens.

    Returns
    -------
    (sympy.Expr, set of other names used)
    """
    import sympy as sp

    t = sp.Symbol("t", real=True)
    text = str(text)
    if len(text) > _MAX_LEN:
        raise SettingsError(f"learning-rate schedule is longer than {_MAX_LEN} characters.")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise SettingsError(f"learning-rate schedule {text!r} is not a formula in t (e.g. '1/(1+t)'): "
                            f"{exc.msg}") from None
    bins = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
            ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b}
    cmps = {ast.Lt: sp.StrictLessThan, ast.LtE: sp.LessThan, ast.Gt: sp.StrictGreaterThan,
            ast.GtE: sp.GreaterThan}
    funcs = {"abs": sp.Abs, "min": sp.Min, "max": sp.Max}
    others = set()

    def bad(node, what):
        raise SettingsError(f"learning-rate schedule {text!r}: {what} is not allowed; write an "
                            f"arithmetic formula in t with {', '.join(FUNCTIONS[:8])}, ... (e.g. '1/(1+t)').")

    def walk(node, in_piecewise=False):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                return sp.true if node.value else sp.false
            if isinstance(node.value, (int, float)):
                return sp.Float(node.value) if isinstance(node.value, float) else sp.Integer(node.value)
            bad(node, f"the constant {node.value!r}")
        if isinstance(node, ast.Name):
            if node.id == "t":
                return t
            if node.id in CONSTANTS:
                return getattr(sp, node.id)
            if node.id == "True":
                return sp.true
            others.add(node.id)
            return sp.Symbol(node.id, real=True)
        if isinstance(node, ast.BinOp) and type(node.op) in bins:
            a, b = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and getattr(b, "is_Number", False) and abs(float(b)) > 64:
                bad(node, f"the power {ast.unparse(node)} (exponent above 64)")
            return bins[type(node.op)](a, b)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = walk(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in cmps:
            return cmps[type(node.ops[0])](walk(node.left), walk(node.comparators[0]))
        if isinstance(node, ast.Tuple) and in_piecewise and len(node.elts) == 2:
            return tuple(walk(e) for e in node.elts)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
                bad(node, f"calling `{name}`")
            if node.keywords:
                bad(node, "a keyword argument")
            fn = funcs.get(node.func.id) or getattr(sp, node.func.id)
            pw = node.func.id == "Piecewise"
            return fn(*(walk(a, in_piecewise=pw) for a in node.args))
        bad(node, f"`{ast.unparse(node)}` ({type(node).__name__})")

    try:
        expr = walk(tree)
    except SettingsError:
        raise
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise SettingsError(f"learning-rate schedule {text!r} is not a formula in t: {exc}") from None
    if not isinstance(expr, sp.Expr):
        raise SettingsError(f"learning-rate schedule {text!r} is not a number-valued formula in t.")
    return expr, others


class Schedule:
    """gamma(t), vectorised over numpy arrays; ``text`` is what goes into the result metadata.

    Parameters
    ----------
    spec : str or callable
        A formula in ``t`` (e.g. ``"1/(1 + t)"``, ``"exp(-t/4)"``,
        ``"Piecewise((1, t < 2), (0.1, True))"``), parsed by :func:`parse_formula` -- never
        evaluated as Python, so a string from a command line cannot run code -- or a Python
        callable taking an ndarray of times.
    """

    def __init__(self, spec):
        if callable(spec):
            self.fn = spec
            self.text = getattr(spec, "__name__", repr(spec))
            return
        import sympy as sp

        t = sp.Symbol("t", real=True)
        expr, others = parse_formula(spec)
        extra = {str(x) for x in expr.free_symbols - {t}} | others
        if extra:
            raise SettingsError(f"learning-rate schedule {spec!r} may only use the time `t`, "
                                f"not {', '.join(sorted(extra))}.")
        f = sp.lambdify(t, expr, modules="numpy")
        self.fn = lambda tt: np.broadcast_to(np.asarray(f(tt), dtype=float), np.shape(tt))
        self.text = str(expr)

    def __call__(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        with np.errstate(all="ignore"):  # a pole (1/(t - 0.1)) is reported below, not warned about
            g = np.asarray(self.fn(t), dtype=float)
        g = np.broadcast_to(g, t.shape).astype(float)
        bad = ~np.isfinite(g) | (g < 0)
        if np.any(bad):
            i = int(np.flatnonzero(bad.ravel())[0])
            raise SettingsError(f"learning-rate schedule {self.text} must be finite and >= 0; "
                                f"at t = {t.ravel()[i]:g} it is {float(g.ravel()[i]):g}.")
        return g


def as_schedule(spec) -> Schedule | None:
    if spec is None or isinstance(spec, Schedule):
        return spec
    return Schedule(spec)
