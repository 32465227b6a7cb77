r"""Memory estimate of a DMFT solve, checked before anything is allocated.

The solver (:mod:`dmftgen.dmft.forward`, sweep method, h = lam theta) holds, with P paths, N steps,
m student and k teacher columns, G path groups, NI = N m, NN = (N + 1) m, P_J tangent paths
and f = 2^refine (all float64, 8 bytes):

.. math::

    \text{path histories}\; 8P\,[N f m + 2 N f + N m\,(\tfrac12 + \tfrac12 [\text{QR}] + [f>1]) + \tfrac12 N m
    + (N+1) m + \tfrac12 N m k\,[\nu\ \text{pathwise}]]
    \;+\; \text{tangents}\; 8 P_J (2N + 1) m^2
    \;+\; \text{group sums}\; 8 G\, NN^2\,[P_J > 0] + 8 G\, NI^2
    \;+\; \text{theta side}\; 8 \cdot 11.5\, NN^2 ,

where the forward sweep (``method="sweep"``, h = lam theta, not the group jackknife of
``replicas=1``) keeps only the current row of each two-time group sum (issue 12, "row mode",
``checks.RowRecord``): the group sums are then 8 G m (NN [P_J > 0] + NI) + 8 * 3 G (N+1) m^2 (k + 2 m)/3,
so the whole solve is O(P K m + K^2 m^2) instead of O(G K^2 m^2). With R > 1 replicas (the
default) the replicas run one after the other; their two-time results (C_theta, R_theta, K_ell,
R_ell, S_U) are summed as they finish (5 NN^2, not 5 R NN^2), and the test observables are
evaluated once, at the end: the peak is max(one replica, the ~4 MiB of the test sample) + 8 * 5 NN^2;

(eta drawn on the fine grid and summed, dB scaled into a copy, dL, the pre-activation
``wpre`` (one row in the sweep, all N + 1 in the fixed point), the pathwise-nu history ``b_hist``; eta, dL and b_hist are bfloat16 (``rside.HIST``:
a quarter of the 8 bytes; dL float64 where the QR sampler factors it, [QR]); the adjoint histories ``a_hist``/``g_hist``; the
two-time group sums ``su_sum`` and ``kl_sum`` (the control variate is subtracted into ``kl_sum``
in place, no second array); the Cholesky factors, W and the
theta-side matrices R, R^T, K_ell, C, ... of size NN^2, and the packed copies of the nonzero
halves of R, L and W, ``_linalg.PackedRows``: 1.5 NN^2 together).  ``tests/test_failures.py`` checks it
against the peak traced by ``tracemalloc`` on small solves.

:func:`check_memory` refuses a solve whose estimate exceeds 80 % of the memory this process may
use (physical memory, the cgroup limit, RLIMIT_AS/RLIMIT_DATA less what is already mapped; the
environment variable ``DMFTGEN_MEMORY_LIMIT`` -- bytes, or with a K/M/G suffix -- overrides),
with the figure and a hint, like ``simulate`` does for the data matrix.
"""
from __future__ import annotations

import os

from ..errors import SettingsError
from .options import as_options
from .sampler import keep_exact_increments
from .tangents import tangent_paths_per_group

FRACTION = 0.8
FIXED_BYTES = 4 * 2 ** 20  # size-independent: the test observables' common sample (measured ~4 MiB)


def _tangent_paths(model, P_total, N, R, opts, tau, linear_ell) -> int:
    """P_J of one replica as the solver chooses it (``tangents.py``); 0 for constant-Jacobian models."""
    if linear_ell:
        return 0
    G = opts.groups
    P = max(int(P_total) // R, 1)
    return tangent_paths_per_group(P_total, N, model.m, G, opts, tau, R, P // G) * G


def estimate_bytes(model, settings, paths: int, options: dict | None = None, method: str = "sweep") -> float:
    """Bytes the solve of ``model`` at ``settings`` with ``paths`` paths allocates at its peak."""
    opts = as_options(options)
    P, N, m, k = int(paths), int(settings.n_steps), int(model.m), int(model.k)
    G = opts.groups
    # replicas run one after the other: the peak is one replica of P / R paths, plus the running
    # sums of the replicas' two-time results (C_theta, R_theta, K_ell, R_ell, S_U: 5 arrays, not R x 5)
    R = opts.n_replicas(P)
    kept = (5 * ((N + 1) * m) ** 2 * 8.0) if R > 1 else 0.0
    P_total, P = P, max(P // R, 1)
    f = 2 ** opts.refine
    NI, NN = N * m, (N + 1) * m
    linear = discontinuous = reg = False
    try:
        from ..codegen import load_kernels

        kern = load_kernels(model)
        linear, discontinuous = bool(kern.LINEAR_ELL), bool(kern.DISCONTINUOUS)
        reg = bool(getattr(kern, "HAS_REG", False))
    except Exception:  # kernels missing/stale: the solve itself will say so; estimate conservatively
        pass
    pathwise = k > 0 and not discontinuous and not linear and opts.nu != "stein"
    PJ = _tangent_paths(model, P_total, N, R, opts, settings.tau, linear)
    # dL float64 where the QR factors it or the increments are nearly dependent (forward.sweep)
    exact_dL = keep_exact_increments(opts.gram, settings.tau, settings.delta, settings.dt)
    # in units of 8 bytes: eta drawn in float64 (N f m) and kept in bfloat16 (N m / 4), dB (2 N f),
    # dL (bfloat16 unless kept exact), the refine sum's temporary, wpre, b_hist (bfloat16;
    # dL and b_hist float64 in the fixed point, RSide.alloc)
    f64 = opts.histories == "float64"
    hist = 1.0 if method == "fixed-point" or f64 else 0.25   # a dL / b_hist entry
    per_path = (N * f * m + 2 * N * f + N * m * ((1.0 if exact_dL else hist) + (1 if f > 1 else 0))
                + (1.0 if f64 else 0.25) * N * m
                + ((N + 1) * m if method == "fixed-point" else m) + (hist * N * m * k if pathwise else 0))
    tangents = PJ * (2 * N + 1) * m * m
    # row mode (solver.Solve.use_row_sums): only row k of su_sum / kl_sum, plus the checks' record
    rows = (method or "sweep") == "sweep" and not reg and not (opts.jackknife and R == 1)
    if rows:
        group = G * m * NI + (G * m * NN if PJ else 0) + G * (N + 1) * m * (2 * m + k)
    else:
        group = G * NI * NI + (G * NN * NN if PJ else 0)
    theta_side = 11.5 * NN * NN  # 10 square arrays + the packed halves of R, L, W
    solver = 8.0 * (P * per_path + tangents + group + theta_side)
    # + the common quasi-Monte Carlo sample of the test observables and its gradient copies (~4 MiB):
    # with replicas they are evaluated once, after the replicas' solvers are gone (issue 12)
    if R > 1:
        return max(solver, FIXED_BYTES) + kept
    return solver + FIXED_BYTES


def _parse_bytes(text: str) -> float:
    t = text.strip().upper().rstrip("B")
    mult = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}.get(t[-1:], 1)
    return float(t[:-1] if mult > 1 else t) * mult


def _mapped_bytes() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def memory_limit() -> tuple[float | None, str]:
    """(bytes this process may still allocate, where the figure comes from); None if unknown."""
    env = os.environ.get("DMFTGEN_MEMORY_LIMIT")
    if env:
        try:
            return _parse_bytes(env), "DMFTGEN_MEMORY_LIMIT"
        except ValueError:
            raise SettingsError(f"DMFTGEN_MEMORY_LIMIT={env!r} is not a size (e.g. 4G).") from None
    cands = []
    try:
        cands.append((float(os.sysconf("SC_PAGE_SIZE")) * float(os.sysconf("SC_PHYS_PAGES")), "physical memory"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                v = fh.read().strip()
            if v.isdigit() and float(v) < 2 ** 60:
                cands.append((float(v), "the cgroup memory limit"))
        except OSError:
            pass
    try:
        import resource

        for lim, name in ((resource.RLIMIT_AS, "ulimit -v"), (resource.RLIMIT_DATA, "ulimit -d")):
            soft = resource.getrlimit(lim)[0]
            if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
                cands.append((max(float(soft) - _mapped_bytes(), 0.0), f"the {name} limit"))
    except (ImportError, ValueError, OSError):
        pass
    if not cands:
        return None, "unknown"
    return min(cands)


def check_memory(model, settings, paths: int, options: dict | None = None, method: str = "sweep") -> float:
    """Raise SettingsError (figure + hint) if the solve would need more than 80 % of the memory
    available; returns the estimate in bytes otherwise."""
    need = estimate_bytes(model, settings, paths, options, method)
    limit, source = memory_limit()
    if limit is not None and need > FRACTION * limit:
        N = settings.n_steps
        raise SettingsError(
            f"the DMFT solve needs about {need / 2**30:.2f} GiB ({paths} paths x {N} steps; two-time "
            f"kernels of {N + 1} x {N + 1} per path group), more than {FRACTION:.0%} of the "
            f"{limit / 2**30:.2f} GiB available ({source}). Use fewer --paths (memory grows like "
            "paths x steps), a coarser --dt or a shorter --T (steps^2), or solve-long for long horizons.")
    return need
