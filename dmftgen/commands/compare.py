"""`dmftgen compare MODEL ...`: simulation (SGD and/or SGF) against the DMFT, figure + table + summary.

    dmftgen compare logistic --out out/figure1                 # the poster's Figure 1 setting
    dmftgen compare committee --method both --d 512 --T 3 --out out/committee
    dmftgen compare logistic --d 512,1024,2048 --out out/extrapolated   # fit in 1/d, verdict on d -> inf
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (add_dynamics_arg, add_model_arg, add_scheme_arg, add_settings_args, add_theory_arg,
                      beside_good_output, default_dynamics, progress_enabled, settings_from_args, write_output_dir)


def add_parser(sub):
    p = sub.add_parser(
        "compare", help="simulate SGD/SGF and solve the DMFT on one grid; figure, table, summary",
        description="Run the simulator (SGD and/or SGF, several seeds) and the DMFT solver on the same "
                    "settings and time grid t_k = k dt, and write into --out: figure.png (train/test "
                    "loss and metrics against t = k*eta/d, overlaps Q, M; simulation mean +- 2 s.e., "
                    "DMFT with its Monte Carlo band), table.csv / table.json (both curves, errors and "
                    "the normalised discrepancy z = |sim - dmft| / sqrt(sem^2 + err^2)), summary.txt (the "
                    "verdict at a stated false-alarm level with its p-value, the error budget by "
                    "source: Monte Carlo, time step, finite size; hints), "
                    "and the raw results sim_<method>.npz, dmft.npz. The directory is replaced as a unit "
                    "(temporary directory + rename): a failed or interrupted run leaves an earlier run's "
                    "files intact (a run that finishes not ok goes beside an earlier ok one, to DIR.failed), "
                    "and a directory holding other files is refused. Defaults: the poster's Figure 1 "
                    "setting (d = 1024, n = 2048, SGD with B = 1, tau = 0.5, T = 5, 8 seeds, 2e4 paths).")
    add_model_arg(p)
    add_settings_args(p)
    g = p.add_argument_group("simulation")
    g.add_argument("--d", type=_sizes, default=[1024], metavar="D[,D...]",
                   help="dimension d, or several (e.g. 512,1024,2048): every curve is extrapolated to "
                        "d -> infinity by a weighted fit in 1/d and the verdict is based on it; "
                        "n = round(delta*d) (default 1024)")
    g.add_argument("--seeds", type=int, default=8,
                   help="independent simulation runs per size (default 8: the sem has 7 degrees of "
                        "freedom; with 4 the t_3 tails cost most of the power of the verdict)")
    add_dynamics_arg(g, both=True)
    g.add_argument("--batch", type=int, default=None, help="SGD minibatch B (default 1, or eta/tau)")
    g.add_argument("--eta", type=float, default=None, help="SGD learning rate (default tau*B)")
    g = p.add_argument_group("DMFT")
    g.add_argument("--paths", type=int, default=20000, help="Monte Carlo paths of the solver (default 20000)")
    add_scheme_arg(g, None)
    g.add_argument("--dmft-method", dest="scheme", choices=("sweep", "fixed-point"), help=argparse.SUPPRESS)
    g.add_argument("--dt-bias", choices=("auto", "off"), default="auto",
                   help="with SGD, also solve at 2*dt on coupled noise to measure the DMFT's O(dt) "
                        "time-step bias and test its dt -> 0 correction (default auto)")
    g.add_argument("--richardson", action="store_true",
                   help="DMFT = 2 f(dt/2) - f(dt) (removes the O(dt) bias; about 5x the solve cost)")
    p.add_argument("--level", type=float, default=0.01,
                   help="false-alarm rate of the verdict DISAGREEMENT (default 0.01)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_theory_arg(p)
    p.add_argument("--quiet", action="store_true", help="do not print the summary")
    p.set_defaults(func=run)


def is_output_file(name: str) -> bool:
    """Files an earlier `compare` leaves in --out (anything else makes the directory foreign)."""
    from ..comparison import FILES

    return name in FILES or (name.startswith(("sim_", "dmft")) and name.endswith(".npz"))


def _sizes(text):
    import argparse

    try:
        ds = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes as integers, e.g. 1024 or 512,1024,2048") from None
    if not ds:
        raise argparse.ArgumentTypeError("give at least one size")
    return ds


def run(args) -> int:
    import sys

    from .._io import check_output_dir
    from ..comparison import compare, write_outputs
    from ..errors import SettingsError
    from ..model import load_model

    check_output_dir(args.out, allowed=is_output_file)  # before computing
    model = load_model(args.model)
    settings = settings_from_args(args, model)
    if args.paths < 2:
        raise SettingsError(f"--paths must be >= 2, got {args.paths}.")
    method = default_dynamics(args.method, settings.tau)
    methods = ("sgd", "sgf") if method == "both" else (method,)
    cmp = compare(model, settings, d=args.d, seeds=args.seeds, methods=methods, batch=args.batch,
                  eta=args.eta, paths=args.paths, dmft_method=args.scheme,
                  progress=progress_enabled(), dt_bias=args.dt_bias, richardson=args.richardson,
                  level=args.level, allow_outside_theory=args.outside_theory)
    ok = cmp.dmft.ok and all(r.ok for byd in cmp.sims_by_d.values() for r in byd.values())
    out = Path(args.out)
    if not ok and _holds_good_comparison(out):
        # a failed run never replaces a good earlier one: it goes beside it
        out, note = beside_good_output(out, is_output_file)
        print(f"dmftgen compare: {note}.", file=sys.stderr)
    paths = write_output_dir(out, lambda d: write_outputs(cmp, d))
    if not args.quiet:
        print(cmp.summary, end="")
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    for w in (cmp.warnings if args.quiet else ()):  # otherwise already in the printed summary
        print(f"dmftgen compare: warning: {w}", file=sys.stderr)
    return 0 if ok else 1


def _holds_good_comparison(out) -> bool:
    """``out`` holds an earlier compare whose DMFT and simulations are all ok (then kept)."""
    from ..results import Result

    runs = sorted(out.glob("*.npz")) if out.is_dir() else []
    if not any(p.name == "dmft.npz" for p in runs):
        return False
    try:
        return all(Result.load(p).ok for p in runs if is_output_file(p.name))
    except Exception:  # unreadable: nothing worth keeping
        return False
