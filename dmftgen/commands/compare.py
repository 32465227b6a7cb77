"""`dmftgen compare MODEL ...`: simulation (SGD and/or SGF) against the DMFT, figure + table + summary.

    dmftgen compare logistic --out out/figure1                 # the poster's Figure 1 setting
    dmftgen compare committee --method both --d 512 --T 3 --out out/committee
"""
from __future__ import annotations

from ._common import add_model_arg, add_settings_args, progress_enabled, settings_from_args


def add_parser(sub):
    p = sub.add_parser(
        "compare", help="simulate SGD/SGF and solve the DMFT on one grid; figure, table, summary",
        description="Run the simulator (SGD and/or SGF, several seeds) and the DMFT solver on the same "
                    "settings and time grid t_k = k dt, and write into --out: figure.png (train/test "
                    "loss and metrics against t = k*eta/d, overlaps Q, M; simulation mean +- 2 s.e., "
                    "DMFT with its Monte Carlo band), table.csv / table.json (both curves, errors and "
                    "the normalised discrepancy z = |sim - dmft| / sqrt(sem^2 + err^2)), summary.txt, "
                    "and the raw results sim_<method>.npz, dmft.npz. The directory is replaced as a unit "
                    "(temporary directory + rename): a failed or interrupted run leaves an earlier run's "
                    "files intact, and a directory holding other files is refused. Defaults: the poster's Figure 1 "
                    "setting (d = 1024, n = 2048, SGD with B = 1, tau = 0.5, T = 5, 4 seeds, 2e4 paths).")
    add_model_arg(p)
    add_settings_args(p)
    g = p.add_argument_group("simulation")
    g.add_argument("--d", type=int, default=1024, help="dimension d; n = round(delta*d) (default 1024)")
    g.add_argument("--seeds", type=int, default=4, help="independent simulation runs (default 4)")
    g.add_argument("--method", choices=("sgd", "sgf", "both"), default=None,
                   help="simulated dynamics (default sgd, or sgf at tau = 0)")
    g.add_argument("--batch", type=int, default=None, help="SGD minibatch B (default 1, or eta/tau)")
    g.add_argument("--eta", type=float, default=None, help="SGD learning rate (default tau*B)")
    g = p.add_argument_group("DMFT")
    g.add_argument("--paths", type=int, default=20000, help="Monte Carlo paths of the solver (default 20000)")
    g.add_argument("--dmft-method", choices=("sweep", "fixed-point"), default=None,
                   help="solver scheme (default sweep, fixed-point at tau = 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--quiet", action="store_true", help="do not print the summary")
    p.set_defaults(func=run)


def is_output_file(name: str) -> bool:
    """Files an earlier `compare` leaves in --out (anything else makes the directory foreign)."""
    from ..compare import FILES

    return name in FILES or name == "dmft.npz" or (name.startswith("sim_") and name.endswith(".npz"))


def run(args) -> int:
    import sys

    from .._io import check_output_dir
    from ..compare import compare, write_outputs
    from ..errors import SettingsError
    from ..model import load_model

    check_output_dir(args.out, allowed=is_output_file)  # before computing
    model = load_model(args.model)
    settings = settings_from_args(args, model)
    if args.paths < 2:
        raise SettingsError(f"--paths must be >= 2, got {args.paths}.")
    method = args.method or ("sgd" if settings.tau > 0 else "sgf")
    methods = ("sgd", "sgf") if method == "both" else (method,)
    cmp = compare(model, settings, d=args.d, seeds=args.seeds, methods=methods, batch=args.batch,
                  eta=args.eta, paths=args.paths, dmft_method=args.dmft_method,
                  progress=progress_enabled())
    try:
        paths = write_outputs(cmp, args.out)
    except OSError as exc:
        from .._io import rescue_path
        from ..results import OutputError

        rescue = rescue_path(args.out)
        try:
            write_outputs(cmp, rescue)
            where = f"the results were saved to {rescue} instead"
        except OSError:
            where = "nor could they be saved elsewhere"
        raise OutputError(f"could not write the output directory {args.out} ({exc.strerror or exc}); "
                          f"an earlier directory there is unchanged, {where}.") from None
    if not args.quiet:
        print(cmp.summary, end="")
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    for w in (cmp.warnings if args.quiet else ()):  # otherwise already in the printed summary
        print(f"dmftgen compare: warning: {w}", file=sys.stderr)
    ok = cmp.dmft.ok and all(r.ok for r in cmp.sims.values())
    return 0 if ok else 1
