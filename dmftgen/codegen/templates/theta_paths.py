"""Monte Carlo theta-side of the DMFT for a nonlinear regulariser (only in models that declare one).

Pasted after the template-body marker into ``generated/<model>.py`` of models with a regulariser
H (``HAS_REG``); driven by ``dmftgen/dmft/theta.py`` (``ThetaMC``).  The theta-paths
follow theta_{k+1} = theta_k - dt (h(theta_k) + lam theta_k) - dt sum_{l<=k} K_ell[k, l] theta_l
- ... (docs/theory.md, "The theta-side"); this kernel gives one row of their response by the
adjoint recursion, so ``jac_h_row`` is inlined.
"""

import numpy as np
from numba import njit, prange

M = 1


def jac_h_row(th, p, out):  # pragma: no cover - stand-in, replaced by the generated kernel
    raise NotImplementedError


# --- template body ---


@njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath={"reassoc", "contract"})
def dmft_theta_adjoint(n, th, p, lam, dt, KlT, bounds, B_hist, rsum):
    """Row n of R_theta from the theta-paths when h is nonlinear (HAS_REG), by the adjoint recursion.

    theta_{k+1} = theta_k - dt (h(theta_k) + lam theta_k) - dt sum_{l<=k} K_ell[k, l] theta_l - ...;
    Phi[n, l] = d theta_n / d(forcing at step l) = Psi_{l+1}, with Psi_n = I and, backwards,

        Psi_j = Psi_{j+1} (I - dt B_j) - dt sum_{q=j}^{n-1} Psi_{q+1} K_ell[q, j],
        B_j = grad h(theta_j) + lam I.

    ``th`` (P_theta, (N+1) M) flat theta history (rows <= n-1 used); ``KlT`` the transpose of the
    flat K_ell; ``B_hist`` (P_theta, N+1, M, M) is filled at j = n - 1 here; ``rsum`` (G, M, NN)
    receives sum over the group's paths of Phi[n, l] at columns l*M + b (l < n).
    """
    G = bounds.shape[0] - 1
    NN = KlT.shape[0]
    for g in prange(G):
        th_row = np.empty(M)
        jh = np.empty((M, M))
        Ps = np.zeros((M, NN))
        acc = np.empty((M, M))
        for i in range(bounds[g], bounds[g + 1]):
            j = n - 1
            for a in range(M):
                th_row[a] = th[i, j * M + a]
            jac_h_row(th_row, p, jh)
            for a in range(M):
                for b in range(M):
                    B_hist[i, j, a, b] = jh[a, b] + (lam if a == b else 0.0)
            # Ps block q holds Psi_{q+1} = Phi[n, q]
            for a in range(M):
                for b in range(M):
                    Ps[a, (n - 1) * M + b] = 1.0 if a == b else 0.0
            for jj in range(n - 1, 0, -1):
                # memory part: sum_{q=jj}^{n-1} Psi_{q+1} K[q, jj]
                for a in range(M):
                    for c in range(M):
                        t = 0.0
                        for col in range(jj * M, n * M):
                            t += Ps[a, col] * KlT[jj * M + c, col]
                        acc[a, c] = t
                for a in range(M):
                    for c in range(M):
                        t = Ps[a, jj * M + c]
                        for b in range(M):
                            t -= dt * Ps[a, jj * M + b] * B_hist[i, jj, b, c]
                        Ps[a, (jj - 1) * M + c] = t - dt * acc[a, c]
            for a in range(M):
                for col in range(n * M):
                    rsum[g, a, col] += Ps[a, col]
