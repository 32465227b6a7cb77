"""How the parallel kernels share the cores: idle workers sleep, path groups are handed out dynamically.

The DMFT path sweep (``dmft_paths``) and the stationary solver's paths (``dmft_stationary_paths``)
are numba ``prange`` loops over path groups, launched once per time row; between two launches the
main thread runs the serial theta-side. numba's OpenMP layer (libgomp) has two defaults that
cost a great deal there:

* idle workers spin-wait (``OMP_WAIT_POLICY`` unset) through the serial part, burning a core;
* each worker gets a fixed share of the groups (static schedule), so a launch waits for the
  slowest worker; when another job holds one core, that worker runs at half speed or less.

Measured, committee (m = 2, delta 3, tau 0.2, T 5, dt 0.02, 2e4 paths) on the 2-core
development machine while other jobs kept its load average at ~3: two spinning workers
21.5 / 22.4 s wall (15.3 / 17.7 s CPU) against 5.9 / 5.0 s wall (4.8 / 5.0 s CPU) on one
thread. :func:`sleep_when_idle` and :func:`solver_threads` address the two causes; docs/performance.md
has the measurements on an idle machine too.

A third default costs CPU without buying time: OpenBLAS's own threads (two here) take the
solver's few large products (the test observables' (2^16, m + k) products, the fixed point's
two-time products) and then spin-wait through everything else. The Figure 1 solve (logistic,
2e4 paths) on one numba thread: 0.60 s wall and 1.10 s CPU with two BLAS threads, 0.59 s wall and
0.59 s CPU with one; the committee case above 3.2 s wall / 4.9 s CPU against 3.0 s / 4.1 s. So
the DMFT solvers run with BLAS on one thread (:func:`solver_threads`); the simulators keep BLAS's
threads, which buy them wall time (SGD, d = 1024, 4 seeds: 0.79 s wall with two, 0.92 s with one).

None of this changes a result: each group writes its own slots of the group sums, which are
reduced in a fixed order after the launch, so the same seed gives the same bytes at any thread
count and under any schedule; the BLAS products run the same code on one thread or two
(tests/test_failures.py compares the bytes).
"""
from __future__ import annotations

import functools
import os

#: path groups handed to a worker at a time (numba's parallel chunk size; 0 would be static)
CHUNK = 1


def sleep_when_idle() -> None:
    """Idle OpenMP workers sleep instead of spinning: ``OMP_WAIT_POLICY=PASSIVE``, unless the user
    set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``. libgomp reads it once, when numba first starts
    its workers, so this runs on ``import dmftgen`` (it has no effect if numba's parallel workers
    were started earlier in the process)."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def solver_threads(fn):
    """Decorator for a DMFT solver entry point: while ``fn`` runs, its parallel kernels hand out
    path groups :data:`CHUNK` at a time (dynamic schedule, ``numba.parallel_chunksize``: a worker
    slowed by another job takes fewer groups) and BLAS runs on one thread (``threadpoolctl``).
    Both are set once per call, for the calling thread, and restored when it returns or raises;
    calls nest (a Richardson solve runs two solves). Not ``with numba.parallel_chunksize(...)``:
    that is one shared object keeping a single saved value, so a nested use left the outer
    caller's thread at the inner chunk size."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        import numba
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            before = numba.set_parallel_chunksize(CHUNK)
            try:
                return fn(*args, **kwargs)
            finally:
                numba.set_parallel_chunksize(before)

    return run
