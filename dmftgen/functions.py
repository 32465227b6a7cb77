"""Numerically stable primitives usable in model declarations: ``sigmoid`` and ``softplus``.

sympy's own ``1/(1+exp(-x))`` differentiates into ``exp(-x)/(1+exp(-x))**2``, which is NaN at
x = -800 (inf/inf).  These Function subclasses carry their derivatives in the stable form
sigma'(x) = sigma(x) sigma(-x) and are printed as calls to branchy helpers that never overflow.
"""
import sympy as sp


class sigmoid(sp.Function):
    """Logistic function sigma(x) = 1 / (1 + exp(-x))."""

    nargs = 1

    def fdiff(self, argindex=1):
        a = self.args[0]
        # sigma * (1 - sigma) cancels catastrophically for large x; sigma(x) sigma(-x) does not.
        return sigmoid(a) * sigmoid(-a)

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return 1 / (1 + sp.exp(-x))

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _eval_evalf(self, prec):
        # numeric evaluation (model probe points) of arguments such as erf(r0/sqrt(2))
        return self.rewrite(sp.exp)._eval_evalf(prec)


class softplus(sp.Function):
    """softplus(x) = log(1 + exp(x)), the logistic loss primitive."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.log(1 + sp.exp(x))

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    def _eval_evalf(self, prec):
        return self.rewrite(sp.exp)._eval_evalf(prec)


#: Functions a model may use beyond sympy's elementary ones; the printer knows each of them.
KNOWN_FUNCTIONS = {"sigmoid": sigmoid, "softplus": softplus}
