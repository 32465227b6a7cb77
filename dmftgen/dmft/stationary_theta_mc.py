"""The Monte Carlo theta-side of the stationary solve, for a declared regulariser H (model HAS_REG).

With h = grad H nonlinear the theta-row process is not Gaussian and the linear theta-side on lag
kernels (:func:`dmftgen.dmft.stationary_lag._theta_side`) does not apply. Its stationary version is
simulated instead, on P_theta theta-paths of burn + 2W + samples steps (docs/theory.md §2 at long
times, the lag form of :class:`dmftgen.dmft.theta_mc.ThetaMC`):

    theta_{k+1} = theta_k - dt (h(theta_k) + lam theta_k) - dt sum_{n=0}^{W} K(n) theta_{k-n}
                  - dt K_tail <theta>_{W<n<=2W} - dt nu theta* + dU_k,

with theta* ~ N(0, rho) (whitened to the exact rho), dU the stationary Gaussian of lag covariance
S(u) = S~(u) + S_inf: S~ by circulant embedding (:class:`dmftgen.dmft.stationary_lag.StationaryGaussian`,
the sampler of the r-side input) and S_inf as a static offset per path. The paths start at 0 and
the static part of theta (from S_inf and theta*) builds up over the relaxation time, so the
averages start after burn + 2W steps: the lag covariance up to 2W then uses no step before ``burn``
(with ``burn`` alone, C_theta(u) at u ~ 2W reached into the transient and c_inf came out ~7 % low on
ridge regression, measured). Over the last ``samples`` steps:

    C_theta(u) = <theta_k theta_{k-u}^T>   (u <= 2W, FFT over the stored paths),
    M = <theta_k theta*^T>,   Q = C_theta(0),
    R(n) = <T_n>,  T_n = d theta_{l+n} / d dU_l  (forward tangent from ``sources`` times l per path,
           T_1 = I, T_{j+1} = (I - dt B_{l+j}) T_j - dt sum_{i=1}^{j} K(j - i) T_i, B = grad h + lam I).

The r-side needs the law of w = X theta: centred Gaussian, jointly with r*, of covariance
(C_theta, M; M^T, rho), i.e. w = M rho^{-1} r* + w~ with w~ of lag covariance
C_theta(u) - M rho^{-1} M^T. Its static part c_inf (the non-decaying covariance: the static noise
S_inf, theta* entering nonlinearly, a non-zero mean of theta) is the mean over the lags
W < u <= 2W, the convention of S_inf on the r-side; the rest c(u) = C_theta(u) - M rho^{-1} M^T - c_inf
for u <= W (zero beyond). For a quadratic H this reproduces the ridge theta-side up to Monte Carlo
error (tests/test_stationary.py).

All random numbers (the Gaussian's normals, the static normals, theta*) are drawn once per set
(:meth:`LagThetaMC.draws`), so that the fixed-point map stays deterministic. The paths and
tangents run in the generated kernel ``dmft_stationary_theta`` (template
dmftgen/codegen/templates/stationary_theta.py).
"""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedModelError
from ..observables import _sqrt_psd
from .stationary_lag import StationaryGaussian, _fft_len, _geom_tail, _lag_covariance
from .theta_mc import whitened_normals


class LagThetaMC:
    """Monte Carlo theta-side on lag kernels (module docstring) for one solve.

    Parameters
    ----------
    kern, p : the generated module of the model and its parameter vector.
    m, kk : student and teacher widths.
    lam, dt : ridge and step.
    W, burn, L : window (lags), the r-side's burn-in and path length (steps); the theta-paths are
        2W steps longer (module docstring).
    paths : P_theta, the number of theta-paths; groups : the prange groups.
    rho_std : teacher standard deviation (rho = rho_std^2 I).
    sources : tangent sources per path (R(n) from paths x sources tangents).
    """

    def __init__(self, kern, p, m, kk, lam, dt, W, burn, L, paths, groups, rho_std, sources):
        if not hasattr(kern, "dmft_stationary_theta"):
            raise UnsupportedModelError(f"{kern.__name__} has no stationary theta-path kernel; "
                                        "run: python -m dmftgen generate")
        if L - W <= burn:
            raise ValueError(f"theta-paths of {L} steps leave no tangent source after burn {burn} + W {W}.")
        self.kern, self.p, self.m, self.kk = kern, p, m, kk
        # the r-side's burn + 2W: see the module docstring
        self.lam, self.dt, self.W, self.burn, self.L = lam, dt, W, burn + 2 * W, L + 2 * W
        burn, L = self.burn, self.L
        self.P = int(paths)
        self.bounds = np.linspace(0, self.P, groups + 1).round().astype(np.int64)
        self.rho_std = rho_std
        self.rho = rho_std ** 2 * np.eye(kk)
        self.rho_inv = np.linalg.inv(self.rho) if kk else np.zeros((0, 0))
        self.sources = np.linspace(burn, L - W, max(1, int(sources))).round().astype(np.int64)
        self.nfft = _fft_len(L)

    def draws(self, rng):
        """The random numbers of one set of theta-paths: the noise Gaussian's normals, the static
        normals xi (P_theta x m) and theta* (P_theta x k).

        (xi, theta*) are whitened jointly (exact zero mean, identity second moment, then theta*
        scaled to rho; as :func:`dmftgen.dmft.theta_mc.make_theta_mc` does for (theta^0, theta*)).
        The static part of a theta row is a function of (xi, theta*), linear for a quadratic H, so
        this removes the O(P^-1/2) sample correlation of xi and theta* from M, its largest Monte
        Carlo error (the time average along a path does not reduce a static part)."""
        gauss = StationaryGaussian(rng, self.P, self.L, self.m)
        Z = whitened_normals(rng, self.P, self.m + self.kk)
        xi, ths = Z[:, : self.m], self.rho_std * Z[:, self.m:]
        return gauss, np.ascontiguousarray(xi), np.ascontiguousarray(ths)

    def run(self, K, S, S_inf, nu, rnd, tails=True):
        """One pass of the theta-side at the lag kernels (K, S, S_inf) and teacher drift nu on the
        random numbers ``rnd`` (:meth:`draws`).

        Returns a dict with R (W+1, m, m), c (W+1, m, m) and c_inf (the r-side input's lag
        covariance, module docstring), C_theta (2W+1, m, m), Q, M, and theta_rows / theta_star_rows
        (the last step of every path: samples of the law of a theta row); or a message (str) when
        the paths blow up. ``tails=False`` drops the continuation K_tail of K beyond the window.
        """
        gauss, xi, ths = rnd
        m, W, B, L, P = self.m, self.W, self.burn, self.L, self.P
        U = gauss.sample(S - S_inf) + (xi @ _sqrt_psd(S_inf).T)[:, None, :]
        U = np.ascontiguousarray(U)
        th = np.empty((P, L, m))
        G = self.bounds.shape[0] - 1
        rsum = np.zeros((G, W + 1, m, m))
        bad = np.zeros(G, np.int64)
        Kt = _geom_tail(K) if tails else np.zeros((m, m))
        self.kern.dmft_stationary_theta(np.ascontiguousarray(K), np.ascontiguousarray(Kt), U, ths,
                                        np.ascontiguousarray(nu), self.p, self.lam, self.dt, self.sources,
                                        self.bounds, th, rsum, bad)
        if bad.any() or not np.isfinite(th[:, B:]).all():
            return "the theta-paths blew up: no stationary state at these kernels"
        n = P * (L - B)
        R = rsum.sum(0) / (P * self.sources.size)
        C = _lag_covariance(th, B, 2 * W, self.nfft) / n
        M = th[:, B:].sum(1).T @ ths / n if self.kk else np.zeros((m, 0))
        mean_part = M @ self.rho_inv @ M.T if self.kk else np.zeros((m, m))
        c_full = C - mean_part
        c_inf = c_full[W + 1:].mean(0)
        c_inf = 0.5 * (c_inf + c_inf.T)
        Q = 0.5 * (C[0] + C[0].T)
        return {"R": R, "c": c_full[: W + 1] - c_inf, "c_inf": c_inf, "C_theta": C, "Q": Q, "M": M,
                "theta_rows": th[:, -1].copy(), "theta_star_rows": ths}

    def nu_from_M(self, M, K, lam):
        """A starting teacher drift from a starting M: the ridge relation nu rho = -(lam + Khat) M
        (exact for a quadratic H; the iteration corrects it otherwise)."""
        if not self.kk:
            return np.zeros((self.m, 0))
        Khat = K.sum(0) + _geom_tail(K)
        return -(lam * np.eye(self.m) + Khat) @ M @ self.rho_inv
