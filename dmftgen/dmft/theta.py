"""theta-side of the discrete-time DMFT for a linear regulariser h = lam*theta (deterministic).

With the r-side kernels K_ell[k, l] (K_ell[k, k] = Gamma_k, K_ell[k, l] ~ R_ell(t_k, t_l) dt), the
teacher drift nu[k] (m x k) and the noise covariance S_U, one theta row obeys (docs/theory.md §2)::

    theta_{k+1} = (1 - lam dt) theta_k - dt sum_{l<=k} K_ell[k, l] theta_l - dt nu[k] theta* + dU_k,

hence theta_k = Phi0[k] theta^0 + Phis[k] theta* + sum_{m<k} R_theta[k, m] dU_m with

    Phi0[k+1]       = (1 - lam dt) Phi0[k] - dt sum_{l<=k} K_ell[k, l] Phi0[l],          Phi0[0] = I
    Phis[k+1]       = (1 - lam dt) Phis[k] - dt sum_{l<=k} K_ell[k, l] Phis[l] - dt nu[k], Phis[0] = 0
    R_theta[k+1, m] = (1 - lam dt) R_theta[k, m] - dt sum_{m<l<=k} K_ell[k, l] R_theta[l, m] + 1{m=k} I
    C_theta         = Phi0 Sigma0 Phi0^T + Phis rho Phis^T + R_theta S_U R_theta^T    (theta^0 indep. theta*)
    M[k]            = Phis[k] rho.

Everything is stored as flat block matrices (row k*m + a). The teacher drift is either given
(pathwise estimator, or deterministic), or computed row by row with the Stein identity
(docs/theory.md §3, re-derived for discrete time and general m, k in dmftgen/dmft/solver.py):

    nu[k] = ( <ell_k r*^T> - sum_{l<=k} K_ell[k, l] M[l] ) rho^{-1}.
"""
from __future__ import annotations

import numpy as np

from ._linalg import det_tangent_row


class ThetaSide:
    """Flat-block theta-side state: R_theta, its transpose, Phi0, Phis, K_ell and nu.

    Parameters
    ----------
    N, m, k : int
        Steps, student width, teacher width.
    lam, dt, delta : float
    rho : (k, k) teacher covariance; ``sigma0`` : (m, m) initial covariance.
    A : (m, m) array or None
        Constant Jacobian of a LINEAR_ELL model: K_ell is then computed here, deterministically.
    D : (m, k) array or None
        Constant d ell / d r* (with A given): nu is then deterministic, nu_k = D + A E psi_k.
    """

    def __init__(self, N, m, k, lam, dt, delta, rho, sigma0, A=None, D=None):
        self.N, self.m, self.k = N, m, k
        self.lam, self.dt, self.delta = lam, dt, delta
        self.rho = np.asarray(rho, float).reshape(k, k)
        self.rho_inv = np.linalg.pinv(self.rho) if k else self.rho
        self.sigma0 = np.asarray(sigma0, float).reshape(m, m)
        self.A = None if A is None else np.ascontiguousarray(A, dtype=float)
        self.D = None if D is None else np.asarray(D, float).reshape(m, k)
        NN = (N + 1) * m
        self.R = np.zeros((NN, NN))
        self.RT = np.zeros((NN, NN))
        self.Kl = np.zeros((NN, NN))
        self.Phi0 = np.zeros((NN, m))
        self.Phi0[:m] = np.eye(m)
        self.Phis = np.zeros((NN, k))
        self.nu = np.zeros((N + 1, m, k))
        self.Eb = np.zeros((NN, k))      # deterministic-nu helper: (D + A E psi_m) dt
        self._row = np.zeros((m, NN))

    # -- one time row ----------------------------------------------------------------------------
    def M_flat(self, upto: int) -> np.ndarray:
        """Teacher overlaps M[l] = Phis[l] rho for l < upto, flat ((upto) m, k)."""
        return self.Phis[: upto * self.m] @ self.rho

    def set_kernels(self, k, gamma=None, kl_off=None, ells=None, dsl=None, nu=None):
        """Fill K_ell row k and nu[k] from the r-side estimates of step k.

        gamma (m, m): Gamma_k (ignored if deterministic); kl_off (m, k m): K_ell[k, :k] (ignored if
        deterministic); ells (m, k): <ell_k r*^T> (Stein); dsl (m, k): <d_s ell_k + grad ell psi_k>
        (pathwise); nu: given directly (overrides).
        """
        m = self.m
        rk = slice(k * m, (k + 1) * m)
        if self.A is not None:
            self.Kl[rk, rk] = self.A
            if k > 0:
                A_seq = np.broadcast_to(self.A, (k,) + self.A.shape)  # G[l] = A for every l < k
                det_tangent_row(k, self.RT, A_seq, self.A, self.delta, self.dt, self._row)
                self.Kl[rk, : k * m] = self._row[:, : k * m]
        else:
            self.Kl[rk, rk] = gamma
            if k > 0:
                self.Kl[rk, : k * m] = kl_off
        if self.k == 0:
            return
        if nu is not None:
            self.nu[k] = nu
        elif self.D is not None and self.A is not None:
            # E psi_k = -(1/delta) sum_{m<k} R_theta[k, m] (D + A E psi_m) dt
            Epsi = -(self.R[rk, : k * m] @ self.Eb[: k * m]) / self.delta
            self.nu[k] = self.D + self.A @ Epsi
            self.Eb[rk] = self.nu[k] * self.dt
        elif ells is not None:
            Mf = self.M_flat(k + 1)
            self.nu[k] = (ells - self.Kl[rk, : (k + 1) * m] @ Mf) @ self.rho_inv
        else:
            self.nu[k] = dsl

    def advance(self, k):
        """Row k + 1 of R_theta, Phi0, Phis from K_ell rows <= k and nu[k]."""
        m, dt = self.m, self.dt
        a = 1.0 - self.lam * dt
        s0 = slice(0, (k + 1) * m)
        rk = slice(k * m, (k + 1) * m)
        rk1 = slice((k + 1) * m, (k + 2) * m)
        Kk = self.Kl[rk, s0]
        self.R[rk1, s0] = a * self.R[rk, s0] - dt * (Kk @ self.R[s0, s0])
        self.R[rk1, rk] += np.eye(m)
        self.RT[s0, rk1] = self.R[rk1, s0].T
        self.Phi0[rk1] = a * self.Phi0[rk] - dt * (Kk @ self.Phi0[s0])
        if self.k:
            self.Phis[rk1] = a * self.Phis[rk] - dt * (Kk @ self.Phis[s0]) - dt * self.nu[k]

    # -- whole horizon ---------------------------------------------------------------------------
    def run(self, gamma=None, kl=None, ells=None, dsl=None, nu=None, upto=None):
        """Forward pass over all rows with the given r-side kernels (fixed point, jackknife).

        gamma (N+1, m, m); kl flat (NN, NN) (off-diagonal blocks used); ells / dsl / nu (N+1, m, k).
        """
        m = self.m
        N = self.N if upto is None else upto
        for k in range(N + 1):
            self.set_kernels(
                k,
                gamma=None if gamma is None else gamma[k],
                kl_off=None if kl is None else kl[k * m:(k + 1) * m, : k * m],
                ells=None if ells is None else ells[k],
                dsl=None if dsl is None else dsl[k],
                nu=None if nu is None else nu[k])
            if k < self.N:
                self.advance(k)
        return self

    # -- second moments --------------------------------------------------------------------------
    def C_theta_flat(self, S_U: np.ndarray, n: int | None = None) -> np.ndarray:
        """C_theta = Phi0 Sigma0 Phi0^T + Phis rho Phis^T + R S_U R^T for rows/cols < n (flat)."""
        m = self.m
        n = self.N + 1 if n is None else n
        NI = S_U.shape[0]
        Rr = self.R[: n * m, :NI]
        C = self.Phi0[: n * m] @ self.sigma0 @ self.Phi0[: n * m].T + Rr @ S_U @ Rr.T
        if self.k:
            C += self.Phis[: n * m] @ self.rho @ self.Phis[: n * m].T
        return 0.5 * (C + C.T)

    def Q_diag(self, S_U: np.ndarray) -> np.ndarray:
        """Q[k] = C_theta[k, k] (N+1, m, m) without forming all of C_theta."""
        m, N = self.m, self.N
        NI = S_U.shape[0]
        Rr = self.R[:, :NI]
        RS = Rr @ S_U
        P0 = self.Phi0.reshape(N + 1, m, m)
        Q = np.einsum("kab,bc,kdc->kad", P0, self.sigma0, P0)
        Q += np.einsum("kaj,kbj->kab", RS.reshape(N + 1, m, NI), Rr.reshape(N + 1, m, NI))
        if self.k:
            Ps = self.Phis.reshape(N + 1, m, self.k)
            Q += np.einsum("kaj,jl,kbl->kab", Ps, self.rho, Ps)
        return 0.5 * (Q + np.swapaxes(Q, 1, 2))

    def M_overlap(self) -> np.ndarray:
        """M[k] = E theta_k theta*^T = Phis[k] rho, shape (N+1, m, k)."""
        return (self.Phis @ self.rho).reshape(self.N + 1, self.m, self.k)


class ThetaMC:
    """theta-side by Monte Carlo theta-paths, for a nonlinear regulariser h (model HAS_REG).

    theta_{k+1} = theta_k - dt (h(theta_k) + lam theta_k) - dt sum_{l<=k} K_ell[k, l] theta_l
                  - dt nu[k] theta* + dU_k,          dU = L_S eta (causal Cholesky of S_U),

    on P_theta paths with theta^0 ~ N(0, Sigma0), theta* ~ N(0, rho); R_theta = E Phi by the
    generated adjoint kernel ``dmft_theta_adjoint``; C_theta, M and rho are the empirical second
    moments of the theta-paths (an exact Gram matrix, so the r-side Gaussian built from them by a
    pivot-clipped incremental Cholesky is PSD by construction).
    """

    def __init__(self, kern, p, N, m, k, lam, dt, delta, th0, ths, eta, groups):
        self.kern, self.p = kern, p
        self.N, self.m, self.k = N, m, k
        self.lam, self.dt, self.delta = lam, dt, delta
        NN = (N + 1) * m
        Pt = th0.shape[0]
        self.Pt = Pt
        self.th = np.zeros((Pt, NN))
        self.th[:, :m] = th0
        self.ths = np.ascontiguousarray(ths)
        self.eta = eta                                   # (P_theta, N m)
        self.R = np.zeros((NN, NN))
        self.RT = np.zeros((NN, NN))
        self.Kl = np.zeros((NN, NN))
        self.KlT = np.zeros((NN, NN))
        self.nu = np.zeros((N + 1, m, k))
        self.B_hist = np.zeros((Pt, N + 1, m, m))
        self.bounds = np.linspace(0, Pt, groups + 1).round().astype(np.int64)
        self.rho = (ths.T @ ths) / Pt if k else np.zeros((0, 0))
        self.rho_inv = np.linalg.pinv(self.rho) if k else self.rho
        self.C = np.zeros((NN, NN))
        self.Mf = np.zeros((NN, k))
        self._moments(0)

    def _moments(self, k):
        m, Pt = self.m, self.Pt
        rk = slice(k * m, (k + 1) * m)
        row = self.th[:, rk].T @ self.th[:, : (k + 1) * m] / Pt
        self.C[rk, : (k + 1) * m] = row
        self.C[: (k + 1) * m, rk] = row.T
        if self.k:
            self.Mf[rk] = self.th[:, rk].T @ self.ths / Pt

    def set_kernels(self, k, gamma, kl_off=None, ells=None, dsl=None):
        m = self.m
        rk = slice(k * m, (k + 1) * m)
        self.Kl[rk, rk] = gamma
        if k > 0 and kl_off is not None:
            self.Kl[rk, : k * m] = kl_off
        self.KlT[:, rk] = self.Kl[rk, :].T
        if self.k == 0:
            return
        if ells is not None:
            self.nu[k] = (ells - self.Kl[rk, : (k + 1) * m] @ self.Mf[: (k + 1) * m]) @ self.rho_inv
        else:
            self.nu[k] = dsl

    def advance(self, k, L_S):
        """theta_{k+1} on every path, R_theta row k+1, C_theta row k+1 and M[k+1]."""
        m, dt = self.m, self.dt
        rk = slice(k * m, (k + 1) * m)
        rk1 = slice((k + 1) * m, (k + 2) * m)
        thk = np.ascontiguousarray(self.th[:, rk])
        h = np.empty_like(thk)
        self.kern.h_batch(thk, self.p, h)
        drift = h + self.lam * thk + self.th[:, : (k + 1) * m] @ self.Kl[rk, : (k + 1) * m].T
        if self.k:
            drift += self.ths @ self.nu[k].T
        dU = self.eta[:, : (k + 1) * m] @ L_S[rk, : (k + 1) * m].T
        self.th[:, rk1] = thk - dt * drift + dU
        G = self.bounds.shape[0] - 1
        rsum = np.zeros((G, m, self.R.shape[0]))
        self.kern.dmft_theta_adjoint(k + 1, self.th, self.p, self.lam, dt, self.KlT, self.bounds,
                                     self.B_hist, rsum)
        self.R[rk1, : (k + 1) * m] = rsum.sum(0)[:, : (k + 1) * m] / self.Pt
        self.RT[: (k + 1) * m, rk1] = self.R[rk1, : (k + 1) * m].T
        self._moments(k + 1)

    def M_flat(self, upto: int) -> np.ndarray:
        return self.Mf[: upto * self.m]

    def group_moments(self):
        """Per-group Q[k] and M[k] (G, N+1, m, m / k) for batch-means error bars."""
        m, N, G = self.m, self.N, self.bounds.shape[0] - 1
        th = self.th.reshape(self.Pt, N + 1, m)
        Q = np.zeros((G, N + 1, m, m))
        Mo = np.zeros((G, N + 1, m, self.k))
        for g in range(G):
            sl = slice(self.bounds[g], self.bounds[g + 1])
            n = sl.stop - sl.start
            Q[g] = np.einsum("pka,pkb->kab", th[sl], th[sl]) / n
            if self.k:
                Mo[g] = np.einsum("pka,pj->kaj", th[sl], self.ths[sl]) / n
        return Q, Mo
