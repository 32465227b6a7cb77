"""The comparison run: :class:`Comparison` (a Result) and :func:`compare`, which simulates, solves
the DMFT and assembles table, verdict and summary (see :mod:`dmftgen.comparison`)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..analysis.diagnostics import assumption_warnings
from ..analysis.stats import LEVEL
from ..analysis.verdict import assess, tested_indices
from ..errors import SettingsError
from ..results import Result
from .summary import summary_text
from .table import build_table, result_warnings, table_columns

#: seed offset between the sizes of ``compare --d d1,d2,...`` (independent simulations per size)
SIZE_SEED_STRIDE = 7919


@dataclass(eq=False, repr=False)
class Comparison(Result):
    """Everything ``compare`` produced; ``write_outputs`` turns it into files.

    ``sims`` holds the simulation at the largest d per method, ``sims_by_d`` every size;
    ``dt_check`` the DMFT companion solve at 2 dt (SGD only); ``verdict`` the family test
    (:func:`dmftgen.analysis.verdict.assess`) and ``raw_verdict`` the same without the d and dt
    extrapolations.

    A Comparison is a :class:`~dmftgen.results.Result` like every other command's: its arrays
    are the columns of the table (:func:`table_columns`: t, epochs, ``<observable>_dmft``,
    ``<observable>_dmft_err``, ``<observable>_<method>``, ``_sem``, ``_z``, ...), all on the time
    grid, ``meta["kind"] == "comparison"``, and its status is the last non-ok status of the DMFT
    and the simulations; ``to_dataset()`` labels every column by ``t``.
    """

    model: object
    settings: object
    sims: dict                  # method -> Result (largest d)
    dmft: object                # Result
    table: dict                 # see build_table
    warnings: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    wall: dict = field(default_factory=dict)
    summary: str = ""
    sims_by_d: dict = field(default_factory=dict)
    dt_check: object = None
    verdict: dict = field(default_factory=dict)
    raw_verdict: dict = field(default_factory=dict)

    def __post_init__(self):
        self.label()

    def label(self):
        """Set the Result part (data, meta, status, message) from the table and the runs; called
        on construction and again once the summary is written."""
        head, cols = table_columns(self.table)
        data = {h: np.asarray(c, dtype=float) for h, c in zip(head, cols) if c is not None}
        runs = [("dmft", self.dmft), *self.sims.items()]
        status = "ok"
        for _, r in runs:
            if getattr(r, "status", "ok") != "ok":
                status = r.status
        meta = {"kind": "comparison", "model": self.model.name, "settings": self.settings.as_dict(),
                "options": dict(self.options), "warnings": list(self.warnings), "wall": dict(self.wall),
                "summary": self.summary, "dmft": dict(self.dmft.meta),
                "sims": {k: dict(v.meta) for k, v in self.sims.items()}}
        msg = "; ".join(f"{k}: {r.message}" for k, r in runs if getattr(r, "status", "ok") != "ok")
        Result.__init__(self, data, meta, status=status, message=msg)


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------
def _d_list(d):
    ds = [d] if np.ndim(d) == 0 else list(d)
    try:
        ds = sorted({int(x) for x in ds})
    except (TypeError, ValueError):
        raise SettingsError(f"--d {d!r}: give one size or a comma-separated list, e.g. 512,1024,2048.") from None
    if not ds:
        raise SettingsError("--d: give at least one size.")
    return ds


#: Statuses of a curve that is not valid: the verdict does not test it (n/a with the reason).
INVALID = ("unstable", "not-converged")


def compare(model, settings, *, d=1024, seeds=8, methods=("sgd",), batch=None, eta=None,
            paths=20000, dmft_method=None, progress=False, sims=None, dmft=None, dt_bias="auto",
            richardson=False, dt_check=None, level=LEVEL, allow_outside_theory=False) -> Comparison:
    """Simulate (each method, each size) and solve the DMFT on ``settings.times``; compare.

    Parameters
    ----------
    model : Model
    settings : Settings
    d : int or sequence of int
        Simulation dimension(s). Several sizes: every curve is extrapolated to d -> infinity by
        the weighted fit x(d) = a + b/d, and the verdict is based on a.
    seeds : int
        Independent runs per size (>= 2 for an error bar; 1 gives the verdict "n/a").
    methods : tuple of {"sgd", "sgf"}
    batch, eta : SGD minibatch size and learning rate (tau = eta / B); default B = 1.
    paths : int
        Monte Carlo paths of the DMFT solver (default error bars: 8 replicas of paths/8).
    dmft_method : {"sweep", "fixed-point"}, optional
        Default "sweep" (exact at every tau, docs/theory.md section 7).
    dt_bias : {"auto", "off"}
        "auto": with SGD, also solve at 2 dt on coupled noise (about a quarter of the cost) to
        estimate the DMFT's O(dt) bias f(2dt) - f(dt) and to test 2 f(dt) - f(2dt) (dt -> 0).
    richardson : bool
        DMFT = 2 f(dt/2) - f(dt) (``dmftgen.dmft.richardson``; replaces the 2 dt check).
    sims, dmft, dt_check : precomputed Results (skip the runs; used by tests). ``sims`` maps a
        method to a Result or to {d: Result}.
    level : float
        Family-wise false-alarm rate of the verdict (default 1 %).

    Returns
    -------
    Comparison
    """
    from ..codegen import load_kernels

    methods = tuple(dict.fromkeys(methods))
    for meth in methods:
        if meth not in ("sgd", "sgf"):
            raise SettingsError(f"unknown simulation method `{meth}`; use sgd, sgf or both.")
    if "sgd" in methods and settings.tau == 0:
        raise SettingsError("SGD needs tau = eta/B > 0; at tau = 0 compare gradient flow with --method sgf.")
    if dt_bias not in ("auto", "off"):
        raise SettingsError(f"--dt-bias {dt_bias!r}: use auto or off.")
    if not 0.0 < float(level) < 0.5:
        raise SettingsError(f"--level {level}: use a false-alarm rate in (0, 0.5), e.g. 0.01.")
    ds = _d_list(d)
    kern = load_kernels(model)
    from ..dmft.assumptions import require_theory

    require_theory(model, kern, allow_outside_theory)  # before any simulation
    p = model.param_vector(settings.params)
    dmain = ds[-1]
    n = int(round(settings.delta * dmain))
    if dmft_method is None:
        dmft_method = "sweep"  # exact at every tau (QR sampler near tau = 0)
    opts = {"d": dmain, "d_list": ds, "n": n, "seeds": seeds, "methods": list(methods), "batch": batch,
            "eta": eta, "paths": paths, "dmft_method": dmft_method, "dt": settings.dt,
            "richardson": bool(richardson), "dt_bias": dt_bias, "level": level}
    wall = {}
    by_d = {}
    for meth, r in dict(sims or {}).items():
        by_d[meth] = dict(r) if isinstance(r, dict) else {dmain: r}
    for meth in methods:
        if meth in by_d:
            continue
        from ..sim import simulate

        by_d[meth] = {}
        for j, d_ in enumerate(ds):
            t0 = time.perf_counter()
            # several sizes: independent draws per size (the fit's errors assume independence);
            # the largest d keeps settings.seed (the single-d run's numbers)
            st_d = settings if d_ == dmain else settings.replace(seed=settings.seed + SIZE_SEED_STRIDE * (len(ds) - 1 - j))
            by_d[meth][d_] = simulate(model, st_d, d=d_, seeds=seeds, method=meth,
                                      batch=batch if meth == "sgd" else None,
                                      eta=eta if meth == "sgd" else None, progress=progress)
            if by_d[meth][d_].status == "interrupted":  # Ctrl-C: stop now, write nothing (exit 130)
                raise KeyboardInterrupt
            wall[f"sim_{meth}" + (f"_d{d_}" if len(ds) > 1 else "")] = time.perf_counter() - t0
    sims = {meth: byd[max(byd)] for meth, byd in by_d.items()}
    if sims:  # precomputed results define the sizes
        ds = sorted({d_ for byd in by_d.values() for d_ in byd})
        dmain = ds[-1]
        n = int(round(settings.delta * dmain))
        opts.update(d=dmain, d_list=ds, n=n)
    if "sgd" in sims:
        opts["batch"] = sims["sgd"].meta.get("batch", batch)
        opts["eta"] = sims["sgd"].meta.get("eta", eta)
    from ..dmft import solve

    if dmft is None:
        t0 = time.perf_counter()
        dmft = solve(model, settings, paths=paths, method=dmft_method, progress=progress,
                     richardson=bool(richardson), allow_outside_theory=allow_outside_theory)
        if dmft.status == "interrupted":
            raise KeyboardInterrupt
        wall["dmft"] = time.perf_counter() - t0
    if (dt_check is None and "sgd" in sims and dt_bias == "auto" and not richardson
            and settings.n_steps >= 2):
        # coupled companion solve at 2 dt: its noise is the main solve's, aggregated pairwise
        N2 = settings.n_steps // 2
        t0 = time.perf_counter()
        dt_check = solve(model, settings.replace(dt=2 * settings.dt, T=2 * settings.dt * N2),
                         paths=paths, method=dmft_method, progress=progress, refine=1)
        wall["dmft_2dt"] = time.perf_counter() - t0
    if dt_check is not None and not dt_check.ok:
        opts["dt_check_status"] = f"the 2 dt solve is {dt_check.status}; see the status lines"
    elif dt_check is None and "sgd" in sims and dt_bias == "auto" and not richardson:
        opts["dt_check_status"] = "a single time step: no 2 dt grid"
    warn = assumption_warnings(model, kern, settings, p, method="sgd" if "sgd" in sims else None,
                               batch=opts.get("batch"), n=n)
    warn += result_warnings(by_d, dmft, dt_check)
    if richardson and "sgf" in sims:
        # README: the SGF is tested against the DMFT at the same dt (its exact limit), SGD at dt -> 0
        warn.append("--richardson with the SGF: the SGF is simulated at dt, whose exact d -> infinity limit "
                    "is the DMFT at the same dt, but it is compared here with the dt -> 0 extrapolation "
                    "(an O(dt) bias, |f(dt/2) - f(dt)| in dmft.npz *_disc, not in the error budget); "
                    "drop --richardson for --method sgf.")
    multi = {meth: byd for meth, byd in by_d.items() if len(byd) >= 2}
    table = build_table(model, sims, dmft, list(kern.METRICS), sims_by_d=multi,
                        dt_check=dt_check if (dt_check is not None and dt_check.ok) else None)
    table["d"] = ds
    if settings.tau > 0:
        table["epochs"] = table["t"] / (settings.delta * settings.tau)
    N = len(table["t"]) - 1
    has_dt = any(e.get("dmft_corr") is not None for e in table["observables"].values())
    idx = tested_indices(N, even=has_dt)
    verdict = assess(table, idx, level)
    raw = assess(table, idx, level, uncorrected=True) if (has_dt or multi) else verdict
    invalid = [f"{who} is {r.status}" for who, r in
               [(f"the simulation ({meth}, d = {d_})", r) for meth, byd in by_d.items() for d_, r in byd.items()]
               + [("the DMFT", dmft)] if r.status in INVALID]
    if invalid:
        # an unstable or unconverged curve is no evidence either way (a constant blown-up curve
        # against the DMFT gave "DISAGREEMENT, t-stat -1.9e16"): nothing is tested
        verdict = raw = dict(verdict, tests=[], K=0, p=float("nan"), word="n/a", worst=None, budget={},
                             not_tested=invalid)
    if verdict["word"] == "DISAGREEMENT" and verdict["worst"] is not None:
        w = verdict["worst"]
        warn.append(f"{w['obs']}: simulation ({w['method']}) and DMFT differ by t = {w['tstat']:+.1f} "
                    f"combined standard errors at t = {w['t']:g} (p = {w['p']:.2g} before the "
                    f"Bonferroni factor {verdict['K']}); see the error budget for the likely cause.")
    cmp = Comparison(model=model, settings=settings, sims=sims, dmft=dmft, table=table, warnings=warn,
                     options=opts, wall=wall, sims_by_d=by_d, dt_check=dt_check, verdict=verdict,
                     raw_verdict=raw)
    cmp.summary = summary_text(cmp)
    cmp.label()
    return cmp
