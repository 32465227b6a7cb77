"""Issue 12: how much the adjoint's float32 tangents (templates/dmft.py) move the solve's outputs.

    PYTHONPATH=$PWD python3 bench/compare_kell.py save /tmp/f64_s0.npz            # one checkout
    PYTHONPATH=$PWD python3 bench/compare_kell.py save /tmp/f64_s1.npz --seed 1   # Monte Carlo scale
    PYTHONPATH=$PWD python3 bench/compare_kell.py diff /tmp/f64_s0.npz /tmp/f32_s0.npz /tmp/f64_s1.npz

``save`` runs the cases below (logistic Figure 1 setting and the committee, K = 100 and 500,
P = 2e4, default options) and stores K_ell, Q, test_loss and their error bars. ``diff A B [C]``
prints, per case, max |K_ell(B) - K_ell(A)| relative to max |K_ell(A)|, over all entries and over
the adjoint's entries k > l alone (and, given C = A at another seed, the same for C: the Monte
Carlo scale of the estimate), and |B - A| of Q and of the
test loss at t = T in units of A's error bar. A and B must have the same tangent count (the meta
string is compared): then they differ by round-off only (same seed, same paths).
"""
from __future__ import annotations

import sys
import time

import numpy as np

CASES = {
    "logistic_K100": ("logistic", dict(delta=2.0, tau=0.5, lam=0.0, T=5.0, dt=0.05)),
    "logistic_K500": ("logistic", dict(delta=2.0, tau=0.5, lam=0.0, T=5.0, dt=0.01)),
    "committee_K100": ("committee", dict(delta=3.0, tau=0.2, lam=0.0, T=5.0, dt=0.05)),
    "committee_K500": ("committee", dict(delta=3.0, tau=0.2, lam=0.0, T=5.0, dt=0.01)),
}


def save(path, seed=0, only=None):
    from dmftgen import Settings, solve
    from dmftgen.model import load_model

    out = {}
    for name, (model, st) in CASES.items():
        if only and name not in only:
            continue
        c0 = time.process_time()
        res = solve(load_model(model), Settings(seed=seed, **st), paths=20000)
        print(f"{name}: {time.process_time() - c0:.1f} s CPU, {res.status}, {res.meta.get('tangents')}", flush=True)
        out[name + "/K_ell"] = np.asarray(res["K_ell"])
        for key in ("Q", "test_loss"):
            out[name + "/" + key] = np.asarray(res[key])
            out[name + "/" + key + "_err"] = np.asarray(res[key + "_err"])
        out[name + "/tangents"] = np.array(str(res.meta.get("tangents")))
    np.savez(path, **out)


def diff(pa, pb, pc=None):
    A, B = np.load(pa), np.load(pb)
    C = np.load(pc) if pc else None
    for name in CASES:
        if name + "/K_ell" not in A or name + "/K_ell" not in B:
            continue
        same = str(A[name + "/tangents"]) == str(B[name + "/tangents"])
        ka, kb = A[name + "/K_ell"], B[name + "/K_ell"]
        scale = np.abs(ka).max()
        line = f"{name:15s} tangents equal {same}; K_ell max|B-A|/max|A| {np.abs(kb - ka).max() / scale:.2e}"
        if C is not None and name + "/K_ell" in C:
            line += f" (other seed: {np.abs(C[name + '/K_ell'] - ka).max() / scale:.2e})"
        # the adjoint's entries only (k > l; the diagonal k = l is Gamma, float64 throughout)
        low = np.tril(np.ones(ka.shape[:2], dtype=bool), -1)
        sl = np.abs(ka[low]).max()
        line += f"; k>l: {np.abs(kb - ka)[low].max() / sl:.2e}"
        if C is not None and name + "/K_ell" in C:
            line += f" (other seed {np.abs(C[name + '/K_ell'] - ka)[low].max() / sl:.2e})"
        for key in ("Q", "test_loss"):
            aT, bT = A[name + "/" + key][-1].ravel(), B[name + "/" + key][-1].ravel()
            eT = A[name + "/" + key + "_err"][-1].ravel()
            worst = np.abs(bT - aT).max() / np.maximum(eT, 1e-300).min()
            line += f"; {key}(T) |B-A|/err {worst:.1e} (err {eT.min():.2e})"
        print(line)


if __name__ == "__main__":
    if sys.argv[1] == "save":
        seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
        only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
        save(sys.argv[2], seed, only)
    else:
        diff(*sys.argv[2:5])
