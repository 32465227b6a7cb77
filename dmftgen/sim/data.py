"""Data of one simulated run: inputs X, frozen teacher, initial student, per-sample noise.

Everything is drawn from ``numpy.random.SeedSequence(seed, spawn_key=(index, role))`` so that

* the same ``(seed, index)`` reproduces the run bit for bit, whatever else was drawn before;
* the four roles (X, teacher, init, noise) and the dynamics noise (Brownian increments or
  minibatches, role ``DYNAMICS``) are independent streams: a test can keep the data of a run and
  redraw only its dynamics, or vice versa.

Shapes follow the simulator layout (see ``dmftgen/codegen/templates/sim.py``): parameters are
stored transposed, ``thT`` (m, d) and ``thsT`` (k, d), and ``s = X theta*`` (n, k) is computed
once, since the teacher columns never move (math.md section 1.5, "Planted signal").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SettingsError

#: spawn-key roles of the independent random streams of one seed index
X_STREAM, TEACHER_STREAM, INIT_STREAM, NOISE_STREAM, DYNAMICS = range(5)

DATA_KINDS = ("gaussian", "rademacher")


def stream(seed: int, index: int, role: int) -> np.random.Generator:
    """Generator of stream ``role`` of seed index ``index`` under root ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), int(role))))


@dataclass
class SimData:
    """Fixed data of one run (multi-pass: the same samples for the whole trajectory).

    Attributes
    ----------
    X : ndarray (n, d)
        Inputs, i.i.d. entries of variance 1/d (Gaussian or +-1/sqrt(d)).
    thsT : ndarray (k, d)
        Teacher theta*, transposed; entries i.i.d. N(0, teacher_std^2).
    th0T : ndarray (m, d)
        Initial student theta^0, transposed; entries i.i.d. N(0, init_std^2).
    s : ndarray (n, k)
        Teacher pre-activations r* = X theta* (frozen).
    z : ndarray (n, nz)
        Per-sample noise, column q drawn from the model's q-th noise law.
    rho : ndarray (k, k)
        Empirical teacher overlap theta*^T theta* / d.
    """

    X: np.ndarray
    thsT: np.ndarray
    th0T: np.ndarray
    s: np.ndarray
    z: np.ndarray
    rho: np.ndarray

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]


def draw_inputs(rng: np.random.Generator, n: int, d: int, data: str = "gaussian") -> np.ndarray:
    """X (n, d) with i.i.d. N(0, 1/d) (``gaussian``) or uniform +-1/sqrt(d) (``rademacher``) entries."""
    if data == "gaussian":
        X = rng.standard_normal((n, d))
        X *= 1.0 / np.sqrt(d)
        return X
    if data == "rademacher":
        B = rng.integers(0, 2, size=(n, d), dtype=np.int8)
        X = B.astype(np.float64)
        X *= 2.0 / np.sqrt(d)
        X -= 1.0 / np.sqrt(d)
        return X
    raise SettingsError(f"unknown data law `{data}`; known: {', '.join(DATA_KINDS)}.")


def draw_data(model, p: np.ndarray, n: int, d: int, seed: int, index: int,
              data: str = "gaussian") -> SimData:
    """Draw the data of seed index ``index`` (see module docstring for the streams).

    Parameters
    ----------
    model : dmftgen.model.Model
        Supplies m, k, the noise laws and init_std / teacher_std (possibly parameter-dependent,
        evaluated at ``p``).
    p : ndarray
        Parameter vector of the run.
    n, d : int
        Number of samples and dimension.
    seed, index : int
        Root seed and seed index.
    data : {"gaussian", "rademacher"}
        Law of the entries of X.
    """
    m, k = model.m, model.k
    X = draw_inputs(stream(seed, index, X_STREAM), n, d, data)
    t_std = float(model.teacher_std_value(p))
    i_std = float(model.init_std_value(p))
    thsT = stream(seed, index, TEACHER_STREAM).standard_normal((k, d)) * t_std
    th0T = stream(seed, index, INIT_STREAM).standard_normal((m, d)) * i_std
    rng = stream(seed, index, NOISE_STREAM)
    laws = list(model.noise.values())
    z = np.empty((n, len(laws)))
    for q, law in enumerate(laws):
        z[:, q] = law.sample(rng, (n,))
    s = np.ascontiguousarray(X @ thsT.T) if k else np.zeros((n, 0))
    rho = thsT @ thsT.T / d
    return SimData(X=X, thsT=np.ascontiguousarray(thsT), th0T=np.ascontiguousarray(th0T),
                   s=s, z=np.ascontiguousarray(z), rho=rho)
