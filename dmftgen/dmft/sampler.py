"""The causal factor of the Gaussian input's covariance, built one block row at a time.

The forward sweep needs xi ~ N(0, S) causally: a lower-triangular L with L L^T = S whose row
block k uses only S[k, <=k], which the paths have just produced (docs/theory.md section 7).

* Cholesky (``gram = "cholesky"``): the incremental, pivot-clipped Cholesky of S
  (:func:`dmftgen.dmft._linalg.chol_append`). For tau > 0 the white part tau dt <ell ell^T> keeps
  the Schur complements of S_U away from zero and it is well conditioned.
* QR (``gram = "qr"``): S = A^T A is the Gram matrix of data columns A (the increments dL of the
  paths, scaled); L = R^T from a rank-revealing QR of A (:class:`dmftgen.dmft._linalg.GramQR`),
  exact to round-off even where S is numerically of low rank (tau near 0, where S_U is the Gram
  matrix of smooth increments and its Cholesky squares the condition number: measured
  |L L^T - S_U| / |S_U| = 1.8 at tau = 0, committee, dt = 0.02).
"""
from __future__ import annotations

import numpy as np

from ._linalg import GramQR, PackedRows, chol_append

#: white fraction tau delta / (dt + tau delta) below which ``gram = "auto"`` factors by QR
QR_BELOW = 0.05


def nearly_dependent(tau: float, delta: float, dt: float) -> bool:
    """The increments dL are nearly linearly dependent: white fraction below :data:`QR_BELOW`
    (see :func:`use_qr`). Their exact dependences must then stay exact, so the paths keep them
    in float64 whichever factor runs (``rside.RSide.alloc``, ``rside.HIST``)."""
    return tau * delta / (dt + tau * delta) < QR_BELOW


def keep_exact_increments(gram: str, tau: float, delta: float, dt: float) -> bool:
    """The forward sweep keeps dL in float64: the QR factors it, or it is nearly dependent."""
    return use_qr(gram, tau, delta, dt) or nearly_dependent(tau, delta, dt)


def use_qr(gram: str, tau: float, delta: float, dt: float) -> bool:
    """QR of the data instead of the Cholesky of S when its pivots would be tiny.

    The Schur complement of S_U[k, k] given the past is at least its white part,
    tau delta dt <ell ell^T> / delta, against S_U[k, k] = (dt^2 + tau delta dt) <ell ell^T> / delta:
    a fraction f = tau delta / (dt + tau delta). Below f = 0.05 (and always at tau = 0, where
    S_U is the Gram matrix of smooth paths, numerically of low rank) the Cholesky errors
    compound along chains of small pivots; the QR factor stays exact to round-off."""
    if gram != "auto":
        return gram == "qr"
    return nearly_dependent(tau, delta, dt)


class CausalFactor:
    """S (n x n, filled by the caller row by row) and its causal factor L, L L^T = S (square, and
    its lower triangle packed: ``Lp``, a :class:`dmftgen.dmft._linalg.PackedRows`).

    Parameters
    ----------
    n : int
        Size of S.
    qr : bool
        Factor the data (:meth:`extend` gets its columns) instead of S.
    rows, scale : int, float
        With ``qr``: the data columns have ``rows`` entries and S = (scale A)^T (scale A).
    pivot_tol, qr_tol : float
        Cholesky pivot clipping (relative); QR rank tolerance.
    """

    def __init__(self, n: int, qr: bool, rows: int = 0, scale: float = 1.0, pivot_tol: float = 1e-11,
                 qr_tol: float = 1e-12):
        self.S = np.zeros((n, n))
        self.L = np.zeros((n, n))
        # L's lower triangle packed (rows end to end): what chol_append reads, and the theta-side's
        # input rows R_theta L (ThetaSide.input_row) too
        self.Lp = PackedRows.causal(n, 1, 1, n)
        self.pivot_tol = float(pivot_tol)
        self.gq = GramQR(rows, n, scale, float(qr_tol)) if qr else None

    def extend(self, i0: int, i1: int, column) -> int:
        """Rows i0..i1-1 of L (S must hold its rows < i1); ``column(i)`` is data column i (QR).
        Returns the number of clipped pivots (Cholesky) or of columns adding no direction (QR)."""
        if self.gq is None:
            return chol_append(self.L, self.S, i0, i1, self.pivot_tol, self.Lp.data, self.Lp.start)
        clipped = sum(self.gq.append(self.L, i, column(i)) for i in range(i0, i1))
        self.Lp.set_rows(i0, self.L[i0:i1])
        return clipped
