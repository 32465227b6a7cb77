"""Benchmark the code generator: `dmftgen generate` for all built-in models from scratch, and the
time to import cached kernels (and make the first call) in a fresh process.

    python bench/bench_codegen.py [--repeat 5]

Prints medians over repeats.  Each repeat of the first figure runs the CLI in a fresh process
into an empty DMFTGEN_GENERATED directory (so every file is derived, emitted and written).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

FRESH_IMPORT = r"""
import time
t0 = time.perf_counter()
import numpy as np
from dmftgen.model import load_model
from dmftgen.codegen import load_kernels
m = load_model("logistic")
k = load_kernels(m)
t1 = time.perf_counter()
r = np.zeros((4, 1)); o = np.empty((4, 1))
k.ell_batch(r, r, r, m.param_vector(), o)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    gen = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, DMFTGEN_GENERATED=d)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "dmftgen", "generate"], env=env, check=True, capture_output=True)
            gen.append(time.perf_counter() - t)
    subprocess.run([sys.executable, "-c", FRESH_IMPORT], check=True, capture_output=True)  # warm the cache
    imp, call = [], []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", FRESH_IMPORT], check=True, capture_output=True, text=True)
        a, b = map(float, out.stdout.split())
        imp.append(a)
        call.append(b)
    print(f"dmftgen generate, all built-in models from scratch (fresh process): median {statistics.median(gen):.2f} s "
          f"(min {min(gen):.2f}, n={len(gen)})")
    print(f"fresh process: import + load_model + load_kernels: median {statistics.median(imp):.3f} s; "
          f"first cached kernel call (incl. numba/LLVM init): median {statistics.median(call):.3f} s")


if __name__ == "__main__":
    main()
