"""Options of a DMFT solve: one typed, frozen record, validated when it is made.

``solve(model, settings, paths=..., **options)`` turns its keyword options into a
:class:`SolveOptions` (an unknown name or a bad value is one :class:`~dmftgen.errors.SettingsError`);
the drivers read its fields. The symbols are those of docs/theory.md: G path groups, P_J tangent
paths, K = T/dt steps, m the student width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from ..config import whole
from ..errors import SettingsError

#: replicas of the default error bars (7 degrees of freedom; measured calibration in README).
AUTO_REPLICAS = 8

_CHOICES = {"gram": ("auto", "qr", "cholesky"), "nu": ("auto", "stein", "pathwise"),
            "sampler": ("eigh", "cholesky"), "tangent_cv": (True, False, "linear", "pathwise"),
            "histories": ("bfloat16", "float64")}


@dataclass(frozen=True)
class SolveOptions:
    """The options of one DMFT solve (defaults in brackets).

    Attributes
    ----------
    groups : int
        G [20]: independent path groups (batch means; the parallel units of the path kernel), >= 2.
    tangent_paths : int or None
        P_J [None: automatic]: paths carrying the adjoint response tangents; automatic: at most the
        r-side's cost and ``tangent_budget``, at least P / 16
        (:func:`dmftgen.dmft.tangents.total_tangent_paths`). Either way the count per group is
        rounded up to fill the kernel's blocks of 16 lanes (a multiple of 16, or 1, 2, 4, 8; capped at
        the group size; :func:`dmftgen.dmft.tangents.whole_lanes`); the result's meta reports
        the count used.
    tangent_budget : float
        [4e10] multiply-adds allowed for the tangents when automatic (a tangent path costs
        K^3 m^3 / 6, twice that with the control variate); never below P / 16 paths
        (``tangents.SHARE``), whatever the budget.
    pivot_tol : float
        [1e-11] relative pivot clipping of the incremental Cholesky of S_U.
    gram : {"auto", "qr", "cholesky"}
        ["auto"] causal factor L L^T = S_U: QR of the increments (stable near tau = 0), Cholesky of
        S_U, or QR when the white fraction tau delta / (dt + tau delta) is below 0.05.
    qr_tol : float
        [1e-12] rank-revealing QR: a residual below qr_tol |dL_k| adds no direction.
    nu : {"auto", "stein", "pathwise"}
        ["auto"] estimator of the teacher drift nu (docs/theory.md section 3): Stein for labels
        that jump, pathwise otherwise.
    damping : float
        alpha [0.3] in [0, 1): fixed point, new <- (1 - alpha) new + alpha old.
    max_iter : int
        [200] fixed point: iteration cap.
    tol : float
        [1e-8] fixed point: largest relative change of the kernels at convergence.
    sampler : {"eigh", "cholesky"}
        ["eigh"] fixed point: symmetric square root of S_U, or its causal Cholesky factor.
    blowup : float
        [1e10] train loss, <ell ell> or a kernel entry beyond this counts as diverged.
    threads : int or None
        [None: numba's default] numba threads (set globally).
    jackknife : bool
        [True] error bars of Q, M and the test observables by group jackknife (one solve).
    replicas : "auto" or int
        R ["auto": min(8, paths // (2 G)), 1 if that is < 2]: independent sub-solves of paths/R
        paths whose spread gives the error bars (feedback of kernel errors included).
    theta_paths : int or None
        P_theta [None: automatic]: theta-paths of the Monte Carlo theta-side (declared H).
    refine : int
        L [0]: draw the noises on the grid dt / 2^L and aggregate (couples solves at different dt).
    tangent_cv : bool, "linear" or "pathwise"
        [True] control variate of the Monte Carlo tangents (grad ell -> Gamma on the same dB):
        "pathwise" on every tangent path, "linear" its first-order part at the paths' mean noise;
        True picks (:func:`dmftgen.dmft.tangents.control_variate`).
    static_qmc : bool
        [True] the per-path static draws (r*, initial field, label noises) by randomised
        quasi-Monte Carlo (scrambled Sobol) instead of i.i.d. (:mod:`dmftgen.dmft.streams`: the
        test-loss variance / 3.3, the train loss's / 2.1 in the Figure 1 setting); False: i.i.d.
    histories : {"bfloat16", "float64"}
        ["bfloat16"] storage of the paths' histories (Gaussian-input noises, increments, pathwise-nu
        history), which the sweep reads once per row: bfloat16 halves its bytes against float32
        (each entry rounded by <= 2^-8 of itself; the estimates move by <= 4e-2 of their error
        bars, typically 5e-3, docs/performance.md); "float64" stores them exactly, as a check or for a solve that must
        equal another to round-off (the fixed point, which writes float64 increments itself:
        ``dmftgen.dmft.rside.RSide.alloc``).
    check_alpha : float
        [1e-3] family-wise false-alarm rate of the solve's statistical self-checks, in (0, 1): the
        probability that a correct solve is reported ``inaccurate`` (:mod:`dmftgen.dmft.checks`;
        split among the replicas and the two solves of a Richardson pair).
    """

    groups: int = 20
    tangent_paths: int | None = None
    tangent_budget: float = 4e10
    pivot_tol: float = 1e-11
    gram: str = "auto"
    qr_tol: float = 1e-12
    nu: str = "auto"
    damping: float = 0.3
    max_iter: int = 200
    tol: float = 1e-8
    sampler: str = "eigh"
    blowup: float = 1e10
    threads: int | None = None
    jackknife: bool = True
    replicas: int | str = "auto"
    theta_paths: int | None = None
    refine: int = 0
    tangent_cv: bool | str = True
    static_qmc: bool = True
    histories: str = "bfloat16"
    check_alpha: float = 1e-3

    @classmethod
    def from_kwargs(cls, options: dict) -> "SolveOptions":
        """The options of ``solve(**options)``; an unknown name is a SettingsError."""
        known = names()
        unknown = set(options) - set(known)
        if unknown:
            raise SettingsError(f"unknown solve option(s) {sorted(unknown)}; known: {sorted(known)}.")
        return cls(**options)

    def __post_init__(self):
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise SettingsError(f"option {name}={value!r}: use "
                                    f"{', '.join(repr(c) for c in choices[:-1])} or {choices[-1]!r}.")
        if not 0.0 <= _number(self, "damping", float) < 1.0:
            raise SettingsError(f"option damping={self.damping}: must be in [0, 1).")
        if _number(self, "groups", int) < 2:
            raise SettingsError(f"option groups={self.groups}: need at least 2 path groups for error bars.")
        # ranges: each value a solve can run with (0 or negative counts crashed or were ignored)
        for name in ("tangent_budget", "tol", "blowup"):
            if not 0.0 < _number(self, name, float) < math.inf:
                raise SettingsError(f"option {name}={getattr(self, name)}: must be a finite number > 0.")
        for name in ("pivot_tol", "qr_tol"):
            if not 0.0 <= _number(self, name, float) < 1.0:
                raise SettingsError(f"option {name}={getattr(self, name)}: must be in [0, 1) (a relative tolerance).")
        if not 0.0 < _number(self, "check_alpha", float) < 1.0:
            raise SettingsError(f"option check_alpha={self.check_alpha}: must be in (0, 1) (a "
                                "false-alarm rate, e.g. 1e-3).")
        if _number(self, "max_iter", int) < 1:
            raise SettingsError(f"option max_iter={self.max_iter}: the fixed point needs at least 1 iteration.")
        if _number(self, "refine", int) < 0:
            raise SettingsError(f"option refine={self.refine}: must be >= 0 (noise on dt / 2^refine).")
        for name in ("tangent_paths", "threads", "theta_paths"):
            if getattr(self, name) is not None and _number(self, name, int) < 1:
                raise SettingsError(f"option {name}={getattr(self, name)}: use an integer >= 1 (or leave it "
                                    "automatic).")
        if self.replicas not in (None, "auto"):
            if _number(self, "replicas", int) < 1:
                raise SettingsError(f"option replicas={self.replicas}: use 'auto' or an integer >= 1.")

    def as_dict(self) -> dict:
        """The options as a plain dict (field order), for ``meta["options"]``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def n_replicas(self, paths: int) -> int:
        """R: ``replicas``, or for "auto" min(AUTO_REPLICAS, paths // (2 G)) (each replica needs
        2 paths per group), 1 if fewer than 2 replicas fit."""
        if self.replicas in (None, "auto"):
            R = min(AUTO_REPLICAS, int(paths) // (2 * self.groups))
            return R if R >= 2 else 1
        return int(self.replicas)

    def but(self, **changes) -> "SolveOptions":
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)


def as_options(options) -> SolveOptions:
    """``options`` as a SolveOptions: one already, a dict of solve options, or None (defaults)."""
    if isinstance(options, SolveOptions):
        return options
    return SolveOptions.from_kwargs(dict(options or {}))


def names() -> tuple:
    """The option names, in field order."""
    return tuple(f.name for f in fields(SolveOptions))


def _number(opts, name, kind):
    """The field ``name`` as ``kind`` (int or float), stored back converted; a SettingsError
    naming the option if it is not a number (the CLI and the sweep pass strings)."""
    value = getattr(opts, name)
    try:
        if isinstance(value, bool) or value is None:
            raise TypeError
        conv = kind(value) if kind is float else whole(value)
    except (TypeError, ValueError):
        what = "'auto' or an integer >= 1" if name == "replicas" else (
            "an integer" if kind is int else "a number")
        raise SettingsError(f"option {name}={value!r}: use {what}.") from None
    if conv != value or type(conv) is not type(value):
        object.__setattr__(opts, name, conv)
    return conv
