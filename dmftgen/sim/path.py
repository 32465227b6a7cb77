"""Per-seed record of a simulated trajectory (filled by the SGF and SGD integrators)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: a run is declared diverged when the RMS of a student column exceeds this factor times its
#: natural scale max(1, RMS of theta^0, RMS of theta*): far beyond any O(1) overlap of a
#: converging run, and reached within a few time units by an exponential blow-up.
BLOWUP = 1e6


@dataclass
class Path:
    """Observables of one seed at the recorded times.

    Attributes
    ----------
    t : ndarray (R,)
        Times actually recorded (SGF clock t = k eta / d for SGD).
    train_loss : ndarray (R,)
        (1/n) sum_i L(r_i; s_i, z_i) on the training samples.
    train_metrics : ndarray (R, NMET)
        (1/n) sum_i metrics(r_i; s_i, z_i).
    Q : ndarray (R, m, m)
        theta^T theta / d.
    M : ndarray (R, m, k)
        theta^T theta* / d.
    rows : ndarray (R, theta_rows, m) or None
        The first ``theta_rows`` rows of theta (rows are exchangeable, so this is a sample).
    n_done : int
        Number of leading records that are valid (< R when the run diverged).
    status, message : str
        "ok" or "diverged", and why / when.
    """

    t: np.ndarray
    train_loss: np.ndarray
    train_metrics: np.ndarray
    Q: np.ndarray
    M: np.ndarray
    rows: np.ndarray | None
    n_done: int = 0
    status: str = "ok"
    message: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, t, m, k, nmet, theta_rows):
        R = len(t)
        nan = np.nan
        return cls(t=np.asarray(t, dtype=float).copy(), train_loss=np.full(R, nan),
                   train_metrics=np.full((R, nmet), nan), Q=np.full((R, m, m), nan),
                   M=np.full((R, m, k), nan),
                   rows=np.full((R, theta_rows, m), nan) if theta_rows else None)

    def diverge(self, t: float, why: str) -> None:
        self.status = "diverged"
        self.message = f"diverged at t = {t:.6g}: {why}"

    def interrupt(self, t: float) -> None:
        """Ctrl-C at time t: the records 0 .. n_done-1 are complete and kept."""
        self.status = "interrupted"
        self.message = f"interrupted by the user at t = {t:.6g}"


def blowup_limit(thT: np.ndarray, thsT: np.ndarray) -> float:
    """Threshold on max_a Q_aa (= RMS^2 of a column of theta) beyond which the run is diverged."""
    d = thT.shape[1]
    scale2 = 1.0
    if thT.size:
        scale2 = max(scale2, float(np.max(np.einsum("ad,ad->a", thT, thT))) / d)
    if thsT.size:
        scale2 = max(scale2, float(np.max(np.einsum("kd,kd->k", thsT, thsT))) / d)
    return BLOWUP ** 2 * scale2


def check_state(Q: np.ndarray, amax: float, limit: float) -> str | None:
    """None if the state is sane, else the reason it is not."""
    if not np.isfinite(amax) or not np.all(np.isfinite(Q)):
        return "theta became NaN/inf"
    qmax = float(np.max(np.diag(Q))) if Q.size else 0.0
    if qmax > limit:
        return (f"|theta| exploded (max_a Q_aa = {qmax:.3g} > {limit:.3g}); for least squares "
                f"this happens beyond the stability limit tau < 2 (lam = 0), or when dt is too large")
    return None
