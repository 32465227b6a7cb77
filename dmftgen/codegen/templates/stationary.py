"""Stationary-regime DMFT path kernel, copied into every generated module (docs/kernels.md).

Used by dmftgen/dmft/stationary_dmft.py (solve_stationary). The lines above the marker only
make this file readable on its own.
"""
import numpy as np
from numba import njit, prange

NMET = 0


def ell_jac_row(r, s, z, p, g, J):  # pragma: no cover - stand-ins, replaced by the generated kernels
    raise NotImplementedError


def loss_row(r, s, z, p):  # pragma: no cover
    raise NotImplementedError


def metrics_row(r, s, z, p, out):  # pragma: no cover
    raise NotImplementedError


# --- template body ---


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def dmft_stationary_paths(R, R_tail, w, s, z, dB, p, inv_delta, dt, sq, burn, targets, gam_cv, bounds,
                          gam, els, loss, rl, ll, met, su, sfar, kl, klcv, bad):
    """Stationary DMFT r-side on lag kernels (m = 1, k = 1): see dmftgen/dmft/stationary_dmft.py.

    For each path (prange over path groups) the r-process with the truncated lag memory
    r_k = w_k - (1/delta) [sum_{n=1..W} R[n] dL_{k-n} + geometric tail], dL_k = ell_k (dt + sq dB_k);
    after ``burn`` steps it accumulates Gamma, E[ell r*], the loss, E[r ell], E[ell^2], the metrics,
    the lag covariance of dL (su, and its static far-lag part sfar) and, at the ``targets``, the
    lag response kernel by the adjoint tangent (kl) with its control variate (klcv).
    """
    G = bounds.shape[0] - 1
    P, L = w.shape
    W = R.shape[0] - 1
    for g in prange(G):
        r = np.empty(1)
        ell = np.empty(1)
        jac = np.empty((1, 1))
        mt = np.empty(max(NMET, 1))
        dL = np.zeros(L)
        a = np.zeros(L)
        gk = np.zeros(L)
        Z = np.zeros(W + 1)
        Zc = np.zeros(W + 1)
        for i in range(bounds[g], bounds[g + 1]):
            tail_sum = 0.0  # sum of dL over lags W+1 .. 2W (the memory beyond the window)
            for k in range(L):
                mem = 0.0
                nmax = min(k, W)
                for n in range(1, nmax + 1):
                    mem += R[n] * dL[k - n]
                if k - W - 1 >= 0:
                    tail_sum += dL[k - W - 1]
                if k - 2 * W - 1 >= 0:
                    tail_sum -= dL[k - 2 * W - 1]
                if k > 2 * W:
                    # geometric tail of R beyond the window acting on the path's recent mean dL
                    mem += R_tail * tail_sum / W
                r[0] = w[i, k] - inv_delta * mem
                if not (abs(r[0]) < 1e150):
                    bad[g] = 1
                    break
                ell_jac_row(r, s[i], z[i], p, ell, jac)
                fac = dt + sq * dB[i, k]
                dL[k] = ell[0] * fac
                a[k] = jac[0, 0] * fac
                gk[k] = jac[0, 0]
                if k >= burn:
                    gam[g] += jac[0, 0]
                    els[g] += ell[0] * s[i, 0]
                    loss[g] += loss_row(r, s[i], z[i], p)
                    rl[g] += r[0] * ell[0]
                    ll[g] += ell[0] * ell[0]
                    if NMET > 0:
                        metrics_row(r, s[i], z[i], p, mt)
                        for c in range(NMET):
                            met[g, c] += mt[c]
                    for u in range(W + 1):
                        su[g, u] += dL[k] * dL[k - u]
                    # far lags W < u <= 2W: the static (quenched) part of S_U
                    for u in range(W + 1, 2 * W + 1):
                        sfar[g] += dL[k] * dL[k - u]
            for tk in range(targets.shape[0]):
                k = targets[tk]
                Z[0] = gk[k]
                Zc[0] = gam_cv
                kl[g, 0] += Z[0]
                klcv[g, 0] += Zc[0]
                for v in range(1, W + 1):
                    t1 = 0.0
                    t2 = 0.0
                    for vp in range(v):
                        t1 += Z[vp] * R[v - vp]
                        t2 += Zc[vp] * R[v - vp]
                    l = k - v
                    Z[v] = -inv_delta * t1 * a[l]
                    Zc[v] = -inv_delta * t2 * gam_cv * (dt + sq * dB[i, l])
                    kl[g, v] += Z[v]
                    klcv[g, v] += Zc[v]

