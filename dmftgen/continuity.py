"""Does ell jump? A numerical probe of the derived loss gradient along random lines.

The DMFT needs ell Lipschitz in the student field r (its Jacobian enters Gamma and R_ell; a jump
in r gives them a Dirac part that the solver cannot represent: e.g. least absolute deviations,
ell = sign(r - y)), and it needs to know whether ell jumps in the teacher field s (labels such as
sign(s): the pathwise teacher drift then misses the jump and the Stein estimator is used).

Symbolic inspection alone is misleading both ways: Huber's ell = Piecewise(e, |e| <= c; c sign(e))
contains ``sign`` yet is continuous, while a Piecewise with mismatched branches jumps. So a cheap
symbolic pre-filter (does ell contain a non-smooth function of these variables at all?) is followed
by a numerical test on the lambdified ell: along random lines x0 + t u in the r (or s) subspace,
t in [-6, 6] on 2049 points, every step whose increment stands out from its neighbours is bisected
45 times; a jump keeps an increment of the order of its height, a continuous function's increment
shrinks with the interval (below 1e-8 (1 + |ell|)). Jumps where the base point's Gaussian has no
mass (|t| > 6 scales) are not seen, by design: they do not affect the dynamics.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

_NONSMOOTH = (sp.Abs, sp.sign, sp.Heaviside, sp.floor, sp.ceiling, sp.Piecewise, sp.Max, sp.Min,
              sp.DiracDelta)


def _nonsmooth_in(exprs, syms) -> bool:
    syms = set(syms)
    for e in exprs:
        for node in sp.preorder_traversal(e):
            if isinstance(node, _NONSMOOTH) and node.free_symbols & syms:
                return True
    return False


def _lambdify(model, exprs):
    from scipy.special import expit

    args = list(model.student) + list(model.teacher) + list(model.noise_symbols) + list(model.params)
    mods = [{"sigmoid": expit, "softplus": lambda x: np.logaddexp(0.0, x)}, "numpy", "scipy"]
    f = sp.lambdify(args, list(exprs), modules=mods)
    return f, len(args)


def find_jump(model, exprs, which: str, trials: int = 48, seed: int = 0) -> str:
    """A description of a jump of ``exprs`` (e.g. ell) in the ``which`` = "student" or "teacher"
    field, or "" if none is found.

    Parameters
    ----------
    model : dmftgen.model.Model
    exprs : sequence of sympy expressions in the model's symbols
    which : {"student", "teacher"}
    trials : int
        Random lines probed; base points r ~ N(0, 1.5^2), s ~ N(0, 1.5^2), noise from its law,
        parameters at their defaults.
    """
    syms = list(model.student if which == "student" else model.teacher)
    if not syms or not _nonsmooth_in(exprs, syms):
        return ""
    f, nargs = _lambdify(model, exprs)
    rng = np.random.default_rng(seed)
    m, k = model.m, model.k
    nz = len(model.noise_symbols)
    base = np.empty((trials, nargs))
    base[:, : m + k] = 1.5 * rng.standard_normal((trials, m + k))
    for j, law in enumerate(model.noise.values()):
        base[:, m + k + j] = law.sample(rng, trials)
    base[:, m + k + nz:] = [float(v) for v in model.params.values()]
    off = 0 if which == "student" else m
    u = rng.standard_normal((trials, len(syms)))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    t = np.linspace(-6.0, 6.0, 2049)

    def ev(b, v, tt):
        """ell at b + tt v (one line per row of b, v), tt of shape (lines, n): (lines, n, outputs)."""
        x = np.repeat(b[:, None, :], tt.shape[1], axis=1)
        x[:, :, off:off + len(syms)] += tt[:, :, None] * v[:, None, :]
        with np.errstate(all="ignore"):
            vals = f(*[x[:, :, i] for i in range(nargs)])
        return np.stack([np.broadcast_to(np.asarray(val, float), tt.shape) for val in vals], axis=-1)

    y = ev(base, u, np.repeat(t[None, :], trials, axis=0))
    d = np.abs(np.diff(y, axis=1)).max(axis=2)                    # (trials, 2048)
    nb = np.maximum(np.pad(d, ((0, 0), (1, 0)))[:, :-1], np.pad(d, ((0, 0), (0, 1)))[:, 1:])
    cand = np.argwhere((d > 4.0 * nb + 1e-9) | ~np.isfinite(d))
    if cand.size == 0:
        return ""
    lo = t[cand[:, 1]][:, None].copy()
    hi = t[cand[:, 1] + 1][:, None].copy()
    rows = cand[:, 0]
    sub_base, sub_u = base[rows], u[rows]

    ya, yb = ev(sub_base, sub_u, lo), ev(sub_base, sub_u, hi)
    for _ in range(45):  # keep the half with the larger increment; only the midpoint is new
        mid = 0.5 * (lo + hi)
        ym = ev(sub_base, sub_u, mid)
        go_left = (np.abs(ym - ya).max(axis=2) >= np.abs(yb - ym).max(axis=2))[:, :, None]
        hi, yb = np.where(go_left[:, :, 0], mid, hi), np.where(go_left, ym, yb)
        lo, ya = np.where(go_left[:, :, 0], lo, mid), np.where(go_left, ya, ym)
    gap = np.abs(yb - ya).max(axis=2)[:, 0]
    size = 1.0 + np.maximum(np.abs(ya), np.abs(yb)).max(axis=2)[:, 0]
    jump = (gap > 1e-8 * size) | ~np.isfinite(gap)
    if not jump.any():
        return ""
    i = int(np.argmax(np.where(jump, gap, -1.0)))
    point = sub_base[i, off:off + len(syms)] + lo[i, 0] * sub_u[i]
    names = ", ".join(f"{s.name} = {v:.3g}" for s, v in zip(syms, point))
    return f"jumps by {gap[i]:.3g} at {names}"
