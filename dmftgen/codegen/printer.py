"""NumbaPrinter: sympy -> scalar ``math`` code that compiles under numba (strict: no silent comments).

Measured (sympy 1.12, numba 0.60): PythonCodePrinter's ``math.*`` calls and ``a if c else b``
ternaries compile; numpy-style printing of Piecewise/Heaviside/Max does not.
"""
import sympy as sp
from sympy.printing.precedence import precedence
from sympy.printing.pycode import PythonCodePrinter

from ..errors import CodegenError


class NumbaPrinter(PythonCodePrinter):
    """Scalar printer for numba kernels.

    Overrides: stable ``sigmoid``/``softplus`` helpers, float-typed Heaviside/sign, Piecewise
    with a guaranteed default branch, DiracDelta as its a.e. value 0, integer powers expanded
    for small exponents (with the base parenthesised: an early version printed ``(b+1)**2`` as
    ``b+1*b+1``), Rationals as float literals.
    """

    def __init__(self):
        super().__init__({"fully_qualified_modules": True, "strict": True, "standard": "python3"})

    def _print_sigmoid(self, e):
        return f"_sigmoid({self._print(e.args[0])})"

    def _print_softplus(self, e):
        return f"_softplus({self._print(e.args[0])})"

    def _print_DiracDelta(self, e):
        return "0.0"

    def _print_Heaviside(self, e):
        # The argument is printed once per branch test, so prefer the two-branch forms.
        a = self._print(e.args[0])
        h0 = e.args[1] if len(e.args) > 1 else sp.S.Half
        if h0 == 0:
            return f"(1.0 if {a} > 0.0 else 0.0)"
        if h0 == 1:
            return f"(1.0 if {a} >= 0.0 else 0.0)"
        return f"(1.0 if {a} > 0.0 else ({self._print(sp.Float(h0))} if {a} == 0.0 else 0.0))"

    def _print_sign(self, e):
        a = self._print(e.args[0])
        return f"(0.0 if {a} == 0.0 else math.copysign(1.0, {a}))"

    def _print_Piecewise(self, e):
        if e.args[-1].cond is not sp.true:
            e = sp.Piecewise(*e.args, (sp.nan, True))
        return super()._print_Piecewise(e)

    def _print_Rational(self, e):
        return repr(float(e))

    def _print_Half(self, e):
        return "0.5"

    def _print_Integer(self, e):
        return f"{int(e)}.0" if abs(int(e)) < 2**53 else repr(float(e))

    def _print_Float(self, e):
        return repr(float(e))

    def _print_Pow(self, e, rational=False):
        b, x = e.args
        if x.is_Integer and 2 <= int(x) <= 4:
            bb = self.parenthesize(b, precedence(sp.Mul(b, b, evaluate=False)))
            return "(" + "*".join([bb] * int(x)) + ")"
        if x == -1:
            return f"(1.0/{self.parenthesize(b, precedence(e))})"
        return super()._print_Pow(e, rational)

    def _print_Exp1(self, e):
        return "math.e"

    def _print_BooleanTrue(self, e):
        return "True"

    def _print_BooleanFalse(self, e):
        return "False"


_PRINTER = NumbaPrinter()


def print_expr(expr, where: str) -> str:
    """Print ``expr`` as numba-compatible Python; CodegenError names ``where`` on failure."""
    try:
        return _PRINTER.doprint(expr)
    except Exception as exc:  # sympy raises PrintMethodNotImplementedError / NotImplementedError
        raise CodegenError(f"cannot print `{expr}` in {where} as numba code (strict printer): {exc}") from exc


def count_ops(exprs) -> int:
    return int(sum(sp.count_ops(e) for e in exprs))
