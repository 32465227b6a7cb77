"""`dmftgen sweep MODEL --grid NAME=V1,V2 ... --out FILE.nc`: a parameter study on Dask.

    dmftgen sweep logistic --grid delta=1,2,4 --grid tau=0.1,0.5 --what solve --paths 4000 --out phase.nc
    dmftgen sweep linreg --grid delta=0.5:4:8 --what simulate --d 512 --seeds 4 --out lr.nc
    dmftgen sweep logistic --what stationary --lam 0.1 --dt 0.2 --grid delta=1,2,4 --grid tau=0,0.5,1 --out final.nc
    dmftgen sweep logistic --grid beta=1,5 --grid delta=1,2 --scheduler tcp://head:8786 --out b.nc

Re-running the same command resumes: finished points (in FILE.parts/) are not recomputed.
"""
from __future__ import annotations

from ._common import (DYNAMICS_HELP, add_model_arg, add_settings_args, add_theory_arg, default_dynamics,
                      progress_enabled, settings_from_args)

#: Options forwarded to the single-run function, per --what (None = not given, use its default).
FORWARD = {
    "simulate": ("d", "seeds", "method", "batch", "eta", "data"),
    "solve": ("paths", "scheme", "replicas"),
    "compare": ("d", "seeds", "paths", "method", "scheme", "batch", "eta"),
    "stationary": ("paths", "replicas"),
}
#: CLI option -> keyword of the single-run function, per --what (``--method`` is always the
#: simulated dynamics, ``--scheme`` always the DMFT scheme; the keywords keep their names, so the
#: point keys of earlier sweeps stay valid).
KEYWORD = {"simulate": {}, "solve": {"scheme": "method"}, "compare": {"method": "methods", "scheme": "dmft_method"},
           "stationary": {}}


def add_parser(sub):
    p = sub.add_parser(
        "sweep", help="run a grid of settings as independent Dask tasks into one labelled dataset",
        description="Run every point of a grid (--grid NAME=V1,V2,... per axis; NAME a setting delta/"
                    "tau/lam/seed, a model parameter, or d/seeds/paths) as an independent task on "
                    "Dask: a LocalCluster here by default, or an existing cluster with --scheduler. "
                    "Finished points are kept in OUT.parts/ as they complete; re-running the same "
                    "command resumes without recomputing them. The result OUT (.nc) is an xarray "
                    "Dataset with dims (grid..., t, ...) and the metadata of single runs. Defaults are "
                    "shown with each option.")
    add_model_arg(p)
    add_settings_args(p)
    g = p.add_argument_group("sweep")
    g.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="one axis of the grid (repeatable); also NAME=START:STOP:NUM")
    g.add_argument("--what", choices=("solve", "simulate", "compare", "stationary"), default="solve",
                   help="single-run function at every point (default solve)")
    g.add_argument("--out", required=True, metavar="FILE.nc", help="combined dataset (netCDF)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of an existing Dask scheduler, e.g. tcp://10.0.0.1:8786 "
                        "(default: start a LocalCluster)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="LocalCluster worker processes (default: number of CPUs); 0 = serial, no Dask")
    g.add_argument("--two-time", action="store_true",
                   help="also store the two-time DMFT kernels (t x s) in OUT (the parts always have them)")
    g.add_argument("--threads-per-task", type=int, default=None, metavar="N",
                   help="numba/BLAS threads of each task (default 1 per Dask thread slot)")
    o = p.add_argument_group("options of the single runs (as in `dmftgen simulate` / `dmftgen solve`)")
    o.add_argument("--d", type=int, default=None, help="simulate/compare: dimension d (default 1024)")
    o.add_argument("--seeds", type=int, default=None, help="simulate/compare: runs averaged per point (default 4)")
    o.add_argument("--paths", type=int, default=None, help="solve/compare/stationary: DMFT Monte Carlo paths (default 20000; stationary 8000)")
    o.add_argument("--replicas", type=int, default=None, help="solve/stationary: independent replicas (error bars; default: solve auto, stationary 4)")
    o.add_argument("--method", choices=("sgd", "sgf"), default=None,
                   help="simulate/compare: " + DYNAMICS_HELP + " (default as in `dmftgen simulate` and "
                        "`dmftgen compare`: sgd, or sgf at tau = 0)")
    o.add_argument("--scheme", choices=("sweep", "fixed-point"), default=None,
                   help="solve/compare: DMFT scheme (default sweep)")
    o.add_argument("--batch", type=int, default=None, help="simulate/compare --method sgd: minibatch size B (default 1, or eta/tau)")
    o.add_argument("--eta", type=float, default=None, help="simulate/compare --method sgd: learning rate (default tau*B)")
    o.add_argument("--data", choices=("gaussian", "rademacher"), default=None, help="simulate: law of X (default gaussian)")
    add_theory_arg(p)
    p.set_defaults(func=run)


def spec_from_args(args):
    """SweepSpec from parsed options (validated: unknown names and bad values fail before any work)."""
    from ..errors import SettingsError
    from ..model import load_model
    from ..sweep import SweepSpec, parse_grid_item

    model = load_model(args.model)
    base = settings_from_args(args, model)
    if args.what in ("solve", "compare", "stationary"):
        from ..dmft.assumptions import require_theory

        require_theory(model, allow=args.outside_theory)  # refused here, before any point runs
    grid = {}
    for item in args.grid:
        name, values = parse_grid_item(item)
        if name in grid:
            raise SettingsError(f"--grid {name} given twice; give all its values in one --grid {name}=V1,V2,...")
        grid[name] = values
    options = {}
    for name in FORWARD[args.what]:
        v = getattr(args, name)
        if v is not None:
            options[name] = v
    options = {KEYWORD[args.what].get(k, k): v for k, v in options.items()}
    if args.outside_theory and args.what in ("solve", "compare"):
        options["allow_outside_theory"] = True
    if "methods" in options:
        options["methods"] = [options["methods"]]
    unused = [n for n in ("d", "seeds", "paths", "replicas", "method", "scheme", "batch", "eta", "data")
              if getattr(args, n) is not None and n not in FORWARD[args.what]]
    if unused:
        raise SettingsError(f"--{unused[0]} does not apply to --what {args.what}; options of {args.what}: "
                            f"{', '.join('--' + n for n in FORWARD[args.what])}.")
    spec = SweepSpec(args.model, args.what, base, grid, options)
    points = spec.points()  # validate every point now
    if args.what == "simulate" and args.method is None and not _begun_with_flow(args.out, points):
        spec = SweepSpec(args.model, args.what, base, grid, {**options, "method": simulate_dynamics(base.tau, grid)})
    return spec


def simulate_dynamics(tau: float, grid: dict) -> str:
    """``--what simulate`` without ``--method``: the dynamics of ``dmftgen simulate``
    (:func:`default_dynamics`: SGD, SGF at tau = 0), one for every point. The Python function
    ``simulate()`` defaults to SGF; the sweep command follows the command, not the function, so
    that a sweep's point and the same ``dmftgen simulate`` run agree (a sweep begun before, with
    SGF, resumes with SGF: :func:`_begun_with_flow`). A tau grid with 0 and positive values has no
    one default (SGD needs tau = eta/B > 0): refused, naming the fix."""
    from ..errors import SettingsError

    taus = [float(v) for v in grid.get("tau", [tau])]
    kinds = {default_dynamics(None, t) for t in taus}
    if len(kinds) > 1:
        raise SettingsError("--grid tau has tau = 0, where only the stochastic gradient flow exists (SGD "
                            "needs tau = eta/B > 0), and tau > 0, where `dmftgen simulate` runs SGD: give "
                            "--method sgf to simulate every point with the flow, or split the grid.")
    return kinds.pop()


def _begun_with_flow(out, points) -> bool:
    """OUT's parts hold some of ``points`` (a simulate sweep's, keyed without a method): the sweep
    was begun when a simulate sweep without --method ran the flow (SGF, the Python function's
    default; before 2026-12-07). It resumes as it began, SGF, instead of starting over with SGD
    beside them (the run says so)."""
    from ..sweep_parts import part_path

    return any(part_path(out, p.key).is_file() for p in points)


def _sigterm_as_interrupt():
    """SIGTERM (batch-system time limits, `kill`) -> KeyboardInterrupt, so the finished points are
    combined into OUT before exiting; the parts are safe either way."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a test harness)
        pass


def run(args) -> int:
    import sys

    from ..sweep import run_sweep, sweep_meta

    spec = spec_from_args(args)
    args.interrupt_note = f"finished points are kept in {args.out}.parts/; rerun the same command to resume"
    if spec.what == "simulate" and "method" not in spec.options:
        print(f"dmftgen sweep: {args.out}.parts/ holds points of this sweep simulated with SGF (the "
              "default of a simulate sweep before 2026-12-07): resuming with SGF; give --method sgd "
              "and another --out to simulate SGD, the default now.", file=sys.stderr)
    _sigterm_as_interrupt()
    log = lambda msg: print(f"dmftgen sweep: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    ds = run_sweep(spec, args.out, scheduler=args.scheduler, workers=args.workers,
                   threads_per_task=args.threads_per_task, progress=progress_enabled(),
                   two_time=args.two_time, log=log)
    meta = sweep_meta(ds)
    status = ds["status"].values.ravel().tolist()
    bad = [s for s in status if s not in ("ok",)]
    print(f"{meta['model']}: {args.what} sweep over {' x '.join(f'{n}({len(v)})' for n, v in spec.grid.items())}: "
          f"{meta['done']}/{meta['points']} points ({meta['computed']} computed, {meta['reused']} reused) "
          f"in {meta['wall_s']:.1f} s -> {meta.get('written') or 'nothing written'}")
    if bad:
        from collections import Counter
        print("dmftgen sweep: not ok: " + ", ".join(f"{n} {s}" for s, n in Counter(bad).items()), file=sys.stderr)
        return 1
    return 0
