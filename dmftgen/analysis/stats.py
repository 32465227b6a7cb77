r"""Statistics of the theory-vs-simulation verdict: Welch t tests, Bonferroni, fits in 1/d.

One comparison
--------------
At a tested time t_k an observable has a simulated value x (mean over S seeds, or the
d -> infinity intercept of a fit in 1/d) with standard error s_x on nu_x degrees of freedom, and
a DMFT value y with Monte Carlo error s_y on nu_y degrees of freedom (R - 1 for R replicas).
Without bias, x - y is centred and

.. math:: t = \frac{x - y}{\sqrt{s_x^2 + s_y^2}}

is referred to Student t with the conservative nu = min(nu_x, nu_y) degrees of freedom (Hsu's
bound: P(|t| > t_nu(q)) <= q for Gaussian data whatever the ratio of the variances). The
Welch--Satterthwaite estimate nu = (s_x^2 + s_y^2)^2 / (s_x^4/nu_x + s_y^4/nu_y) is itself random
and was measured anti-conservative in the far tail that a family test uses: with 4 seeds and 8
replicas, 3.5 % family false alarms at a nominal 1 % (tests/test_compare.py); with the minimum
the rate is below 1 %. Components with zero error (exact) do not count in the minimum.

The two-sided p-value is p = 2 P(T_nu > |t|); the *normal score* z_n = Phi^{-1}(F_nu(t)) is
exactly N(0, 1) under the null whatever nu (used to pool checks: RMS and mean of z_n).

The verdict
-----------
The K tests (observables x a few well-separated times, t = 0 and other exact points excluded) are
strongly correlated. Bonferroni's inequality bounds the family-wise false-alarm rate by alpha
whatever the correlation: p_family = min(1, K min_i p_i), DISAGREEMENT iff p_family < alpha.

Finite-size extrapolation
-------------------------
Means x_i at sizes d_i with errors s_i (independent seeds): the weighted least-squares fit
x_i = a + b / d_i (weights 1/s_i^2) gives a = sum_i c_i x_i with variance sum_i c_i^2 s_i^2 and,
conservatively (as above), nu_a = min_i nu_i degrees of freedom. The finite-size
bias at size d is b / d. For Gaussian seeds the sample sd is independent of the sample mean, so
estimated weights do not bias a.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as _st

__all__ = ["welch", "bonferroni", "fit_inv_d", "student_quantile", "verdict_word", "LEVEL"]

#: default family-wise level of the verdict (false-alarm rate of "DISAGREEMENT").
LEVEL = 0.01


def student_quantile(dof, q=0.975):
    """Student t quantile (inf dof -> normal); NaN for dof < 1."""
    dof = np.asarray(dof, dtype=float)
    with np.errstate(invalid="ignore"):
        out = np.where(dof >= 1, _st.t.ppf(q, np.where(dof >= 1, dof, 1.0)), np.nan)
    return out


def welch(x, sx, nux, y, sy, nuy):
    """Welch t statistics, conservative dof, two-sided p-values and normal scores, elementwise.

    Parameters
    ----------
    x, sx, nux : array_like
        Simulated value, its standard error and degrees of freedom (NaN se: not testable).
    y, sy, nuy : array_like
        DMFT value, its Monte Carlo error and degrees of freedom (NaN se: not testable).

    Returns
    -------
    dict of arrays ``t`` (signed), ``dof`` (min(nux, nuy) over the components with a non-zero
    error), ``p`` (two-sided), ``zn`` (normal score); NaN where
    not testable (a missing error, non-finite values, or both errors 0: an exact point).
    """
    x, sx, nux, y, sy, nuy = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (x, sx, nux, y, sy, nuy)))
    v = sx ** 2 + sy ** 2
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(v) & (v > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = np.minimum(np.where(sx > 0, nux, np.inf), np.where(sy > 0, nuy, np.inf))
        t = np.where(ok, (x - y) / np.sqrt(np.where(ok, v, 1.0)), np.nan)
    dof = np.where(ok, np.maximum(dof, 1.0), np.nan)
    tt = np.where(ok, t, 0.0)
    dd = np.where(ok, dof, 1.0)
    p = np.where(ok, 2.0 * _st.t.sf(np.abs(tt), dd), np.nan)
    # normal score via the smaller tail (no cancellation for large |t|)
    tail = _st.t.sf(np.abs(tt), dd)
    zn = np.where(ok, np.sign(tt) * -_st.norm.ppf(np.clip(tail, 1e-300, 0.5)), np.nan)
    return {"t": t, "dof": dof, "p": p, "zn": zn}


def bonferroni(p) -> tuple[float, int]:
    """(family p-value min(1, K min p), K) over the finite entries of ``p``; (nan, 0) if none."""
    p = np.asarray(p, dtype=float).ravel()
    p = p[np.isfinite(p)]
    if p.size == 0:
        return float("nan"), 0
    return float(min(1.0, p.size * p.min())), int(p.size)


def verdict_word(p_family, level=LEVEL) -> str:
    """"agreement", "marginal" (level <= p < 5 level) or "DISAGREEMENT" (p < level); "n/a"."""
    if not np.isfinite(p_family):
        return "n/a"
    if p_family < level:
        return "DISAGREEMENT"
    if p_family < 5 * level:
        return "marginal"
    return "agreement"


def fit_inv_d(ds, means, sems, dofs):
    r"""Weighted least-squares fit x = a + b / d at every time (and entry), with Welch dof.

    Parameters
    ----------
    ds : sequence of float, length I >= 2 (distinct)
    means, sems : arrays (I, ...)
        Means and standard errors at each size (NaN sem: the fit is NaN there).
    dofs : array_like (I,)
        Degrees of freedom of each sem (seeds used - 1).

    Returns
    -------
    dict ``a``, ``a_se``, ``a_dof``, ``b``, ``b_se`` (arrays of the trailing shape).
    """
    ds = np.asarray(ds, dtype=float)
    x = np.asarray(means, dtype=float)
    s = np.asarray(sems, dtype=float)
    nu = np.asarray(dofs, dtype=float).reshape((-1,) + (1,) * (x.ndim - 1))
    if len(ds) < 2 or len(set(ds.tolist())) < len(ds):
        raise ValueError("fit_inv_d needs >= 2 distinct sizes")
    u = (1.0 / ds).reshape((-1,) + (1,) * (x.ndim - 1))
    # tiny floor on the errors so that an exact entry (s = 0 at every size) stays finite
    s_eff = np.where(s > 0, s, np.nan)
    floor = 1e-12 * (1.0 + np.nanmax(np.abs(x), axis=0, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        s_eff = np.where(np.isnan(s_eff) & (s == 0), floor, s_eff)
        w = 1.0 / s_eff ** 2
        S0, S1, S2 = w.sum(0), (w * u).sum(0), (w * u * u).sum(0)
        det = S0 * S2 - S1 ** 2
        # a = sum c_i x_i with c_i = w_i (S2 - S1 u_i) / det;  b = sum e_i x_i, e_i = w_i (S0 u_i - S1) / det
        c = w * (S2 - S1 * u) / det
        e = w * (S0 * u - S1) / det
        a = (c * x).sum(0)
        b = (e * x).sum(0)
        va = (c ** 2 * s_eff ** 2).sum(0)
        vb = (e ** 2 * s_eff ** 2).sum(0)
        a_dof = np.broadcast_to(np.min(nu, axis=0), a.shape).astype(float)
    return {"a": a, "a_se": np.sqrt(va), "a_dof": a_dof, "b": b, "b_se": np.sqrt(vb)}


def pooled_z(zn) -> dict:
    """RMS and mean of normal scores with the standard error of the mean (1/sqrt(K))."""
    z = np.asarray(zn, dtype=float).ravel()
    z = z[np.isfinite(z)]
    K = z.size
    if K == 0:
        return {"n": 0, "rms": float("nan"), "mean": float("nan"), "mean_se": float("nan")}
    return {"n": int(K), "rms": float(math.sqrt(np.mean(z ** 2))), "mean": float(z.mean()),
            "mean_se": 1.0 / math.sqrt(K)}
