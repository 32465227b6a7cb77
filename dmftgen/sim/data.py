"""Data of one simulated run: inputs X, frozen teacher, initial student, per-sample noise.

Everything is drawn from ``numpy.random.SeedSequence(seed, spawn_key=(index, role))`` so that

* the same ``(seed, index)`` reproduces the run bit for bit, whatever else was drawn before;
* the four roles (X, teacher, init, noise) and the dynamics noise (Brownian increments or
  minibatches, role ``DYNAMICS``) are independent streams: a test can keep the data of a run and
  redraw only its dynamics, or vice versa.

Shapes follow the simulator layout (see ``dmftgen/codegen/templates/sim.py``): parameters are
stored transposed, ``thT`` (m, d) and ``thsT`` (k, d), and ``s = X theta*`` (n, k) is computed
once, since the teacher columns never move (docs/theory.md §1, "Planted signal").
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
    seed, index : int
        Where X comes from (see ``input_block``).
    law : str
        Law of the entries of X.
    matrix_free : bool
        X is not stored (``X is None``); ``blocks()`` regenerates it from the seed.
    """

    X: np.ndarray | None
    thsT: np.ndarray
    th0T: np.ndarray
    s: np.ndarray
    z: np.ndarray
    rho: np.ndarray
    seed: int = 0
    index: int = 0
    law: str = "gaussian"

    @property
    def n(self) -> int:
        return self.s.shape[0]

    @property
    def d(self) -> int:
        return self.th0T.shape[1]

    @property
    def matrix_free(self) -> bool:
        return self.X is None

    def blocks(self):
        """Yield (row slice, X rows): all of X at once when stored, else block by block regenerated
        from the seed (matrix-free)."""
        n, d = self.n, self.d
        if self.X is not None:
            yield slice(0, n), self.X
            return
        for b in range(n_blocks(n)):
            sl = block_rows(n, b)
            yield sl, input_block(self.seed, self.index, b, sl.stop - sl.start, d, self.law)


#: rows of X per random stream: X is drawn (and, matrix-free, regenerated) in blocks of this many
#: rows, block b from its own stream, so X depends on (seed, index, d, law) and not on n or on how
#: it is stored.
BLOCK_ROWS = 64


def input_block(seed: int, index: int, b: int, rows: int, d: int, data: str = "gaussian") -> np.ndarray:
    """Rows [b*BLOCK_ROWS, b*BLOCK_ROWS + rows) of X, i.i.d. entries of variance 1/d.

    ``gaussian``: N(0, 1/d); ``rademacher``: uniform on {-1/sqrt(d), +1/sqrt(d)}. Block b comes from
    ``SeedSequence(seed, spawn_key=(index, X_STREAM, b))``; a shorter last block is a prefix of
    the full one (numpy draws row-major), so n only decides where X stops.
    """
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), X_STREAM, int(b))))
    if data == "gaussian":
        X = rng.standard_normal((rows, d))
        X *= 1.0 / np.sqrt(d)
        return X
    if data == "rademacher":
        X = rng.integers(0, 2, size=(rows, d), dtype=np.int8).astype(np.float64)
        X *= 2.0 / np.sqrt(d)
        X -= 1.0 / np.sqrt(d)
        return X
    raise SettingsError(f"unknown data law `{data}`; known: {', '.join(DATA_KINDS)}.")


def n_blocks(n: int) -> int:
    return -(-n // BLOCK_ROWS)


def block_rows(n: int, b: int) -> slice:
    """Row range of block b."""
    return slice(b * BLOCK_ROWS, min(n, (b + 1) * BLOCK_ROWS))


def draw_inputs(seed: int, index: int, n: int, d: int, data: str = "gaussian") -> np.ndarray:
    """The whole X (n, d), assembled from its blocks (see ``input_block``)."""
    X = np.empty((n, d))
    for b in range(n_blocks(n)):
        sl = block_rows(n, b)
        X[sl] = input_block(seed, index, b, sl.stop - sl.start, d, data)
    return X


def draw_data(model, p: np.ndarray, n: int, d: int, seed: int, index: int,
              data: str = "gaussian", matrix_free: bool = False) -> SimData:
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
    matrix_free : bool
        Do not keep X (memory O((n + d) m) instead of O(n d)); the simulator regenerates it block
        by block at every step. Same X, so same numbers up to summation order.
    """
    if data not in DATA_KINDS:
        raise SettingsError(f"unknown data law `{data}`; known: {', '.join(DATA_KINDS)}.")
    m, k = model.m, model.k
    t_std = float(model.teacher_std_value(p))
    i_std = float(model.init_std_value(p))
    thsT = stream(seed, index, TEACHER_STREAM).standard_normal((k, d)) * t_std
    th0T = stream(seed, index, INIT_STREAM).standard_normal((m, d)) * i_std
    rng = stream(seed, index, NOISE_STREAM)
    laws = list(model.noise.values())
    z = np.empty((n, len(laws)))
    for q, law in enumerate(laws):
        z[:, q] = law.sample(rng, (n,))
    thsT = np.ascontiguousarray(thsT)
    data_ = SimData(X=None, thsT=thsT, th0T=np.ascontiguousarray(th0T), s=np.zeros((n, k)),
                    z=np.ascontiguousarray(z), rho=thsT @ thsT.T / d, seed=int(seed), index=int(index),
                    law=data)
    if not matrix_free:
        data_.X = draw_inputs(seed, index, n, d, data)
    if k:  # frozen teacher pre-activations r* = X theta*, one pass
        for sl, Xb in data_.blocks():
            data_.s[sl] = Xb @ thsT.T
    return data_
