"""Issue 12 (exploration, not used by the solver): the adjoint response recursion on a GPU.

    python3 bench/bench_cuda_adjoint.py --check        # correctness on the CUDA simulator (no GPU)
    python3 bench/bench_cuda_adjoint.py                # on a GPU: committee dt 0.01 and logistic K 1600 sizes

What the CPU solver spends most of a fine-grid solve on (docs/performance.md: ~11 s of the
committee dt = 0.01 case, ~15 s of the logistic K = 1600 one) is, for every row k and every
tangent path, the backward recursion of templates/dmft.py (docs/theory.md section 3)

    Z_k = grad ell(r_k),   Z_l = -(1/delta) ( sum_{l<i<=k} Z_i R_theta[i, l] ) a_l,   l = k-1..0,

with its control variate (the same recursion with Gcv in place of grad ell and the path's own
noise factor dt + sqrt(tau delta) dB_l), summed over paths into K_ell[k, :k]. Here one CUDA block
runs one tangent path of one row in the "axpy" order: once Z_i is known, every thread adds
Z_i R_theta[i, l] to its own entries acc[l] (l < i, static shared memory), then one thread forms
Z_{i-1} from acc[i-1]: k sequential steps of one block barrier each, the row of R_theta read
coalesced (and from L2: every block reads the same rows). One launch per row k, as a causal sweep
would need (row k's factors a_l come from the paths at rows < k); the per-path rows are summed on
the device by a second kernel in path order (deterministic).

Inputs are synthetic with the solver's shapes (R_theta strictly block-lower, small; a_l, grad ell
random): the cost does not depend on the values. ``--check`` compares one row against a float64
numpy reference of the same recursion on the CUDA simulator (NUMBA_ENABLE_CUDASIM=1; slow, tiny
sizes); on a GPU the same comparison runs at full size for a few rows before the timing.
Printed: seconds for all rows k = 1..K-1 (launches included, synchronised), per row at the end,
and the CPU figure it replaces (one core, measured separately: bench/bench_adjoint.py).

Status (2026-12-06): checked on the simulator only (``--check``: 5e-8..6e-7 of the float64
reference, m = 1 and 2); the session that wrote it was refused a GPU, so it has never been timed.
A session with a device: ``python3 bench/bench_cuda_adjoint.py`` needs numpy and numba-cuda only
(the device image has both), about two minutes.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

THREADS = 128


cuda = float32 = None  # numba.cuda, imported by build() (after --check has chosen the simulator)


def build(M, K):
    global cuda, float32
    from numba import cuda, float32  # module globals: the simulator swaps the kernels' global ``cuda``

    MM = M * M
    SIZE = 2 * K * MM  # acc of rows l < k <= K - 1, main and control variate (static shared memory)

    @cuda.jit(fastmath=False)
    def adjoint_row(k, R, a_hist, g_hist, Gcv, Gcv_g, fac, inv_delta, out):
        """Block t: tangent path t of row k. out[t, l, a, b] = Z_l - Zc_l (l < k)."""
        t = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        nth = cuda.blockDim.x
        acc = cuda.shared.array(shape=(SIZE,), dtype=float32)  # (k, M, M) main, then CV
        z = cuda.shared.array(shape=(2 * 4,), dtype=float32)  # Z_i, Zc_i (M <= 2)
        off = K * MM
        for q in range(tid, k * MM, nth):
            acc[q] = 0.0
            acc[off + q] = 0.0
        if tid < MM:
            a, b = tid // M, tid % M
            z[tid] = g_hist[t, k, a, b]
            z[MM + tid] = Gcv_g[k, a, b]
        cuda.syncthreads()
        for i in range(k, 0, -1):
            # acc[l, a, c] += sum_b Z_i[a, b] R[i M + b, l M + c], l < i
            for q in range(tid, i * M, nth):  # q = l M + c: one column of R's rows i M + b
                for b in range(M):
                    r = R[i * M + b, q]
                    l, c = q // M, q % M
                    for a in range(M):
                        acc[(l * M + a) * M + c] += z[a * M + b] * r
                        acc[off + (l * M + a) * M + c] += z[MM + a * M + b] * r
            cuda.syncthreads()
            if tid < MM:  # Z_{i-1}, Zc_{i-1} from acc[i-1]
                a, b = tid // M, tid % M
                l = i - 1
                s = 0.0
                sc = 0.0
                for c in range(M):
                    s += acc[(l * M + a) * M + c] * a_hist[t, l, c, b]
                    sc += acc[off + (l * M + a) * M + c] * Gcv[l, c, b]
                s = -inv_delta * s
                sc = -inv_delta * sc * fac[t, l]
                z[tid] = s
                z[MM + tid] = sc
                out[t, l, a, b] = s - sc
            cuda.syncthreads()

    @cuda.jit
    def sum_paths(k, out, kl):
        """kl[l, a, b] = sum_t out[t, l, a, b] in path order (one thread per entry)."""
        q = cuda.grid(1)
        if q < k * MM:
            l, r = q // MM, q % MM
            a, b = r // M, r % M
            s = 0.0
            for t in range(out.shape[0]):
                s += out[t, l, a, b]
            kl[l, a, b] = s

    return adjoint_row, sum_paths


def reference_row(k, R, a_hist, g_hist, Gcv, Gcv_g, fac, inv_delta):
    """float64 numpy: sum over paths of Z_l - Zc_l, l < k (the recursion above; paths vectorised)."""
    PJ, M = a_hist.shape[0], a_hist.shape[2]
    Rb = R[: (k + 1) * M, : k * M].astype(float).reshape(k + 1, M, k, M)  # Rb[i, b, l, c]
    Z = np.zeros((PJ, k + 1, M, M))
    Zc = np.zeros((PJ, k + 1, M, M))
    Z[:, k], Zc[:, k] = g_hist[:, k], Gcv_g[k]
    for l in range(k - 1, -1, -1):
        acc = np.einsum("tiab,ibc->tac", Z[:, l + 1:], Rb[l + 1:, :, l, :])
        accc = np.einsum("tiab,ibc->tac", Zc[:, l + 1:], Rb[l + 1:, :, l, :])
        Z[:, l] = -inv_delta * acc @ a_hist[:, l].astype(float)
        Zc[:, l] = -inv_delta * (accc @ Gcv[l].astype(float)) * fac[:, l, None, None]
    return (Z[:, :k] - Zc[:, :k]).sum(0)


def inputs(K, M, PJ, seed=0):
    rng = np.random.default_rng(seed)
    NN = K * M
    R = np.tril(rng.standard_normal((NN, NN)) * (0.3 / math.sqrt(NN)), -M).astype(np.float32)
    for i in range(1, K):  # R_theta[i, i-1] = I (its recursion's unit forcing)
        R[i * M:(i + 1) * M, (i - 1) * M:i * M] = np.eye(M)
    a_hist = (rng.standard_normal((PJ, K, M, M)) * 0.01).astype(np.float32)
    g_hist = rng.standard_normal((PJ, K, M, M)).astype(np.float32)
    Gcv = rng.standard_normal((K, M, M)).astype(np.float32) * 0.5
    Gcv_g = rng.standard_normal((K, M, M)).astype(np.float32) * 0.5
    fac = (0.01 + 0.1 * rng.standard_normal((PJ, K))).astype(np.float32)
    return R, a_hist, g_hist, Gcv, Gcv_g, fac


def run(K, M, PJ, delta, check_rows, time_all=True):
    from numba import cuda

    adjoint_row, sum_paths = build(M, K)
    R, a_hist, g_hist, Gcv, Gcv_g, fac = inputs(K, M, PJ)
    inv_delta = np.float32(1.0 / delta)
    d = [cuda.to_device(x) for x in (R, a_hist, g_hist, Gcv, Gcv_g, fac)]
    out = cuda.device_array((PJ, K, M, M), dtype=np.float32)
    kl = cuda.device_array((K, M, M), dtype=np.float32)

    def row(k):
        adjoint_row[PJ, THREADS](k, d[0], d[1], d[2], d[3], d[4], d[5], inv_delta, out)
        sum_paths[(k * M * M + 127) // 128, 128](k, out, kl)

    for k in check_rows:
        row(k)
        got = kl.copy_to_host()[:k]
        ref = reference_row(k, R, a_hist, g_hist, Gcv, Gcv_g, fac, float(inv_delta))
        # float32 sums of ~k terms per entry and PJ paths: relative error ~ 1e-6 sqrt(k PJ) of the
        # largest entry, far below the Monte Carlo noise of K_ell (~1e-2 relative)
        err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)
        print(f"   check row k = {k}: max |gpu - float64 reference| / max |ref| = {err:.2e}", flush=True)
        assert err < 1e-4, err
    if not time_all:
        return
    row(1)
    cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(1, K):
        row(k)
    cuda.synchronize()
    tot = time.perf_counter() - t0
    t1 = time.perf_counter()
    for k in range(K - 20, K):
        row(k)
    cuda.synchronize()
    last = (time.perf_counter() - t1) / 20
    flops = 2 * 2 * M ** 3 * sum(k * (k + 1) / 2 for k in range(1, K)) * PJ
    print(f"   all rows 1..{K - 1}: {tot:.3f} s ({flops / tot / 1e9:.0f} GFlop/s of useful float32 work); "
          f"rows {K - 20}..{K - 1}: {last * 1e3:.2f} ms per row", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="CUDA simulator, tiny sizes, correctness only")
    a = ap.parse_args(argv)
    if a.check:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        for M in (1, 2):
            print(f"M = {M}: simulator", flush=True)
            run(7, M, 3, 3.0, check_rows=(1, 6), time_all=False)
        return 0
    from numba import cuda

    print(cuda.get_current_device().name.decode() if hasattr(cuda.get_current_device().name, "decode")
          else cuda.get_current_device().name, flush=True)
    print("committee dt 0.01: K = 501 steps, m = 2, 1280 tangent paths (8 replicas x 160); "
          "CPU (one core, dev machine): ~11 s of the 25-28 s solve", flush=True)
    run(501, 2, 1280, 3.0, check_rows=(3, 200))
    print("logistic T 5 K = 1600: m = 1, 160 tangent paths (8 x 20); CPU: most of its 17 s path kernel",
          flush=True)
    run(1601, 1, 160, 2.0, check_rows=(3, 800))
    return 0


if __name__ == "__main__":
    sys.exit(main())
