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

import numpy as np

from ..errors import SettingsError


class Schedule:
    """gamma(t), vectorised over numpy arrays; ``text`` is what goes into the result metadata.

    Parameters
    ----------
    spec : str or callable
        A formula in ``t`` (sympy syntax, e.g. ``"1/(1 + t)"``, ``"exp(-t/4)"``,
        ``"Piecewise((1, t < 2), (0.1, True))"``) or a Python callable taking an ndarray of times.
    """

    def __init__(self, spec):
        if callable(spec):
            self.fn = spec
            self.text = getattr(spec, "__name__", repr(spec))
            return
        import sympy as sp

        t = sp.Symbol("t", real=True)
        try:
            expr = sp.sympify(str(spec), locals={"t": t})
        except (sp.SympifyError, SyntaxError, TypeError) as exc:
            raise SettingsError(f"learning-rate schedule {spec!r} is not a formula in t "
                                f"(e.g. '1/(1+t)'): {exc}") from None
        extra = expr.free_symbols - {t}
        if extra:
            raise SettingsError(f"learning-rate schedule {spec!r} may only use the time `t`, "
                                f"not {', '.join(sorted(map(str, extra)))}.")
        f = sp.lambdify(t, expr, modules="numpy")
        self.fn = lambda tt: np.broadcast_to(np.asarray(f(tt), dtype=float), np.shape(tt))
        self.text = str(expr)

    def __call__(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        g = np.asarray(self.fn(t), dtype=float)
        g = np.broadcast_to(g, t.shape).astype(float)
        bad = ~np.isfinite(g) | (g < 0)
        if np.any(bad):
            i = int(np.flatnonzero(bad.ravel())[0])
            raise SettingsError(f"learning-rate schedule {self.text} must be finite and >= 0; "
                                f"at t = {t.ravel()[i]:g} it is {g.ravel()[i]!r}.")
        return g


def as_schedule(spec) -> Schedule | None:
    if spec is None or isinstance(spec, Schedule):
        return spec
    return Schedule(spec)
