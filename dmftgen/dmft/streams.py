"""Random numbers of a DMFT solve: independent streams per purpose, common to every iterate.

One ``SeedSequence([seed, 4])`` (stream 4 of the package: the DMFT solver; replica r > 0 gets
``[seed, 4, r]``) spawns four children in a fixed order -- static draws (teacher fields s, initial
fields g0, label noises z), the standard normals eta of the Gaussian input, the Brownian increments
dB of the r-process, and theta samples -- so that adding a draw to one purpose never shifts another.
The Monte Carlo theta-side (declared regulariser H) has two more streams spawned from
``[seed, 4, r, 1]`` (r = 0 included: ``[seed, 4, 1]`` is replica 1's key), so that every other
model's numbers do not depend on it.

Static draws by randomised quasi-Monte Carlo (option ``static_qmc``; issue 12)
-----------------------------------------------------------------------------
The per-path static variables (r*, the initial field, the label noises: m + k + nz dimensions) are
the quantile transforms of a scrambled Sobol sequence instead of i.i.d. draws; the inputs eta and
the increments dB (N m and N dimensions) stay i.i.d. Every point of a scrambled sequence is
uniform, so every average stays unbiased; the scrambles of different replicas are independent, so
the between-replica error bars stay honest (the within-replica group batch means should become
conservative, the groups being contiguous blocks of one sequence, negatively correlated; but see
the false alarm below). Much of
the variance of the losses comes from these few dimensions (the labels): measured in the Figure 1
setting (logistic, P = 2e4, 12 seeds; ``python bench/bench_rqmc.py``), the sd across seeds of the
test loss at t = 5 falls from 0.00126 to 0.00075 (variance / 2.8; train loss 0.00224 -> 0.00155,
Q 0.0133 -> 0.0089), the claimed errors follow (0.00074), the means agree (0.49885, 0.49896);
committee (tau = 0, T = 2, P = 4000, 16 seeds): train-loss sd at t = dt 0.00476 -> 0.00043, the
claimed errors 0.00040.

The default since the fourth session of 2026-12-06 (option ``static_qmc``, default True). Re-measured
then (Figure 1 setting, P = 2e4, 12 seeds each, ``dmftgen.dmft.solve``): sd over seeds of the test
loss at t = 5 0.00129 (i.i.d.) -> 0.00071 (RQMC), claimed errors 0.00105 -> 0.00079; train loss
0.00224 -> 0.00155, claimed 0.00188 -> 0.00144: the between-replica errors follow the smaller
spread. Committee (delta 3, tau 0.2, T 5, dt 0.05, P = 2e4, seeds 100..123), sd over seeds at
t = 1 / 5 (rms claimed error): test loss 0.000264 / 0.000230 (0.000315 / 0.000268) -> 0.000147 /
0.000147 (0.000140 / 0.000130); train loss 0.000813 / 0.000186 -> 0.000439 / 0.000142; Q 0.00060
/ 0.00210 -> 0.00030 / 0.00110: variance / 1.7 to / 3.6. What had kept it off:

* The plateau test of :mod:`dmftgen.dmft.stationary` bounded the drift across a window by z times
  the error bar, right for errors fully correlated in time and too strict otherwise: RQMC removes
  the error component constant in time (the static draws set a path's labels for all times), what
  is left wanders in time, and a linreg plateau was refused (tests/test_longtime.py). Now a solve
  keeps each replica's curve (``*_reps``) and the test measures the drift's own error from them.
* One false alarm of the self-checks in 16 Figure 1 solves ('Q balance (time average)', z = 4.07
  against 3.88), none in 12 with i.i.d. draws. That was before the checks' false-alarm rate was
  the solve's (each check of each replica had alpha to itself, ~40 alpha in all): with the split
  the 12 RQMC solves above stay below 0.69 of their thresholds (i.i.d.: 0.73), pooled checks
  below 0.76 (0.64), and the time-averaged Q balance's z over their 96 replicas has rms 0.98
  (i.i.d. 1.08). Within a replica the groups are contiguous blocks of one sequence, negatively
  correlated, so the group batch means (``replicas=1``) tend to overstate the error (conservative).

The equal-accuracy cost of issue 12 moves little (at the simulation's error the solve is mostly
P-independent cost); solves whose cost is mostly paths need ~2-3 times fewer for the same errors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .rside import STORAGE, chunk_len, to_chunks


@dataclass
class Streams:
    """The draws of one solve (P paths, N steps, width m, k teacher columns, nz label noises).

    s (P, k): teacher fields r* ~ N(0, rho); g0 (P, m): initial fields ~ N(0, Sigma0);
    z (P, nz): label noises; eta: standard normals of the Gaussian input, (P, N m) in bfloat16, stored
    in the r-side kernel's chunked layout (``rside.to_chunks``: (C, P, B)); dB (P, N):
    Brownian increments sqrt(dt) N(0, 1); rng_theta: theta samples; rng_theta_paths, rng_zeta:
    the Monte Carlo theta-side's theta-paths and r-side input.
    """

    s: np.ndarray
    g0: np.ndarray
    z: np.ndarray
    eta: np.ndarray
    dB: np.ndarray
    rng_theta: np.random.Generator
    rng_theta_paths: np.random.Generator
    rng_zeta: np.random.Generator


def draw(model, seed, replica, P, N, m, kk, nz, dt, init_std, teacher_std, refine=0, static_qmc=False,
         histories="bfloat16") -> Streams:
    """Draw the noises of a solve (``static_qmc``: the static draws by randomised QMC, see above).

    With ``refine`` = L > 0 the noises are drawn on the grid dt / 2^L and summed (Brownian
    increments) or summed / sqrt(2^L) (the standard normals of the Gaussian input), so that solves
    at dt, dt/2, dt/4 ... with the same seed share one fine noise (coupled paths): their
    differences, e.g. for convergence studies or Richardson, lose most of the Monte Carlo noise.
    ``histories`` ("bfloat16" or "float64", the solve option): how eta is stored, and with it the
    r-side's other histories (``rside.RSide.alloc``).
    """
    key = [seed, 4] if replica == 0 else [seed, 4, replica]
    ss = np.random.SeedSequence(key)
    r_static, r_eta, r_dB, r_theta = (np.random.default_rng(c) for c in ss.spawn(4))
    s, g0, z = (_static_qmc if static_qmc else _static_iid)(model, r_static, P, m, kk, nz)
    s = np.ascontiguousarray(teacher_std * s)
    g0 = init_std * g0
    f = 2 ** int(refine)
    eta = r_eta.standard_normal((P, N * f * m))
    dB = r_dB.standard_normal((P, N * f))
    if f > 1:
        eta = eta.reshape(P, N, f, m).sum(2).reshape(P, N * m) / math.sqrt(f)
        dB = dB.reshape(P, N, f).sum(2) / math.sqrt(f)
    # [seed, 4, r, 1] for every replica r, 0 included: [seed, 4] + [1] was replica 1's own key
    # [seed, 4, 1], so replica 0's theta-paths and r-side input drew the very numbers of replica
    # 1's static draws and input normals (the replicas of a declared-H solve were not independent)
    r_tp, r_zeta = (np.random.default_rng(c) for c in np.random.SeedSequence([seed, 4, replica, 1]).spawn(2))
    # eta rounded to the r-side's history dtype here, so that the float64 draws are freed at once
    return Streams(s=s, g0=g0, z=np.ascontiguousarray(z), eta=to_chunks(eta, chunk_len(m), STORAGE[histories]),
                   dB=math.sqrt(dt) * dB, rng_theta=r_theta, rng_theta_paths=r_tp, rng_zeta=r_zeta)


def _static_iid(model, rng, P, m, kk, nz):
    """Standard teacher and initial fields (P, k), (P, m) and label noises (P, nz), i.i.d."""
    s = rng.standard_normal((P, kk))
    g0 = rng.standard_normal((P, m))
    z = np.empty((P, nz))
    for j, law in enumerate(model.noise.values()):
        z[:, j] = law.sample(rng, P)
    return s, g0, z


def _static_qmc(model, rng, P, m, kk, nz):
    """The same draws from one scrambled Sobol sequence in m + k + nz dimensions (module docstring)."""
    from scipy.special import ndtri

    from ..observables import sobol_uniforms

    u = sobol_uniforms(kk + m + nz, P, rng)
    z = np.empty((P, nz))
    for j, law in enumerate(model.noise.values()):
        z[:, j] = law.ppf(u[:, kk + m + j])
    return ndtri(u[:, :kk]), ndtri(u[:, kk:kk + m]), z
