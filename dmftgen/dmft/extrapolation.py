"""Richardson extrapolation in dt: 2 f(dt/2) - f(dt), from two solves on coupled noise.

The discrete scheme is first order in dt (Euler--Maruyama on the SGF, left-point kernels), so
f(dt) = f(0) + c dt + O(dt^2) and 2 f(dt/2) - f(dt) = f(0) + O(dt^2). Both solves use the same
seed, and the coarse solve's noise is the fine solve's aggregated pairwise (``refine``: coupled
paths), so their Monte Carlo errors largely cancel in the difference. Errors: where both solves
kept their R >= 2 replicas' curves (the default, ``replicas="auto"``), replica r of both has the
same noise, so ``*_err`` is the between-replica standard error of the extrapolated replica curves,
sd_r(2 f_r(dt/2) - f_r(dt)) / sqrt(R) (Student t, R - 1 degrees of freedom: the coupling is in
it); otherwise (``replicas=1``) sqrt(4 e(dt/2)^2 + e(dt)^2), conservative for coupled solves.
(That bound had been used for replica solves too: measured 1.6-3.0 times the spread of the
extrapolated value over seeds, linreg and logistic, delta 2, tau 0.5, lam 0.1, dt 0.2,
P = 4000, 12-24 seeds; the replica formula 0.9-1.3 times.)
``*_disc`` = |f(dt/2) - f(dt)| estimates the discretisation error removed (the error of the
half-step solve itself). Used by ``solve(richardson=True)`` and by
:func:`dmftgen.dmft.longtime.solve_long`.
"""
from __future__ import annotations

import time

import numpy as np

from ..results import Result
from .errorbars import REPS, replica_error

ERRORS = ("Monte Carlo: the between-replica standard error of the extrapolated replica curves "
          "2 f_r(dt/2) - f_r(dt) (replica r of both solves shares its noise; R - 1 degrees of "
          "freedom), or without replicas sqrt(4 e(dt/2)^2 + e(dt)^2) (conservative for coupled "
          "solves); *_disc = |f(dt/2) - f(dt)|, the first-order discretisation error removed")


def coupled_solves(model, settings, *, paths, refine=0, after_coarse=None, **solve_kw):
    """(coarse, fine, (t0, t1, t2)): ``solve`` at dt with the noise drawn on dt / 2^(refine + 1),
    then at dt/2 on dt / 2^refine (the same noise); perf_counter times before, between, after;
    ``after_coarse()`` is called between them (e.g. to read the peak memory of the coarse solve).
    Each solve checks itself at half the false-alarm rate ``check_alpha``: the pair's status has it.
    A Ctrl-C of the coarse solve stops before the fine one (KeyboardInterrupt)."""
    from .options import SolveOptions
    from .solver import solve

    # one status from two solves: each checks itself at alpha / 2 (family-wise rate alpha; the
    # option validated here, before either solve)
    alpha = SolveOptions(check_alpha=solve_kw.get("check_alpha", SolveOptions.check_alpha)).check_alpha
    solve_kw["check_alpha"] = alpha / 2.0
    t0 = time.perf_counter()
    coarse = solve(model, settings, paths=paths, refine=refine + 1, **solve_kw)
    if coarse.status == "interrupted":  # Ctrl-C: stop, do not start the fine solve
        raise KeyboardInterrupt
    t1 = time.perf_counter()
    if after_coarse is not None:
        after_coarse()
    fine = solve(model, settings.replace(dt=settings.dt / 2), paths=paths, refine=refine, **solve_kw)
    return coarse, fine, (t0, t1, time.perf_counter())


def extrapolate(coarse, fine, keys, *, parts=False) -> tuple[dict, int]:
    """(data, n): 2 f(dt/2) - f(dt) of every key of ``keys`` present in both, on the first n
    coarse times, with ``*_err`` and ``*_disc``; with ``parts`` also ``*_coarse`` / ``*_fine``
    (and their ``*_err``); where both solves kept their replicas' curves, ``*_reps`` (and
    ``*_coarse_reps`` / ``*_fine_reps``) too."""
    n = min(len(coarse.t), (len(fine.t) + 1) // 2)
    data = {"t": coarse.t[:n]}
    for key in keys:
        if key not in coarse or key not in fine:
            continue
        fc, ff = np.asarray(coarse[key][:n]), np.asarray(fine[key][: 2 * n - 1: 2])
        data[key] = 2.0 * ff - fc
        if parts:
            data[key + "_coarse"], data[key + "_fine"] = fc, ff
        ec, ef = coarse.get(key + "_err"), fine.get(key + "_err")
        if ec is not None and ef is not None:
            ec, ef = np.asarray(ec[:n]), np.asarray(ef[: 2 * n - 1: 2])
            data[key + "_err"] = np.sqrt(4.0 * ef ** 2 + ec ** 2)
            if parts:
                data[key + "_coarse_err"], data[key + "_fine_err"] = ec, ef
        data[key + "_disc"] = np.abs(ff - fc)
        rc, rf = coarse.get(key + REPS), fine.get(key + REPS)
        if rc is not None and rf is not None and len(rc) == len(rf):
            rc, rf = np.asarray(rc)[:, :n], np.asarray(rf)[:, : 2 * n - 1: 2]
            data[key + REPS], err = per_replica(rc, rf)
            if err is not None and key + "_err" in data:
                data[key + "_err"] = err
            if parts:
                data[key + "_coarse" + REPS], data[key + "_fine" + REPS] = rc, rf
    return data, n


def per_replica(coarse_reps, fine_reps):
    """(reps, err): the Richardson combination 2 f_r(dt/2) - f_r(dt) of each replica r (R, n) and
    the error of their mean (None for R < 2), from both solves' replica curves on the coarse grid
    (``fine_reps`` taken at the coarse times, same R).

    Replica r of both solves has the same noise (coupled paths), so the extrapolated replica
    curves are independent, their mean is the extrapolated value and their spread its error, the
    coupling included: :func:`dmftgen.dmft.errorbars.replica_error`. sqrt(4 e_f^2 + e_c^2) treats
    the two solves as independent and was 1.6-3.0 times the spread over seeds (module docstring).
    Used by :func:`extrapolate` and by compare's 2 f(dt) - f(2 dt) (dmftgen.comparison.table)."""
    reps = 2.0 * np.asarray(fine_reps) - np.asarray(coarse_reps)
    return reps, (replica_error(reps) if reps.shape[0] >= 2 else None)


def richardson(model, settings, *, paths: int = 20000, method: str = "sweep", progress: bool = False,
               **options) -> Result:
    """Richardson extrapolation in dt: 2 f(dt/2) - f(dt) on the grid of ``settings`` (module
    docstring), for train/test loss and metrics, Q and M."""
    method = method or "sweep"
    L = int(options.pop("refine", 0))
    coarse, fine, _ = coupled_solves(model, settings, paths=paths, refine=L, method=method,
                                     progress=progress, **options)
    keys = ["train_loss", "test_loss"] + [f"{p}_{q}" for q in model.metrics for p in ("train", "test")]
    data, _ = extrapolate(coarse, fine, keys + ["Q", "M"])
    status = "ok" if coarse.ok and fine.ok else (fine.status if not fine.ok else coarse.status)
    # the model's name and hash as in every solve's meta (without them `dmftgen show-result` refused
    # the file of `dmftgen solve --richardson` as "not a dmftgen result file")
    meta = {"model": model.name, "source_hash": fine.meta.get("source_hash"), "richardson": True,
            "coarse": coarse.meta, "fine": fine.meta, "settings": settings.as_dict(), "method": method,
            "paths": paths}
    msg = "; ".join(x for x in (coarse.message if not coarse.ok else "",
                                fine.message if not fine.ok else "") if x)
    return Result(data, meta, status=status, message=msg)
