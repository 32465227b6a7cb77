"""Issue 12: the generated r-side kernel ``dmft_paths`` alone, on synthetic inputs (committee, m = 2).

    NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=$PWD python3 bench/bench_adjoint.py
    ... bench_adjoint.py --part adjoint --ntan 1 8 --rows 480 490     # one part, some options

Two parts, each the median CPU seconds (time.process_time) of ``--repeat`` runs of the rows
k = rows[0] .. rows[1]-1 (row mode: one kernel call per row, as in the forward sweep):

* ``adjoint``: G groups of ``--ntan`` tangent paths each (P = G * ntan paths, so the forward part
  is negligible), the adjoint recursion of the response row K_ell[k, :k] with the control variate.
  Useful work per tangent path and row: the main and the control-variate recursion, each
  sum_{l<k} m^3 (k - l) multiply-adds, i.e. 2 * 2 m^3 k(k+1)/2 flops. Printed: CPU per row, ns per
  (tangent path x row x k^2), GFlop/s of useful work (lanes the kernel computes but nobody uses
  are not counted).
* ``rside``: P = --paths paths without tangents: the Gaussian input W eta (m k m multiply-adds
  per path and row), the memory term R dL (m k m) and the S_U row (m (k+1) m): 6 m^2 k flops per
  path and row, plus 2 m^2 k K for the pathwise-nu tangent psi (R b_hist; on unless --no-psi, as
  in the committee solve); also printed the bytes these loops stream (eta, dL, b_hist rows per
  path: (2 m + m K) k doubles; W, R rows: shared, in cache) as GB/s.

Inputs are random, with the solver's dtypes (the paths' histories in bfloat16, R_theta^T, R and W in float32; R, W
strictly causal, small so that the paths stay finite); a_hist, g_hist are filled with random
matrices, so the adjoint runs its full length on every row.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np


def setup(kern, P, N, G, ntan, use_cv, seed=0, psi=False):
    from dmftgen.dmft.rside import HIST, SUM, chunk_len, to_chunks  # the solver's chunked history layout

    rng = np.random.default_rng(seed)
    m, kk, nz = int(kern.M), int(kern.K), int(kern.NZ)
    B = chunk_len(m)
    NN, NI = (N + 1) * m, N * m
    # R, W in the history sums' precision (rside.SUM), as RSide.run passes them
    R = np.tril(rng.standard_normal((NN, NN)) * (0.3 / math.sqrt(NN)), -m).astype(SUM)
    W = np.tril(rng.standard_normal((NN, NI)) * (0.3 / math.sqrt(NN)), -m)[:, :NI].astype(SUM)
    bounds = np.linspace(0, P, G + 1).round().astype(np.int64)
    nt = max(ntan * G, 1)
    d = dict(
        N=N, bounds=bounds, n_tan_g=ntan, delta=3.0, dt=0.01, sq=math.sqrt(0.2 * 3.0),
        wpre=rng.standard_normal((P, 1, m)), W=W, use_W=True, eta=to_chunks(rng.standard_normal((P, NI)), B, HIST),
        R=R, RT=np.ascontiguousarray(R.T, dtype=np.float32), s=rng.standard_normal((P, kk)), z=rng.standard_normal((P, nz)),
        dB=rng.standard_normal((P, N)) * 0.1, p=np.array([0.1, 0.5]), do_psi=psi,
        dL=to_chunks(rng.standard_normal((P, NI)) * 0.01, B, HIST),
        a_hist=rng.standard_normal((nt, max(N, 1), m, m)) * 0.01,
        g_hist=rng.standard_normal((nt, N + 1, m, m)),
        b_hist=(to_chunks(rng.standard_normal((P, NI * kk)) * 0.01, B, HIST, kk) if psi
                else np.zeros((1, 1, 1), dtype=HIST)), loss_sum=np.zeros((G, N + 1)),
        met_sum=np.zeros((G, N + 1, int(kern.NMET))), gam_sum=np.zeros((G, N + 1, m, m)),
        kl_sum=np.zeros((G, m, NN)) if ntan else np.zeros((G, 1, 1)),
        ells_sum=np.zeros((G, N + 1, m, kk)), dsl_sum=np.zeros((G, N + 1, m, kk)),
        su_sum=np.zeros((G, m, NI)), rl_sum=np.zeros((G, N + 1, m, m)), ll_sum=np.zeros((G, N + 1, m, m)),
        bad=np.full(G, N + 1, dtype=np.int64), use_cv=use_cv,
        Gcv=rng.standard_normal((N + 1, m, m)), Gcv_g=rng.standard_normal((N + 1, m, m)),
        klcv=np.zeros((1, 1, 1)))
    return d


def call(kern, d, k):
    # the rows of step k of R and W; setup made R, W in the precision of the history sums (rside.SUM),
    # as dmftgen.dmft.rside.RSide.run passes them
    m = int(kern.M)
    rows = slice(k * m, (k + 1) * m)
    Rk = np.ascontiguousarray(d["R"][rows])
    Wk = np.ascontiguousarray(d["W"][rows])
    kern.dmft_paths(k, k + 1, d["N"], d["bounds"], d["n_tan_g"], d["delta"], d["dt"], d["sq"], d["wpre"],
                    Wk, d["use_W"], d["eta"], Rk, d["RT"], d["s"], d["z"], d["dB"], d["p"],
                    d["do_psi"], d["dL"], d["a_hist"], d["g_hist"], d["b_hist"], d["loss_sum"],
                    d["met_sum"], d["gam_sum"], d["kl_sum"], d["ells_sum"], d["dsl_sum"], d["su_sum"],
                    d["rl_sum"], d["ll_sum"], d["bad"], d["use_cv"], d["Gcv"], d["Gcv_g"], d["klcv"])


def timed(kern, d, rows, repeat):
    call(kern, d, rows[0])  # compile / load
    out = []
    for _ in range(repeat):
        c0 = time.process_time()
        for k in range(*rows):
            call(kern, d, k)
        out.append(time.process_time() - c0)
    return float(np.median(out))


def main():
    import os

    from dmftgen.codegen import load_kernels
    from dmftgen.model import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="committee")
    ap.add_argument("--part", choices=["adjoint", "rside", "all"], default="all")
    ap.add_argument("--N", type=int, default=500)
    ap.add_argument("--rows", type=int, nargs=2, default=[480, 500])
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--ntan", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--paths", type=int, default=20000)
    ap.add_argument("--no-cv", action="store_true")
    ap.add_argument("--no-psi", action="store_true", help="rside: without the pathwise-nu tangent psi "
                    "(the committee solve runs it: nu pathwise)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    kern = load_kernels(load_model(a.model))
    m, G, N = int(kern.M), a.groups, a.N
    nrows = a.rows[1] - a.rows[0]
    ksq = sum(k * k for k in range(*a.rows))
    print(f"model {a.model} (m = {m}), N = {N}, rows {a.rows[0]}..{a.rows[1] - 1}, G = {G}, "
          f"threads {os.environ.get('NUMBA_NUM_THREADS', '?')}, load {os.getloadavg()[0]:.2f}")
    if a.part in ("adjoint", "all"):
        cv = not a.no_cv
        for nt in a.ntan:
            d = setup(kern, G * max(nt, 1), N, G, nt, cv)
            t = timed(kern, d, a.rows, a.repeat)
            npath = G * nt
            flops = (2 if cv else 1) * m ** 3 * sum(k * (k + 1) for k in range(*a.rows)) * npath
            print(f"adjoint  n_tan_g {nt:3d} ({npath:4d} tangent paths, cv {cv}): {t / nrows * 1e3:8.2f} ms/row, "
                  f"{t / (npath * ksq) * 1e9:7.3f} ns/(path row k^2), {flops / t / 1e9:6.2f} GFlop/s useful")
    if a.part in ("rside", "all"):
        P = a.paths
        psi = not a.no_psi
        d = setup(kern, P, N, G, 0, False, psi=psi)
        t = timed(kern, d, a.rows, a.repeat)
        ksum = sum(range(*a.rows))
        kk = int(kern.K)
        flops = (6 * m * m + (2 * m * m * kk if psi else 0)) * ksum * P
        gbytes = 8 * (2 * m + (m * kk if psi else 0)) * ksum * P
        print(f"rside    P {P} (psi {psi}): {t / nrows * 1e3:8.2f} ms/row, {flops / t / 1e9:6.2f} GFlop/s, "
              f"{gbytes / t / 1e9:6.2f} GB/s streamed (eta, dL, b_hist rows)")


if __name__ == "__main__":
    main()
