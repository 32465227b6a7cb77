"""Wall and CPU seconds of a DMFT solve at 1 and 2 threads (docs/performance.md, "Threads").

    python3 bench/bench_threads.py                          # Figure 1 and committee dt 0.02, 3 runs each
    python3 bench/bench_threads.py --case committee-0.01 --runs 1
    python3 bench/bench_threads.py --root /tmp/before       # another checkout (e.g. before dmftgen/threads.py)

Each run is a fresh subprocess (the OpenMP and BLAS settings are read when the libraries start):
one warm-up solve (T = 0.2) loads the cached kernels, then the timed solve at 2e4 paths reports
wall seconds (time.perf_counter) and CPU seconds of all threads (time.process_time), with
NUMBA_NUM_THREADS = 1 or 2 and the rest of the environment as given (so ``GOMP_SPINCOUNT=3000
python3 bench/bench_threads.py`` measures that variant). Runs alternate between the thread
counts so that a change of the machine's load hits both.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASES = {"figure1": ("logistic", dict(delta=2.0, tau=0.5, T=5.0, dt=0.05)),
         "committee-0.02": ("committee", dict(delta=3.0, tau=0.2, T=5.0, dt=0.02)),
         "committee-0.01": ("committee", dict(delta=3.0, tau=0.2, T=5.0, dt=0.01))}

ONE = r"""
import json, sys, time
import dmftgen
from dmftgen.config import Settings
from dmftgen.dmft import solve
from dmftgen.model import load_model
name, kw = json.loads(sys.argv[1])
m, st = load_model(name), Settings(**kw)
solve(m, st.replace(T=0.2), paths=400)
w, c = time.perf_counter(), time.process_time()
r = solve(m, st, paths=20000)
print("@@" + json.dumps({"wall": time.perf_counter() - w, "cpu": time.process_time() - c, "status": r.status,
                        "from": dmftgen.__file__}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=sorted(CASES), nargs="*", default=["figure1", "committee-0.02"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    a = ap.parse_args()
    print(f"bench_threads: dmftgen from {a.root}; load average {os.getloadavg()[0]:.1f}")
    for case in a.case:
        got = {1: [], 2: []}
        for _ in range(a.runs):
            for n in (1, 2):
                env = dict(os.environ, PYTHONPATH=a.root, NUMBA_NUM_THREADS=str(n))
                # cwd: ``python -c`` puts the working directory first on sys.path
                out = subprocess.run([sys.executable, "-c", ONE, json.dumps(CASES[case])], env=env, cwd=a.root,
                                     capture_output=True, text=True, check=True).stdout
                got[n].append(json.loads(out.split("@@")[-1]))
        for n, rs in got.items():
            assert all(r["from"].startswith(os.path.abspath(a.root)) for r in rs), rs
            print(f"  {case:15s} {n} thread{'s' if n > 1 else ' '}: wall "
                  + ", ".join(f"{r['wall']:.2f}" for r in rs) + " s; cpu "
                  + ", ".join(f"{r['cpu']:.2f}" for r in rs) + " s; " + ",".join(sorted({r['status'] for r in rs})))
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
