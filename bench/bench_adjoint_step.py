"""Issue 12: the adjoint's fixed cost per step, in a standalone copy of its inner loop.

    NUMBA_NUM_THREADS=1 PYTHONPATH=$PWD python3 bench/bench_adjoint_step.py            # all variants
    ... bench_adjoint_step.py --variant template --short                                # one

One block of LANES = 16 tangent paths of the committee (m = 2, the generated ``adjoint_dots2p`` /
``adjoint_dots2`` of ``generated/committee.py``, no control variate, as in a default solve),
the loop over l = k - 1 .. 0 of one row k copied from ``dmftgen/codegen/templates/dmft.py``. Printed
per row k = 30, 245, 485: microseconds per row and block, and nanoseconds per step l. With
``--short`` every pass over j stops after two terms, so what is left is the work of a step that
does not grow with k - l: the call of the helper, its accumulators' zeroing and stores, forming
Z_l from the sums, the group sums. Variants of that per-step work:

* ``template``: as the kernel does it (Z_l in float64 from the float32 sums and the float64
  a_l of each lane, summed into the group sums lane by lane, a branch at each group's end);
* ``f32``: Z_l as a float32 product, a_l lane-major, no group sums (a lower bound of forming Z_l);
* ``no-z``: Z_l not formed at all: Zt never changes, so no step waits for the one before it.

Measured (AMD EPYC, one thread, 2026-12-07): ``--short`` 105 / 94 / 43 ns per step for template /
f32 / no-z; full rows at k = 485: 680 ns per step (template). The fixed cost is the serial
dependence Z_{l+1} -> sums of row l -> Z_l (stores and loads between them), not the lanes'
gathers or branches: forming Z_l without either (``f32``) saves a tenth of it.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

LANES, M = 16, 2
VARIANTS = ("template", "f32", "no-z")


def build(dots2p, dots2, variant):
    """The step loop of one row for one ``variant`` (compiled with the kernel's fastmath flags)."""
    kind = VARIANTS.index(variant)

    @njit(nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
    def row(k, RT, Zt, Zc, acc3, accc, accp, acccp, a_hist, a_lane32, kl, inv_delta, short):
        kM = k * M
        pend = False
        for l in range(k - 1, -1, -1):
            if pend:
                jn = (l + 1) * 2
                for a in range(2):
                    for c in range(2):
                        ra = RT[l * 2 + c, jn]
                        rb = RT[l * 2 + c, jn + 1]
                        for ln in range(LANES):
                            acc3[a, c, ln] = accp[a, c, ln] + Zt[jn, a, ln] * ra + Zt[jn + 1, a, ln] * rb
                pend = False
            elif l >= 1:
                j1 = min(kM + M, (l + 1) * M + 2) if short else kM + M
                dots2p(RT, Zt, Zc, l, (l + 1) * M, j1, False, acc3, accc, accp, acccp)
                pend = True
            else:
                dots2(RT, Zt, Zc, l, 0, 0, (l + 1) * M, kM + M, False, acc3, accc)
            if kind == 0:
                for a in range(M):
                    for b in range(M):
                        tot = 0.0
                        for ln in range(LANES):
                            t = 0.0
                            for c in range(M):
                                t += acc3[a, c, ln] * a_hist[ln, l, c, b]
                            t = -inv_delta * t
                            Zt[l * M + b, a, ln] = t
                            tot += t
                            if ln == 7 or ln == 15:   # two groups of 8 tangent paths per block
                                kl[ln // 8, a, l * M + b] += tot
                                tot = 0.0
            elif kind == 1:
                for a in range(M):
                    for b in range(M):
                        for ln in range(LANES):
                            Zt[l * M + b, a, ln] = (acc3[a, 0, ln] * a_lane32[l, 0, b, ln]
                                                    + acc3[a, 1, ln] * a_lane32[l, 1, b, ln])

    @njit(nogil=True)
    def rows(n, k, RT, Zt, Zc, acc3, accc, accp, acccp, a_hist, a_lane32, kl, short):
        for _ in range(n):
            Zt[k * M:k * M + M] = 1.0   # Z_k = grad ell(r_k), here a constant
            row(k, RT, Zt, Zc, acc3, accc, accp, acccp, a_hist, a_lane32, kl, 1.0 / 3.0, short)

    return rows


def main():
    from dmftgen.codegen import load_kernels
    from dmftgen.model import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=VARIANTS, nargs="+", default=list(VARIANTS))
    ap.add_argument("--short", action="store_true", help="two terms per pass over j: the fixed cost per step")
    ap.add_argument("--N", type=int, default=500)
    args = ap.parse_args()
    kern = load_kernels(load_model("committee"))
    N = args.N
    rng = np.random.default_rng(0)
    RT = np.ascontiguousarray(np.triu(rng.standard_normal((M * N + M, M * N + M)) * 0.01, M).astype(np.float32))
    a_hist = rng.standard_normal((LANES, N, M, M)) * 0.01
    a_lane32 = np.ascontiguousarray(a_hist.transpose(1, 2, 3, 0)).astype(np.float32)
    for variant in args.variant:
        rows = build(kern.adjoint_dots2p, kern.adjoint_dots2, variant)
        Zt = np.zeros((M * N + M, M, LANES), np.float32)
        accs = [np.zeros((M, M, LANES), np.float32) for _ in range(4)]
        kl = np.zeros((2, M, M * N + M))
        for k in (30, 245, 485):
            n = max(20000 // k, 10)
            rows(1, k, RT, Zt, Zt.copy(), *accs, a_hist, a_lane32, kl, args.short)
            t0 = time.perf_counter()
            rows(n, k, RT, Zt, Zt.copy(), *accs, a_hist, a_lane32, kl, args.short)
            dt = (time.perf_counter() - t0) / n
            print(f"{variant:9s} {'short' if args.short else 'full '} k = {k:3d}: {dt * 1e6:7.1f} us per row "
                  f"and block, {dt / k * 1e9:5.0f} ns per step", flush=True)


if __name__ == "__main__":
    main()
