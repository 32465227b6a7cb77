"""Stationary-regime theta-paths on lag kernels, for a declared regulariser H (HAS_REG, M <= 3).

Used by dmftgen/dmft/stationary_theta_mc.py (the Monte Carlo theta-side of the stationary solve).
The lines above the marker only make this file readable on its own; ``h_row`` and ``jac_h_row``
are the generated regulariser kernels of the model.
"""
import numpy as np
from numba import njit, prange

M = K = 1


def h_row(th, p, out):  # pragma: no cover - stand-ins, replaced by the generated kernels
    raise NotImplementedError


def jac_h_row(th, p, out):  # pragma: no cover
    raise NotImplementedError


# --- template body ---


@njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath={"reassoc", "contract"})
def dmft_stationary_theta(Kl, K_tail, U, ths, nu, p, lam, dt, sources, bounds, th, rsum, bad):
    """theta-paths of the stationary DMFT on lag kernels: see dmftgen/dmft/stationary_theta_mc.py.

    Shapes: Kl (W+1, M, M) the lag kernel K(u), K_tail (M, M) = sum_{u > W} K(u), U (P, L, M) the
    noise increments, ths (P, K) teacher rows, nu (M, K); outputs th (P, L, M) the paths,
    rsum (G, W+1, M, M) the sum of the tangents over the group's sources, bad (G,).

    Every path starts at 0 and follows

        theta_{k+1} = theta_k - dt (h(theta_k) + lam theta_k) - dt sum_{n=0}^{min(k, W)} K(n) theta_{k-n}
                      - dt K_tail (mean of theta_{k-n} over W < n <= 2W) - dt nu theta* + U_k

    (the memory beyond the window continued as the r-side continues R). At each source l the
    forward tangent T_n = d theta_{l+n} / d U_l (m x m: all columns at once) is

        T_1 = I,   T_{j+1} = T_j - dt B(theta_{l+j}) T_j - dt sum_{i=1}^{j} K(j - i) T_i,
        B = grad h + lam I,

    for n <= W (the tail term acts on lags > W only), and rsum accumulates T_n: R(n) = <T_n>.
    """
    G = bounds.shape[0] - 1
    L = U.shape[1]
    W = Kl.shape[0] - 1
    KT = ths.shape[1]
    for g in prange(G):
        hv = np.empty(M)
        jh = np.empty((M, M))
        tail = np.zeros(M)
        T = np.zeros((W + 1, M, M))
        acc = np.empty((M, M))
        for i in range(bounds[g], bounds[g + 1]):
            for b in range(M):
                th[i, 0, b] = 0.0
                tail[b] = 0.0  # sum of theta over lags W+1 .. 2W
            blown = False
            for k in range(L - 1):
                h_row(th[i, k], p, hv)
                nmax = min(k, W)
                if k - W - 1 >= 0:
                    for b in range(M):
                        tail[b] += th[i, k - W - 1, b]
                if k - 2 * W - 1 >= 0:
                    for b in range(M):
                        tail[b] -= th[i, k - 2 * W - 1, b]
                for b in range(M):
                    mem = 0.0
                    for n in range(nmax + 1):
                        for c in range(M):
                            mem += Kl[n, b, c] * th[i, k - n, c]
                    if k > 2 * W:
                        for c in range(M):
                            mem += K_tail[b, c] * tail[c] / W
                    for j in range(KT):
                        mem += nu[b, j] * ths[i, j]
                    x = th[i, k, b] - dt * (hv[b] + lam * th[i, k, b] + mem) + U[i, k, b]
                    th[i, k + 1, b] = x
                    if not (abs(x) < 1e150):
                        blown = True
                if blown:
                    bad[g] = 1
                    break
            if blown:
                continue
            for si in range(sources.shape[0]):
                l = sources[si]
                for b in range(M):
                    for c in range(M):
                        T[0, b, c] = 0.0
                        T[1, b, c] = 1.0 if b == c else 0.0
                        rsum[g, 1, b, c] += T[1, b, c]
                for j in range(1, W):
                    jac_h_row(th[i, l + j], p, jh)
                    for b in range(M):
                        for c in range(M):
                            t = T[j, b, c]
                            for e in range(M):
                                t -= dt * (jh[b, e] + (lam if b == e else 0.0)) * T[j, e, c]
                            acc[b, c] = t
                    for q in range(1, j + 1):
                        for b in range(M):
                            for e in range(M):
                                kv = dt * Kl[j - q, b, e]
                                for c in range(M):
                                    acc[b, c] -= kv * T[q, e, c]
                    for b in range(M):
                        for c in range(M):
                            T[j + 1, b, c] = acc[b, c]
                            rsum[g, j + 1, b, c] += acc[b, c]
