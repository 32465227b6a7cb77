"""Stationary-regime DMFT path kernel, copied into every generated module (docs/kernels.md).

Used by dmftgen/dmft/stationary_dmft.py (solve_stationary). The lines above the marker only
make this file readable on its own. Any student width M and teacher width K (module globals of
the generated file); all kernels are M x M per lag, ell r*^T is M x K.
"""
import numpy as np
from numba import njit, prange

M = K = NMET = 1


def ell_jac_row(r, s, z, p, g, J):  # pragma: no cover - stand-ins, replaced by the generated kernels
    raise NotImplementedError


def loss_row(r, s, z, p):  # pragma: no cover
    raise NotImplementedError


def metrics_row(r, s, z, p, out):  # pragma: no cover
    raise NotImplementedError


# --- template body ---


@njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath={"reassoc", "contract"})
def dmft_stationary_paths(R, R_tail, w, s, z, dB, p, inv_delta, dt, sq, burn, targets, gam_cv, bounds,
                          gam, els, loss, rl, ll, met, dL, kl, klcv, bad):
    """Stationary DMFT r-side on lag kernels: see dmftgen/dmft/stationary_dmft.py.

    Shapes: R (W+1, M, M), R_tail (M, M), w (P, L, M), s (P, K), z (P, NZ), dB (P, L),
    gam_cv (M, M); output dL (P, L, M) (the increments of every path); accumulators per path
    group g: gam, rl, ll (G, M, M), els (G, M, K), loss (G,), met (G, max(NMET, 1)),
    kl, klcv (G, W+1, M, M), bad (G,).

    For each path (prange over path groups) the r-process with the truncated lag memory
    r_k = w_k - (1/delta) [sum_{n=1..W} R[n] dL_{k-n} + R_tail (mean dL over lags W+1..2W)],
    dL_k = ell_k (dt + sq dB_k); after ``burn`` steps it accumulates Gamma, E[ell r*^T], the loss,
    E[r ell^T], E[ell ell^T], the metrics and, at the ``targets``, the lag response kernel by the
    adjoint tangent Z_v = -(1/delta) (sum_{v'<v} Z_{v'} R[v - v']) a_{k-v}, Z_0 = grad ell(r_k),
    a_l = grad ell(r_l) (dt + sq dB_l) (kl), with its control variate (klcv: grad ell -> gam_cv).
    The lag covariance of the increments is left to the caller (FFT over the stored dL).
    """
    G = bounds.shape[0] - 1
    P = w.shape[0]
    L = w.shape[1]
    W = R.shape[0] - 1
    for g in prange(G):
        r = np.empty(M)
        ell = np.empty(M)
        jac = np.empty((M, M))
        mt = np.empty(max(NMET, 1))
        a = np.zeros((L, M, M))
        gk = np.zeros((L, M, M))
        Z = np.zeros((W + 1, M, M))
        Zc = np.zeros((W + 1, M, M))
        t1 = np.zeros((M, M))
        t2 = np.zeros((M, M))
        tail_sum = np.zeros(M)
        for i in range(bounds[g], bounds[g + 1]):
            for b in range(M):
                tail_sum[b] = 0.0  # sum of dL over lags W+1 .. 2W (the memory beyond the window)
            blown = False
            for k in range(L):
                nmax = min(k, W)
                for b in range(M):
                    mem = 0.0
                    for n in range(1, nmax + 1):
                        for c in range(M):
                            mem += R[n, b, c] * dL[i, k - n, c]
                    if k - W - 1 >= 0:
                        tail_sum[b] += dL[i, k - W - 1, b]
                    if k - 2 * W - 1 >= 0:
                        tail_sum[b] -= dL[i, k - 2 * W - 1, b]
                    r[b] = mem
                if k > 2 * W:
                    # geometric tail of R beyond the window acting on the path's recent mean dL
                    for b in range(M):
                        for c in range(M):
                            r[b] += R_tail[b, c] * tail_sum[c] / W
                for b in range(M):
                    r[b] = w[i, k, b] - inv_delta * r[b]
                    if not (abs(r[b]) < 1e150):
                        blown = True
                if blown:
                    bad[g] = 1
                    break
                ell_jac_row(r, s[i], z[i], p, ell, jac)
                fac = dt + sq * dB[i, k]
                for b in range(M):
                    dL[i, k, b] = ell[b] * fac
                    for c in range(M):
                        a[k, b, c] = jac[b, c] * fac
                        gk[k, b, c] = jac[b, c]
                if k >= burn:
                    loss[g] += loss_row(r, s[i], z[i], p)
                    for b in range(M):
                        for c in range(M):
                            gam[g, b, c] += jac[b, c]
                            rl[g, b, c] += r[b] * ell[c]
                            ll[g, b, c] += ell[b] * ell[c]
                        for j in range(K):
                            els[g, b, j] += ell[b] * s[i, j]
                    if NMET > 0:
                        metrics_row(r, s[i], z[i], p, mt)
                        for c in range(NMET):
                            met[g, c] += mt[c]
            if blown:
                continue
            for tk in range(targets.shape[0]):
                k = targets[tk]
                for b in range(M):
                    for c in range(M):
                        Z[0, b, c] = gk[k, b, c]
                        Zc[0, b, c] = gam_cv[b, c]
                        kl[g, 0, b, c] += Z[0, b, c]
                        klcv[g, 0, b, c] += Zc[0, b, c]
                for v in range(1, W + 1):
                    for b in range(M):
                        for c in range(M):
                            t1[b, c] = 0.0
                            t2[b, c] = 0.0
                    for vp in range(v):
                        for b in range(M):
                            for e in range(M):
                                z1 = Z[vp, b, e]
                                z2 = Zc[vp, b, e]
                                for c in range(M):
                                    t1[b, c] += z1 * R[v - vp, e, c]
                                    t2[b, c] += z2 * R[v - vp, e, c]
                    l = k - v
                    f2 = -inv_delta * (dt + sq * dB[i, l])
                    for b in range(M):
                        for c in range(M):
                            x1 = 0.0
                            x2 = 0.0
                            for e in range(M):
                                x1 += t1[b, e] * a[l, e, c]
                                x2 += t2[b, e] * gam_cv[e, c]
                            Z[v, b, c] = -inv_delta * x1
                            Zc[v, b, c] = f2 * x2
                            kl[g, v, b, c] += Z[v, b, c]
                            klcv[g, v, b, c] += Zc[v, b, c]
