"""Run settings shared by the simulator, the DMFT solver and the comparison layer."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import numpy as np

from .errors import SettingsError

#: The most grid steps T / dt a Settings allows (the grid's times are all recorded: 10^7 of them
#: are 80 MB per recorded scalar; a DMFT solve is limited far below by its K^2 memory check).
MAX_STEPS = 10 ** 7


def whole(value) -> int:
    """int(value) for an integer or a whole-number float/string; ValueError otherwise (the one
    integer reader of options and settings that the CLI and the sweep pass as text or float)."""
    if isinstance(value, str):
        value = float(value) if any(c in value for c in ".eE") else int(value)
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value)


class Params(Mapping):
    """Read-only parameter overrides name -> float, sorted by name; hashable and picklable.

    (A ``types.MappingProxyType`` is neither, which kept ``Settings`` out of pickles, Dask tasks
    and dict keys.)
    """

    __slots__ = ("_items",)

    def __init__(self, items=()):
        object.__setattr__(self, "_items", dict(sorted(dict(items).items())))

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other):
        return dict(self.items()) == dict(other.items()) if isinstance(other, Mapping) else NotImplemented

    def __setattr__(self, name, value):
        raise AttributeError("Params is read-only")

    def __reduce__(self):
        return (Params, (self._items,))

    def __repr__(self) -> str:
        return repr(self._items)


@dataclass(frozen=True)
class Settings:
    """Validated run settings; frozen, hashable (usable as a dict key) and picklable.

    Parameters
    ----------
    delta : float
        Sample ratio delta = n / d > 0.
    tau : float
        Temperature tau = eta / B >= 0 of the stochastic gradient flow (0 is gradient flow).
    lam : float
        Ridge strength lambda >= 0; the regulariser gradient is h(theta) = lam*theta + grad H.
    T : float
        Horizon in SGF time t = k*eta/d.  Must be a whole number of steps, T = N dt (to relative
        1e-9): the grid ends at T exactly; otherwise SettingsError names the nearest valid T and dt.
    dt : float
        Time step of the Euler-Maruyama grid t_k = k*dt (shared by simulation and DMFT).
    seed : int
        Root of every random stream (numpy SeedSequence).
    params : mapping
        Overrides of model parameters by name; checked against the model by ``Model.param_vector``.
    """

    delta: float = 2.0
    tau: float = 0.5
    lam: float = 0.0
    T: float = 5.0
    dt: float = 0.05
    seed: int = 0
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        def finite(name):
            v = getattr(self, name)
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise SettingsError(f"`{name}` must be a number, got {v!r}.") from None
            if not math.isfinite(v):
                raise SettingsError(f"`{name}` must be finite, got {v!r}.")
            object.__setattr__(self, name, v)
            return v

        if finite("delta") <= 0:
            raise SettingsError(f"`delta` (= n/d) must be > 0, got {self.delta}. Use e.g. --delta 2.")
        if finite("tau") < 0:
            raise SettingsError(f"`tau` (= eta/B) must be >= 0, got {self.tau}. Use --tau 0 for gradient flow.")
        if finite("lam") < 0:
            raise SettingsError(f"`lam` (ridge strength) must be >= 0, got {self.lam}.")
        if finite("dt") <= 0:
            raise SettingsError(f"`dt` (time step) must be > 0, got {self.dt}. Use e.g. --dt 0.05.")
        if finite("T") <= 0:
            raise SettingsError(f"`T` (horizon) must be > 0, got {self.T}.")
        if self.T < self.dt * (1 - 1e-9):
            raise SettingsError(f"`T` = {self.T} is shorter than one step `dt` = {self.dt}.")
        steps = self.T / self.dt
        if steps > MAX_STEPS:
            raise SettingsError(
                f"`T` / `dt` = {self.T:g} / {self.dt:g} = {steps:.3g} steps: more than the {MAX_STEPS:.0e} grid points "
                f"a run records (every time t_k = k dt is kept). Use a larger --dt (e.g. {self.T / 1000:.3g}) or "
                "a shorter --T.")
        N = max(1, int(round(steps)))
        if abs(steps - N) > 1e-9 * max(1.0, steps):
            lo, hi = max(1, math.floor(steps)), math.ceil(steps)
            raise SettingsError(
                f"`T` = {self.T:g} is not a whole number of steps `dt` = {self.dt:g} (T/dt = {steps:.6g}): "
                f"the grid t_k = k dt would not end at T. Use --T {lo * self.dt:.10g} or "
                f"--T {hi * self.dt:.10g}, or --dt {self.T / hi:.10g}.")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise SettingsError(f"`seed` must be a non-negative integer, got {self.seed!r}.")
        object.__setattr__(self, "seed", int(self.seed))
        clean = {}
        for k, v in dict(self.params).items():
            try:
                clean[str(k)] = float(v)
            except (TypeError, ValueError):
                raise SettingsError(f"parameter `{k}` must be a number, got {v!r}.") from None
            if not math.isfinite(clean[str(k)]):
                raise SettingsError(f"parameter `{k}` must be finite, got {v!r}.")
        object.__setattr__(self, "params", Params(clean))

    @property
    def n_steps(self) -> int:
        """Number of Euler steps N = round(T / dt); the grid has N + 1 points."""
        return max(1, int(round(self.T / self.dt)))

    @property
    def times(self) -> np.ndarray:
        """Grid t_k = k dt, k = 0..N."""
        return self.dt * np.arange(self.n_steps + 1)

    def replace(self, **changes) -> "Settings":
        d = self.as_dict()
        d.update(changes)
        return Settings(**d)

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("delta", "tau", "lam", "T", "dt", "seed")}
        d["params"] = dict(self.params)
        return d
