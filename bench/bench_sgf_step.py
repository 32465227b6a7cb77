"""Time per SGF Euler--Maruyama step vs the two BLAS products it cannot avoid.

    python bench/bench_sgf_step.py [--n 4096] [--d 2048] [--steps 10] [--repeats 8]

For m = 1 (``linreg``) and m = 4 (a width-4 erf committee declared in a temporary model file),
measures in one process:

* ``blas``: ``thT @ X.T`` (r = X theta) and ``GT @ X`` (X^T G) alone, on the same arrays;
* ``step``: one full step of ``dmftgen.sim.run_sgf`` as ``simulate`` runs it: both products,
  drawing the n Brownian increments, the generated per-sample kernel (ell, noise multiply, train
  loss and metrics) and the generated update + overlap pass over the d rows.

The two measurements alternate in blocks of ``--steps`` steps (``--repeats`` blocks each), so
that load from other processes hits both alike. Reports medians over all timed steps and the ratio step / blas (target <= 1.3), and the median
time of the two generated kernels alone (``kernels``: per-sample pass + per-row update pass). The elementwise
work is O(n m + d m^2) against O(n d m) for the products.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMMITTEE4 = '''"""Width-4 erf committee for the simulator benchmark (not a built-in model)."""
import sympy as sp
from dmftgen import Model, student, teacher
r = student(4)
s = teacher(1)
z, sigma = sp.symbols("z sigma", real=True)
f = sum(sp.erf(ra / sp.sqrt(2)) for ra in r) / 2
y = sp.erf(s[0] / sp.sqrt(2)) + sigma * z
MODEL = Model(name="bench_committee4", student=r, teacher=s, noise={z: "normal"},
              params={sigma: 0.1}, labels=y, loss=(f - y) ** 2 / 2, init_std=0.5, teacher_std=1)
'''


def load(name, tmp):
    from dmftgen.codegen import generate, load_kernels
    from dmftgen.model import load_model
    if name == "committee4":
        path = Path(tmp) / "bench_committee4.py"
        path.write_text(COMMITTEE4)
        model = load_model(str(path))
        generate(model)
    else:
        model = load_model(name)
    return model, load_kernels(model)


def bench(model, kern, n, d, steps, repeats):
    from dmftgen.sim import draw_data, run_sgf
    from dmftgen.sim.data import stream

    p = model.param_vector({})
    D = draw_data(model, p, n, d, seed=0, index=0)
    m = model.m
    # warm-up (compilation, page faults)
    run_sgf(kern, D, p, delta=n / d, tau=0.5, lam=0.0, dt=0.01, n_steps=2, rng=stream(0, 0, 4))

    thT = np.ascontiguousarray(np.random.default_rng(1).standard_normal((m, d)))
    GT = np.ascontiguousarray(np.random.default_rng(2).standard_normal((m, n)))
    RT = np.empty((m, n))
    gradT = np.empty((m, d))
    XT = D.X.T
    blas, step, elem = [], [], []
    z, s = D.z, D.s
    dB = np.random.default_rng(3).standard_normal(n) * 0.1
    met = np.zeros(int(kern.NMET))
    Q, Mo = np.empty((m, m)), np.empty((m, model.k))
    np.matmul(thT, XT, out=RT)
    th_work = D.th0T.copy()
    for _ in range(repeats):
        for _ in range(steps):
            t0 = time.perf_counter()
            kern.sim_sgf_increment(RT, s, z, p, dB, 0.01, 1.0, GT, met, True)
            kern.sim_apply_update(th_work, gradT, p, 0.0, 0.0, 0.0, D.thsT, Q, Mo)  # no-op update
            elem.append(time.perf_counter() - t0)
        for _ in range(steps):
            t0 = time.perf_counter()
            np.matmul(thT, XT, out=RT)
            np.matmul(GT, D.X, out=gradT)
            blas.append(time.perf_counter() - t0)
        stamps = [time.perf_counter()]
        run_sgf(kern, D, p, delta=n / d, tau=0.5, lam=0.0, dt=0.01, n_steps=steps,
                rng=stream(0, 0, 4), tick=lambda k: stamps.append(time.perf_counter()))
        step += list(np.diff(stamps)[1:])   # the first interval also holds the set-up
    return (float(np.median(blas)), float(np.median(step)), float(np.min(blas)), float(np.min(step)),
            float(np.median(elem)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--models", default="linreg,committee4")
    args = ap.parse_args(argv)
    import numba
    print(f"n = {args.n}, d = {args.d}; numpy {np.__version__}, numba {numba.__version__} "
          f"(threads {numba.get_num_threads()}), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}")
    print(f"{'model':<12} {'m':>2} {'blas ms':>9} {'step ms':>9} {'ratio':>6} {'kernels ms':>10}"
          f"   (min: blas / step ms)")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model, kern = load(name, tmp)
            b, s, bmin, smin, e = bench(model, kern, args.n, args.d, args.steps, args.repeats)
            print(f"{name:<12} {model.m:>2} {b * 1e3:9.3f} {s * 1e3:9.3f} {s / b:6.2f} {e * 1e3:10.3f}   "
                  f"({bmin * 1e3:.3f} / {smin * 1e3:.3f})")


if __name__ == "__main__":
    main()
