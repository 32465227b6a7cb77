"""theta-side by Monte Carlo theta-paths, for a declared regulariser H (model HAS_REG).

The nonlinear drift h = grad H makes the theta-side a nonlinear process; it is simulated on
P_theta theta-paths (docs/theory.md section 2) and presents the same interface to the forward
sweep as the deterministic :class:`dmftgen.dmft.theta.ThetaSide` (see that module).
"""
from __future__ import annotations

import math

import numpy as np

from ._linalg import PackedRows
from .rside import to_chunks
from .sampler import CausalFactor
from .theta import diag_blocks


def theta_paths_count(opts, P, N, m, G) -> int:
    """P_theta: ``opts.theta_paths``, or as many as the r-paths within the tangent budget (the
    adjoint of the theta-paths is O(P_theta K^3)), at least 2000; at least 2 per group."""
    nt = opts.theta_paths
    if nt is None:
        nt = min(P, max(2000, int(opts.tangent_budget / (max(N, 1) ** 3 * m ** 3 / 6.0))))
    return max(int(nt), 2 * G)


def make_theta_mc(kern, p, settings, m, kk, init_std, teacher_std, rng, rng_zeta, opts, P, G, qr):
    """The Monte Carlo theta-side of a solve with P r-paths in G groups.

    (theta^0, theta*) samples have exactly the declared second moments (whitened, then
    recoloured): this removes the O(P_theta^-1/2) error of rho_hat, which would otherwise shift M
    and the test loss at every time."""
    N = settings.n_steps
    Pt = theta_paths_count(opts, P, N, m, G)
    Z0 = whitened_normals(rng, Pt, m + kk)
    th = ThetaMC(kern, p, N, m, kk, settings.lam, settings.dt, settings.delta,
                 init_std * Z0[:, :m], teacher_std * Z0[:, m:], rng.standard_normal((Pt, N * m)), G)
    th.rng_zeta, th.qr, th.pivot_tol, th.qr_tol = rng_zeta, qr, float(opts.pivot_tol), float(opts.qr_tol)
    return th


def whitened_normals(rng, n, d):
    """n x d standard normals made exactly centred with identity second moment (subtract the
    sample mean, then the inverse Cholesky factor of the sample second moment)."""
    Z = rng.standard_normal((n, d))
    Z -= Z.mean(0)
    return np.linalg.solve(np.linalg.cholesky(Z.T @ Z / n), Z.T).T


class ThetaMC:
    """theta-side by Monte Carlo theta-paths, for a nonlinear regulariser h (model HAS_REG).

    theta_{k+1} = theta_k - dt (h(theta_k) + lam theta_k) - dt sum_{l<=k} K_ell[k, l] theta_l
                  - dt nu[k] theta* + dU_k,          dU = L_S eta (causal Cholesky of S_U),

    on P_theta paths with theta^0 ~ N(0, Sigma0), theta* ~ N(0, rho); R_theta = E Phi by the
    generated adjoint kernel ``dmft_theta_adjoint``; C_theta, M and rho are the empirical second
    moments of the theta-paths (an exact Gram matrix, so the r-side Gaussian built from them by its
    causal factor is PSD by construction).
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
        self.RT = np.zeros((NN, NN), dtype=np.float32)  # R_theta^T for the adjoint (float32: templates/dmft.py)
        self.Rp = PackedRows.causal(NN, m, 0, NN, reverse=True)   # R_theta's nonzero half, packed (the r-side estimators)
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
        self.Rp.set_rows((k + 1) * m, self.R[rk1])
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

    # -- the r-side Gaussian input ----------------------------------------------------------------
    def begin_input(self, rside):
        """The r-side input from the theta-paths' Gram matrix: (r*, w_0, ..., w_N) = L_J zeta.

        L_J is the causal factor of the joint second moments (rho_hat, M_hat, C_hat) of
        (theta*, theta_0, ...), one Gram matrix of the theta-path data, factored by Cholesky or,
        when smooth (tau ~ 0) paths make it ill-conditioned, by QR of the path data (scaled
        1/sqrt(P_theta)); causal because row block k needs only C[k, <=k]. The r-paths' teacher
        fields r* and standard normals are replaced by L_J zeta (zeta from the theta-side's own
        stream). Returns (wpre: the row of the current step, (P, 1, m), as in
        :meth:`dmftgen.dmft.theta.ThetaSide.begin_input`; W; clipped pivots of the first row)."""
        m, kk, N, P = self.m, self.k, self.N, rside.P
        NN, NI = (N + 1) * m, N * m
        NJ = kk + NN
        jf = self.joint = CausalFactor(NJ, self.qr, self.Pt, 1.0 / math.sqrt(self.Pt), self.pivot_tol,
                                       self.qr_tol)
        jf.S[:kk, :kk] = self.rho
        jf.S[kk:kk + m, :kk] = self.Mf[:m]
        jf.S[:kk, kk:kk + m] = self.Mf[:m].T
        jf.S[kk:kk + m, kk:kk + m] = self.C[:m, :m]
        clipped = jf.extend(0, kk + m, self._joint_column)
        zeta = self._zeta = self.rng_zeta.standard_normal((P, NJ))
        rside.s = np.ascontiguousarray(zeta[:, :kk] @ jf.L[:kk, :kk].T)
        rside.eta = to_chunks(zeta[:, kk:kk + NI], rside.B, rside.eta.dtype)  # the kernel's history layout
        return np.zeros((P, 1, m)), np.zeros((NN, NN)), clipped

    def _joint_column(self, i):
        return self.ths[:, i] if i < self.k else self.th[:, i - self.k]

    def input_row(self, k, fac, wpre, W):
        """Row k of the input (the joint factor's rows of time k first, from C_theta row k; ``fac``,
        the factor of S_U, is not used: S_U enters through the theta-paths' noise in :meth:`advance`)."""
        m, kk, jf = self.m, self.k, self.joint
        rk = slice(k * m, (k + 1) * m)
        jr = slice(kk + k * m, kk + (k + 1) * m)
        clipped = 0
        if k > 0:
            jf.S[jr, :kk] = self.Mf[rk]
            jf.S[:kk, jr] = self.Mf[rk].T
            jf.S[jr, kk:kk + (k + 1) * m] = self.C[rk, : (k + 1) * m]
            jf.S[kk:kk + (k + 1) * m, jr] = self.C[rk, : (k + 1) * m].T
            clipped = jf.extend(kk + k * m, kk + (k + 1) * m, self._joint_column)
        W[rk, :] = jf.L[jr, kk:]
        wpre[:, 0, :] = self._zeta[:, :kk] @ jf.L[jr, :kk].T + self._zeta[:, jr] @ jf.L[jr, jr].T
        return clipped

    def finite(self, k) -> bool:
        """C_theta up to row k + 1 is finite."""
        n = (k + 2) * self.m
        return bool(np.all(np.isfinite(self.C[:n, :n])))

    # -- results ----------------------------------------------------------------------------------
    def moments(self, S_U, n: int):
        """(C_theta flat, Q, M) on the first n grid points: the theta-paths' second moments."""
        m = self.m
        C = self.C[: n * m, : n * m]
        return C, diag_blocks(C, n, m), self.Mf[: n * m].reshape(n, m, self.k)

    def samples(self, S, rng=None, L_S=None, S_U=None, init_std=None, teacher_std=None) -> dict:
        """The first min(S, P_theta) theta-paths: they ARE samples of the law of a theta row."""
        S = min(S, self.Pt)
        return {"theta_samples": self.th[:S].reshape(S, self.N + 1, self.m).transpose(1, 0, 2),
                "theta_star_samples": self.ths[:S], "theta0_samples": self.th[:S, : self.m]}
