"""Issue 12: what storing the paths' histories in bfloat16 does to a solve (dmftgen/dmft/rside.py, HIST).

    PYTHONPATH=$PWD python3 bench/bench_histories.py [P] [seeds]      # default P = 8000, 3 seeds

Each case is solved twice with the same seed and paths, with the default bfloat16 histories and
with option ``histories="float64"``. Printed per case and estimate: the largest |difference| over
all times and entries in units of the float64 solve's error bar, and the mean over the seeds of
the signed difference at t = T in the same units (a bias would not average out over seeds).
Measured (2026-12-06, P = 8000, 3 seeds): max <= 3.6e-2, typically 5e-3; mean at T <= 4e-3, the
train loss consistently +1..2e-3 (the rounding's added variance through a convex loss)."""
import sys
import numpy as np
from dmftgen.config import Settings
from dmftgen.model import load_model
from dmftgen.dmft import solve

P = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
cases = [("logistic", dict(delta=2.0, tau=0.5, lam=0.0, T=5.0, dt=0.05)),
         ("committee", dict(delta=3.0, tau=0.2, lam=0.0, T=5.0, dt=0.02)),
         ("linreg", dict(delta=2.0, tau=0.5, lam=0.1, T=5.0, dt=0.05)),
         ("twolayer", dict(delta=2.0, tau=0.3, lam=0.0, T=3.0, dt=0.05))]
keys = ("train_loss", "test_loss", "Q", "M", "Gamma", "nu")
for name, st in cases:
    m = load_model(name)
    mx, signed = {}, {}
    for seed in range(seeds):
        s = Settings(**st, seed=seed)
        a = solve(m, s, paths=P)
        b = solve(m, s, paths=P, histories="float64")
        for k in keys:
            if k not in a.data or (k + "_err") not in a.data:
                continue
            va, vb, e = np.asarray(a[k]), np.asarray(b[k]), np.asarray(b[k + "_err"])
            ok = e > 0
            z = np.abs(va - vb)[ok] / e[ok]
            mx[k] = max(mx.get(k, 0.0), float(z.max()) if z.size else 0.0)
            last = (va[-1] - vb[-1]).ravel() / np.maximum(e[-1].ravel(), 1e-300)
            signed.setdefault(k, []).append(last)
    print(f"{name:10s} " + "  ".join(f"{k} max {mx[k]:.1e} mean(T) {np.mean(signed[k]):+.1e}" for k in mx), flush=True)
