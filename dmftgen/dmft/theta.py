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
(docs/theory.md §3; derivation in :mod:`dmftgen.dmft.estimators`):

    nu[k] = ( <ell_k r*^T> - sum_{l<=k} K_ell[k, l] M[l] ) rho^{-1}.

Gaussian input of the r-process ("PSD by construction")
-------------------------------------------------------
The theta-side is linear, so the r-side Gaussian w (covariance C_theta, cross-covariance M with
r*) is sampled per path as

    w_k = Phi0[k] g0 + Phis[k] r* + sum_{m<k} R_theta[k, m] xi_m,     xi = L eta ~ N(0, S_U),

with g0 ~ N(0, Sigma0), r* ~ N(0, rho) and L the causal factor of S_U
(:class:`dmftgen.dmft.sampler.CausalFactor`): its covariance is C_theta by construction.

The theta-side interface
------------------------
The forward sweep (:mod:`dmftgen.dmft.forward`) drives this class and the Monte Carlo theta-side
(:class:`dmftgen.dmft.theta_mc.ThetaMC`, a declared regulariser H) through the same methods:
``begin_input(rside)`` and ``input_row(k, fac, wpre, W)`` (the r-side Gaussian input of time k:
``wpre`` is one row, (P, 1, m), rewritten each step),
``set_kernels(k, ...)`` (the r-side estimates of time k), ``advance(k, L)`` (row k + 1),
``finite(k)``, and for the result ``moments(S_U, n)``, ``samples(...)``, ``M_flat``, ``rho``,
``rho_inv``, ``R``, ``RT``, ``Kl``, ``nu``.
"""
from __future__ import annotations

import numpy as np

from numba import njit

from ._linalg import PackedRows, det_tangent_row, lower_dots, lower_matmul, psd_sqrt


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
        self.RT = np.zeros((NN, NN), dtype=np.float32)  # R_theta^T for the adjoint (float32: templates/dmft.py)
        # R_theta's nonzero half, packed (row block k: columns < k m), for the per-row products
        self.Rp = PackedRows.causal(NN, m, 0, NN, reverse=True)
        self.Kl = np.zeros((NN, NN))
        self.Phi0 = np.zeros((NN, m))
        self.Phi0[:m] = np.eye(m)
        self.Phis = np.zeros((NN, k))
        self.nu = np.zeros((N + 1, m, k))
        self.Eb = np.zeros((NN, k))      # deterministic-nu helper: (D + A E psi_m) dt
        self._row = np.zeros((m, NN))
        self.C, self.n_C = None, 0       # C_theta rows < n_C, of the sweep's input (:meth:`_C_row`)

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
                det_tangent_row(k, self.Rp.data, self.Rp.start, A_seq, self.A, self.delta, self.dt, self._row)
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

    def advance(self, k, L_S=None):
        """Row k + 1 of R_theta, Phi0, Phis from K_ell rows <= k and nu[k] (``L_S`` unused: the
        noise enters through the input rows W = R_theta L, :meth:`input_row`)."""
        m, dt = self.m, self.dt
        a = 1.0 - self.lam * dt
        s0 = slice(0, (k + 1) * m)
        rk = slice(k * m, (k + 1) * m)
        rk1 = slice((k + 1) * m, (k + 2) * m)
        Kk = self.Kl[rk, s0]
        # Kk @ R_theta[s0, s0] on the nonzero half (R_theta[l, j] = 0 for j >= l: causal)
        lower_matmul(Kk, self.Rp.data, self.Rp.start, self.Rp.width, (k + 1) * m, True, self._row)
        _next_R_row(self.R, self._row, self.RT, k, m, a, dt)
        self.Rp.set_rows((k + 1) * m, self.R[rk1])
        self.Phi0[rk1] = a * self.Phi0[rk] - dt * (Kk @ self.Phi0[s0])
        if self.k:
            self.Phis[rk1] = a * self.Phis[rk] - dt * (Kk @ self.Phis[s0]) - dt * self.nu[k]

    # -- the r-side Gaussian input ----------------------------------------------------------------
    def begin_input(self, rside):
        """Arrays of the r-side input: ``wpre`` (P, 1, m), the part of w_k known before the
        paths' noise (Phi0[k] g0 + Phis[k] r*) for the current step k only (:meth:`input_pre` gives
        any row again), and ``W`` (NN, NI), the rows R_theta[k, :k] L that multiply the paths'
        standard normals eta. Returns (wpre, W, clipped pivots = 0).

        One row, not (P, N + 1, m) (issue 12): written contiguously each step instead of one strided
        entry per path (0.5 s of the committee dt 0.01 solve), P N m doubles less. ``Wp``
        keeps W's nonzero half packed (row block k: columns < k m) for C_theta's rows."""
        self._g0, self._s = rside.g0, rside.s
        NN, NI = (self.N + 1) * self.m, self.N * self.m
        self.Wp = PackedRows.causal(NN, self.m, 0, NI)
        self.C, self.n_C = np.zeros((NN, NN)), 0
        return np.zeros((rside.P, 1, self.m)), np.zeros((NN, max(NI, 1))), 0

    def input_row(self, k, fac, wpre, W):
        """Row k of the input: W[k, :k] = R_theta[k, :k] L[:k, :k] (``fac`` the
        :class:`dmftgen.dmft.sampler.CausalFactor` of S_U, whose rows < k m are final; read from
        its packed copy), wpre[:, 0] = :meth:`input_pre` (k), and row k of its covariance C_theta
        (:meth:`_C_row`). Returns 0 (pivots clipped)."""
        m = self.m
        rk = slice(k * m, (k + 1) * m)
        if k > 0:
            Lp = fac.Lp
            lower_matmul(self.R[rk], Lp.data, Lp.start, Lp.width, k * m, False, W[rk])
            self.Wp.set_rows(k * m, W[rk])
        wpre[:, 0, :] = self.input_pre(k)
        self._C_row(k, W)
        return 0

    def _C_known(self, rows, cols):
        """The part of C_theta[rows, cols] from theta^0 and theta*: Phi0 Sigma0 Phi0^T + Phis rho
        Phis^T (theta^0 independent of theta*); the noise part is added by the caller."""
        C = self.Phi0[rows] @ self.sigma0 @ self.Phi0[cols].T
        if self.k:
            C += self.Phis[rows] @ self.rho @ self.Phis[cols].T
        return C

    def _C_row(self, k, W):
        """C_theta[k, <=k] (the block-lower half; :meth:`moments` mirrors it) as the covariance of
        the input the paths get,

            C_theta[k, l] = Phi0[k] Sigma0 Phi0[l]^T + Phis[k] rho Phis[l]^T + W[k] W[l]^T,

        W W^T = R_theta L L^T R_theta^T, which is R_theta S_U R_theta^T up to the causal factor's
        accuracy (pivots clipped below ``pivot_tol``; the sampler self-check bounds L L^T - S_U).
        Issue 12: formed here once, row by row, for the result and the self-checks' record; it
        was formed a second time after the sweep by :meth:`C_theta_flat` (two trmm per replica,
        ~10 % of a K = 1600 solve), which stays for solves without input rows (the fixed point).
        W[l] is zero beyond column l m (causal): read from its packed copy ``Wp``."""
        m = self.m
        rk = slice(k * m, (k + 1) * m)
        cols = slice(0, (k + 1) * m)
        C = self._C_known(rk, cols)
        if k > 0:
            WW = np.empty((m, (k + 1) * m))
            lower_dots(W[rk], self.Wp.data, self.Wp.start, self.Wp.width, (k + 1) * m, k * m, WW)
            C += WW
        C[:, k * m:] = 0.5 * (C[:, k * m:] + C[:, k * m:].T)  # the diagonal block: symmetric
        self.C[rk, cols] = C  # the block-lower half; :meth:`moments` mirrors it once
        self.n_C = k + 1

    def input_pre(self, k, P=None):
        """wpre_k = Phi0[k] g0 + Phis[k] r* of the first ``P`` paths (all by default), (P, m)."""
        rk = slice(k * self.m, (k + 1) * self.m)
        w = self._g0[:P] @ self.Phi0[rk].T
        if self.k:
            w += self._s[:P] @ self.Phis[rk].T
        return w

    def finite(self, k) -> bool:
        """The theta-side of row k + 1 is finite (the r-side checks cover this linear map)."""
        return True

    # -- second moments --------------------------------------------------------------------------
    def C_theta_flat(self, S_U: np.ndarray, n: int | None = None) -> np.ndarray:
        """C_theta = Phi0 Sigma0 Phi0^T + Phis rho Phis^T + R S_U R^T for rows/cols < n (flat).

        R S_U R^T by two triangular products (BLAS trmm): with NI = S_U's size, R[:NI, :NI] is
        strictly block-lower (row block k: columns < k m) and only the last m rows R[NI:n m] are
        full, so half the multiply-adds of two dense products (issue 12: 0.31 -> 0.22 s at
        NI = 1600, the largest single theta-side product of a long grid)."""
        from scipy.linalg.blas import dtrmm

        m = self.m
        n = self.N + 1 if n is None else n
        NI = S_U.shape[0]
        Rr = self.R[: n * m, :NI]
        C = self._C_known(slice(0, n * m), slice(0, n * m))
        if NI:
            X = np.empty((n * m, NI))
            X[:NI] = dtrmm(1.0, Rr[:NI], S_U, side=0, lower=1)             # tril(R[:NI]) S_U
            X[NI:] = Rr[NI:] @ S_U
            C[:, :NI] += dtrmm(1.0, Rr[:NI], X, side=1, lower=1, trans_a=1)  # X tril(R[:NI])^T
            C[:, NI:] += X @ Rr[NI:].T
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

    def moments(self, S_U: np.ndarray, n: int):
        """(C_theta flat (n m, n m), Q (n, m, m), M (n, m, k)) on the first n grid points.

        A sweep stopped at row n - 1 (n <= N) has S_U only for the increments before it; Q is
        read off C's diagonal blocks (not Q_diag: that repeats the K^3 product R_theta S_U)."""
        m = self.m
        if 0 < n <= self.n_C:  # rows of the sweep's input (:meth:`_C_row`): the block-lower half
            blk = np.arange(n * m) // m
            Cl = self.C[: n * m, : n * m]
            C = np.where(blk[:, None] >= blk[None, :], Cl, Cl.T)
        else:
            NI = max(n - 1, 0) * m  # the increments before row n - 1 (all of S_U when n = N + 1)
            C = self.C_theta_flat(S_U[:NI, :NI], n)
        return C, diag_blocks(C, n, m), self.M_overlap()[:n]

    def samples(self, S, rng, L_S, S_U, init_std, teacher_std) -> dict:
        """S draws of the law of a theta row at every time, by its exact Gaussian representation
        theta_k = Phi0[k] theta^0 + Phis[k] theta* + sum_m R_theta[k, m] dU_m, dU = L eta
        (L the causal factor of S_U, or its symmetric square root after a fixed point)."""
        N, m, kk = self.N, self.m, self.k
        NI = N * m
        th0 = init_std * rng.standard_normal((S, m))
        ths = teacher_std * rng.standard_normal((S, kk))
        L = L_S if L_S is not None else psd_sqrt(S_U)
        dU = rng.standard_normal((S, NI)) @ L.T
        flat = th0 @ self.Phi0.T + dU @ self.R[:, :NI].T
        if kk:
            flat += ths @ self.Phis.T
        return {"theta_samples": flat.reshape(S, N + 1, m).transpose(1, 0, 2),
                "theta_star_samples": ths, "theta0_samples": th0}


def diag_blocks(C, n, m):
    """The diagonal blocks C[k, k] (n, m, m) of a flat block matrix."""
    return np.stack([C[k * m:(k + 1) * m, k * m:(k + 1) * m] for k in range(n)]) if n else np.zeros((0, m, m))


@njit(cache=True, nogil=True, error_model="numpy")
def _next_R_row(R, row, RT, k, m, a, dt):
    """R_theta row block k + 1 (columns < (k + 1) m) = a R_theta[k] - dt ``row`` + [0 .. I], and its
    float32 transpose into ``RT`` (the adjoint's layout): the numpy expression
    ``a * R[k] - dt * row`` then ``+= I`` on block k, in one compiled pass (issue 12: six numpy
    calls and a strided column write per row, ~60 us a row at K = 500), the same bytes."""
    n = (k + 1) * m
    for i in range(m):
        ri = (k + 1) * m + i
        for j in range(n):
            v = a * R[k * m + i, j] - dt * row[i, j]
            if j == k * m + i:
                v += 1.0
            R[ri, j] = v
            RT[j, ri] = np.float32(v)
