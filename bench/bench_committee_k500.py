"""Issue 12: one timed committee solve at K = 500 (delta 3, tau 0.2, T 5, dt 0.01), CPU seconds.

    NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE \\
        PYTHONPATH=$PWD python3 bench/bench_committee_k500.py 20000 '{}' [out.npz]
    ... bench_committee_k500.py 4000 '{"tangent_paths": 20}'

Arguments: paths, a JSON dict of solve options, optionally an .npz for the float curves (to
compare two checkouts: the differences against the between-replica errors). A warm-up solve
loads / compiles the kernels first; the timed call prints one JSON line: CPU and wall seconds,
the tangent count of the meta, the test loss at T and its error, the load average.
Measured (one thread, this session's 2-core machine, load ~2.5, median of 3): P = 2e4 default
255 s (fde19e5, one run) -> 57 s (c64c459); P = 4000, tangent_paths = 20: 225 s -> 21.6 s.
"""
import json
import os
import sys
import time

import numpy as np

from dmftgen import Settings, solve
from dmftgen.model import load_model

m = load_model("committee")
solve(m, Settings(delta=3, tau=0.2, T=0.2, dt=0.1), paths=400)
P = int(sys.argv[1])
kw = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
st = Settings(delta=3, tau=0.2, T=5, dt=0.01)
c0, w0 = time.process_time(), time.perf_counter()
r = solve(m, st, paths=P, **kw)
c1, w1 = time.process_time(), time.perf_counter()
print(json.dumps({"P": P, "kw": kw, "cpu_s": round(c1 - c0, 2), "wall_s": round(w1 - w0, 2),
                  "tangents": r.meta["tangents"], "test_loss_T": float(np.asarray(r["test_loss"])[-1]),
                  "err_T": float(np.asarray(r["test_loss_err"])[-1]), "load": os.getloadavg()[0]}))
if len(sys.argv) > 3:
    np.savez(sys.argv[3], **{k: np.asarray(r[k]) for k in r.keys() if np.asarray(r[k]).dtype.kind == "f"})
