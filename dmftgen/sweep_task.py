"""One sweep point as a pure Dask task (:func:`run_point`), with its thread settings and the
evidence that the kernels were compiled once per worker (see :mod:`dmftgen.sweep`)."""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from .config import Settings


# ----------------------------------------------------------------------------------------------
# The task
# ----------------------------------------------------------------------------------------------
def _task_threads(threads: int | None) -> int:
    """Threads one task may use: the option, else the Dask worker's (one task per thread slot)."""
    if threads:
        return int(threads)
    try:
        from distributed import get_worker
        w = get_worker()
    except (ImportError, ValueError):
        return 0  # not in a Dask worker: leave the caller's configuration alone
    n = getattr(getattr(w, "state", w), "nthreads", 1)
    # A worker with n thread slots runs n tasks at once: give each task one thread, never n*n.
    return 1 if n > 1 else int(n)


def _set_threads(n: int) -> dict:
    """numba (per calling thread) and, if threadpoolctl is installed, BLAS threads -> n."""
    import numba

    info = {"threads": n}
    n = max(1, min(int(n), int(numba.config.NUMBA_NUM_THREADS)))
    numba.set_num_threads(n)
    info["numba_threads"] = int(numba.get_num_threads())
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        # Dask's nanny starts workers with OMP/OPENBLAS/MKL_NUM_THREADS=1 already.
        info["blas_threads"] = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    else:
        threadpool_limits(n)
        info["blas_threads"] = n
    return info


def _overloads(kern) -> tuple[int, int, int]:
    """(compiled specialisations, disk-cache hits, cache misses) over the kernel module's dispatchers."""
    from numba.core.registry import CPUDispatcher

    n = hits = misses = 0
    for v in vars(kern).values():
        if isinstance(v, CPUDispatcher):
            n += len(v.overloads)
            st = v.stats
            hits += sum(st.cache_hits.values())
            misses += sum(st.cache_misses.values())
    return n, hits, misses


def _call(what, model, settings, options):
    """The single run as a Result (compare: its table flattened to ``<observable>_<side>`` columns)."""
    if what == "simulate":
        from .sim import simulate
        return simulate(model, settings, progress=False, **options)
    if what == "solve":
        from .dmft import solve
        return solve(model, settings, **options)
    if what == "stationary":
        return _stationary_point(model, settings, options)
    from .comparison import compare

    return compare(model, settings, **options)  # a Result: the table's columns (kind "comparison")


def _defaults(func) -> dict:
    """The keyword defaults of a single-run function (one source: its signature)."""
    import inspect

    return {k: v.default for k, v in inspect.signature(func).parameters.items()
            if v.default is not inspect.Parameter.empty}


def check_point(what, model, settings, options) -> None:
    """Validate one point as its single-run function does before it computes anything, without
    running it: the same validators (simulator options ``sim.driver.resolve_run``, the solver's
    ``SolveOptions`` and ``check_paths``, the stationary ``resolve_options``); a SettingsError
    names the option and the fix."""
    opts = dict(options)
    opts.pop("threads", None)
    if what == "simulate":
        from .sim import simulate
        from .sim.driver import resolve_run

        kw = {**_defaults(simulate), **opts}
        resolve_run(model, settings, d=kw["d"], seeds=kw["seeds"], method=kw["method"], batch=kw["batch"],
                    eta=kw["eta"], replace=kw["replace"], data=kw["data"], theta_rows=kw["theta_rows"],
                    matrix_free=kw["matrix_free"])
    elif what == "compare":
        from .comparison import compare
        from .sim.driver import resolve_run

        kw = {**_defaults(compare), **opts}
        for meth in kw["methods"]:
            sgd = meth == "sgd"
            resolve_run(model, settings, d=kw["d"], seeds=kw["seeds"], method=meth,
                        batch=kw["batch"] if sgd else None, eta=kw["eta"] if sgd else None,
                        replace=True, data="gaussian", theta_rows=0)
        _check_solve(model, settings, kw["paths"], kw["dmft_method"], {})
    elif what == "solve":
        from .dmft import solve

        own = _defaults(solve)  # solve's own keywords; the rest are SolveOptions (e.g. replicas)
        kw = {**own, **opts}
        _check_solve(model, settings, kw["paths"], kw["method"], {k: v for k, v in opts.items() if k not in own})
    elif what == "stationary":
        from .dmft.stationary_state import resolve_options

        resolve_options(settings, opts)


def _check_solve(model, settings, paths, method, options) -> None:
    from .dmft.options import SolveOptions
    from .dmft.solver import check_solve

    check_solve(model, settings, paths, method, SolveOptions.from_kwargs(options))


def _stationary_point(model, settings, options):
    """``--what stationary``: the stationary state (dmftgen.dmft.stationary_state), one point t = inf."""
    from .dmft.stationary_state import stationary

    return stationary(model, settings, **options)


def _time_axis(spec, points) -> np.ndarray:
    """The t coordinate of the combined dataset: the settings' grid, or [inf] for stationary states."""
    if spec.what == "stationary":
        return np.array([np.inf])
    return Settings(**points[0].settings).times


def run_point(model_ref: str, settings_dict: dict, what: str, options: dict) -> dict:
    """Run one grid point; pure (same inputs -> same numbers) and picklable by name.

    Parameters
    ----------
    model_ref : str
        Built-in model name or absolute path; the model and its generated kernels are loaded here,
        in the worker, through the per-process caches of ``load_model``/``load_kernels``.
    settings_dict : dict
        ``Settings.as_dict()`` of this point.
    what : {"solve", "simulate", "compare"}
    options : dict
        Keyword arguments of the single-run function; ``threads`` (optional) sets the numba/BLAS
        threads of this task (default: 1 per Dask worker thread slot).

    Returns
    -------
    dict
        ``{"data": {name: ndarray}, "meta": dict, "status": str, "message": str}`` -- a
        :class:`Result` as plain data; ``meta["worker"]`` has pid, host, thread settings, whether
        this task imported the kernels, and the dispatcher specialisations it added.
    """
    import socket

    from .codegen import PACKAGE, load_kernels
    from .model import load_model

    options = dict(options)
    threads = _task_threads(options.pop("threads", None))
    tinfo = _set_threads(threads) if threads else {}
    t0 = time.perf_counter()
    model = load_model(model_ref)
    imported = f"{PACKAGE}.{model.name}" not in sys.modules
    kern = load_kernels(model)
    before, hits0, miss0 = _overloads(kern)
    res = _call(what, model, Settings(**settings_dict), options)
    after, hits1, miss1 = _overloads(kern)
    meta = dict(res.meta)
    meta["worker"] = {"pid": os.getpid(), "host": socket.gethostname(), **tinfo,
                      "kernels_imported": imported, "new_overloads": after - before,
                      "cache_hits": hits1 - hits0, "cache_misses": miss1 - miss0,
                      "task_s": time.perf_counter() - t0}
    return {"data": dict(res.data), "meta": meta, "status": res.status, "message": res.message}
