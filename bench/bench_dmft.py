"""Benchmark the DMFT solver: the logistic target case, the ridge peer comparison, scaling in P and K.

    python bench/bench_dmft.py                 # all sections
    python bench/bench_dmft.py --only target   # logistic, delta=2, tau=0.5, T=5, dt=0.05, P=2e4
    python bench/bench_dmft.py --only ridge    # ridge teacher-student, 50 steps, P=2e4
    python bench/bench_dmft.py --only scaling  # wall/CPU against P and against K
    python bench/bench_dmft.py --only long     # K = 500 steps (T=5, dt=0.01), P=2e4

Each solve runs in a fresh subprocess (so peak RSS is that solve's), after one warm-up solve that
compiles / loads the cached kernels; wall and CPU seconds are reported (CPU = both threads; on a
shared machine wall time varies with the load, CPU time much less). Targets (issue 4): target case
<= 10 s wall after compilation, <= 4 GB; ridge case >= 10x faster than the peer solver's ~55 s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ONE = r"""
import json, resource, sys, time
from dmftgen.config import Settings
from dmftgen.dmft import solve
from dmftgen.model import load_model
a = json.loads(sys.argv[1])
m = load_model(a.pop("model"))
st = Settings(**a.pop("settings"))
solve(m, Settings(T=0.2, dt=0.1, delta=st.delta, tau=st.tau), paths=1000)   # warm-up: compile/load
w0, c0 = time.perf_counter(), time.process_time()
res = solve(m, st, **a)
w1, c1 = time.perf_counter(), time.process_time()
print(json.dumps({"wall_s": w1 - w0, "cpu_s": c1 - c0, "status": res.status,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                  "paths_s": res.meta["timings"]["paths_s"], "tangents": res.meta["tangents"],
                  "train_loss_T": float(res["train_loss"][-1]), "test_loss_T": float(res["test_loss"][-1])}))
"""


def run_one(model, settings, **kw):
    arg = json.dumps({"model": model, "settings": settings, **kw})
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", ONE, arg], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(label, r):
    print(f"{label:46s} wall {r['wall_s']:7.2f} s  cpu {r['cpu_s']:7.2f} s  paths {r['paths_s']:6.2f} s  "
          f"rss {r['peak_rss_gb']:5.2f} GB  [{r['tangents']}] {r['status']}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("target", "ridge", "scaling", "long"), default=None)
    args = ap.parse_args()
    logi = {"delta": 2.0, "tau": 0.5, "lam": 0.0, "T": 5.0, "dt": 0.05, "seed": 0}
    if args.only in (None, "target"):
        r = run_one("logistic", logi, paths=20000)
        show("logistic d=2 tau=.5 T=5 dt=.05 P=2e4 (target)", r)
    if args.only in (None, "ridge"):
        ridge = {"delta": 3.0, "tau": 0.5, "lam": 0.5, "T": 5.0, "dt": 0.1, "seed": 0}
        r = run_one("linreg", ridge, paths=20000)
        show("ridge teacher-student, 50 steps, P=2e4", r)
        print(f"    speed-up vs peer solver (~55 s): {55.0 / r['wall_s']:.0f}x wall", flush=True)
        r = run_one("linreg", ridge, paths=20000, method="fixed-point")
        show("  same, damped fixed point", r)
    if args.only in (None, "scaling"):
        for P in (5000, 10000, 20000, 40000):
            show(f"logistic K=100, P={P}", run_one("logistic", logi, paths=P))
        for dt in (0.1, 0.05, 0.025):
            K = round(5 / dt)
            show(f"logistic K={K}, P=2e4 (all paths tangent)",
                 run_one("logistic", dict(logi, dt=dt), paths=20000, tangent_paths=20000))
        for dt in (0.05, 0.025, 0.0125):
            K = round(5 / dt)
            show(f"logistic K={K}, P=2e4, 1000 tangent paths",
                 run_one("logistic", dict(logi, dt=dt), paths=20000, tangent_paths=1000))
    if args.only in (None, "long"):
        show("logistic K=500 (dt=.01), P=2e4, auto tangents",
             run_one("logistic", dict(logi, dt=0.01), paths=20000))


if __name__ == "__main__":
    main()
