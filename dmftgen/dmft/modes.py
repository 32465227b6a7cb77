"""What the symbolic layer lets the solver skip: deterministic tangents, nu estimator, tangent paths.

* A model whose Jacobian grad ell is one constant matrix A (LINEAR_ELL, checked on samples) needs
  no per-path tangents: K_ell follows from A by the noiseless recursion (theta-side).
* The teacher drift nu is estimated by Stein's identity for labels that jump (DISCONTINUOUS),
  pathwise otherwise, and is deterministic when d ell / d r* is one constant matrix D as well.
* Otherwise P_J paths carry the adjoint tangents, an unbiased subset chosen once for the whole
  solve (:mod:`dmftgen.dmft.tangents`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SettingsError
from .tangents import tangent_paths_per_group

#: rows of the samples on which a Jacobian / d ell / d r* is tested for being constant
PROBE_ROWS = 512


@dataclass
class Modes:
    """A (m, m) or None: constant Jacobian; D (m, k) or None: constant d ell / d r*;
    nu_mode: "none" | "stein" | "pathwise" | "deterministic"; n_tan_g: tangent paths per group."""

    A: np.ndarray | None
    D: np.ndarray | None
    nu_mode: str
    n_tan_g: int

    @property
    def do_psi(self) -> bool:
        """The paths accumulate the pathwise-nu history psi (b_hist)."""
        return self.nu_mode == "pathwise"


def detect(kern, p, s, z, bounds, N, opts, reg, tau, replicas=1) -> Modes:
    """The modes of a solve with teacher fields ``s`` and label noises ``z`` (P rows) in the
    groups ``bounds``; ``reg``: a declared regulariser (Monte Carlo theta-side); ``replicas``: R
    sub-solves of P paths each share one tangent budget (:mod:`dmftgen.dmft.tangents`)."""
    m, kk = int(kern.M), int(kern.K)
    P, G = s.shape[0], bounds.shape[0] - 1
    n = min(P, PROBE_ROWS)
    A = D = None
    if kern.LINEAR_ELL:
        # Deterministic tangents need one constant Jacobian (it may still depend on s or z).
        J = np.empty((n, m, m))
        r0 = np.zeros((n, m))
        kern.jac_ell_batch(r0, s[:n], z[:n], p, J)
        if np.allclose(J, J[0], rtol=1e-12, atol=1e-14):
            A = np.ascontiguousarray(J[0])
    if kk == 0:
        nu_mode = "none"
    elif opts.nu != "auto":
        nu_mode = opts.nu
    else:
        nu_mode = "stein" if kern.DISCONTINUOUS else "pathwise"
    if nu_mode == "pathwise" and A is not None and not reg:
        ds = np.empty((n, m, kk))
        out = np.empty((m, kk))
        rng = np.random.default_rng(1)
        for i in range(n):
            kern.dell_ds_row(rng.standard_normal(m), s[i], z[i], p, out)
            ds[i] = out
        if np.allclose(ds, ds[0], rtol=1e-12, atol=1e-14):
            D = ds[0].copy()
            nu_mode = "deterministic"
    if reg:
        A = None  # K_ell enters a Monte Carlo theta-side: keep the r-side estimator uniform
    if A is not None:
        return Modes(A, D, nu_mode, 0)
    nt = opts.tangent_paths
    if nt is not None and int(nt) < G:
        raise SettingsError(f"option tangent_paths={nt}: need at least one per path group ({G}).")
    # P_J for the whole solve, shared among the replicas
    return Modes(A, D, nu_mode, tangent_paths_per_group(P * replicas, N, m, G, opts, tau, replicas,
                                                        int(np.diff(bounds).min())))
