"""`dmftgen plot SWEEP.nc ...`: phase diagrams from a sweep file.

    dmftgen plot phase.nc --x delta --y tau --value test_loss --out phase.png          # final value
    dmftgen plot phase.nc --x delta --y tau --time-to 0.3 --out ttl.png                # time to level
    dmftgen plot phase.nc --kind curves --x delta --y tau --at-time 2 --out c.png      # curves over delta
    dmftgen plot phase.nc --kind curves --x t --y delta --sel tau=0.5 --out loss.png   # loss curves
"""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser(
        "plot", help="phase diagram (heat map / curves) from a sweep file",
        description="Plot a sweep made by `dmftgen sweep`: a heat map of a value at a time (default the "
                    "final time) or of the time to reach a level over two grid parameters, or curves "
                    "over one grid parameter (or over t) with one line per value of --y.")
    p.add_argument("sweep", metavar="SWEEP.nc", help="file written by `dmftgen sweep --out`")
    p.add_argument("--kind", choices=("heatmap", "curves"), default="heatmap")
    p.add_argument("--x", required=True, help="grid parameter on the x axis (curves: also t)")
    p.add_argument("--y", default=None, help="heatmap: grid parameter on the y axis; curves: one line per value (default none: one curve)")
    p.add_argument("--value", default="test_loss", help="variable to plot (default test_loss)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--at-time", type=float, default=None, metavar="T",
                   help="value at the grid time nearest T, within the sweep's time range (default: final time)")
    w.add_argument("--time-to", type=float, default=None, metavar="LEVEL",
                   help="plot the first time the value reaches LEVEL (linear interpolation; grey = not reached; default: plot the value itself)")
    p.add_argument("--above", action="store_true", help="with --time-to: first time value >= LEVEL (default <=)")
    p.add_argument("--sel", action="append", default=[], metavar="DIM=VALUE",
                   help="fix another dimension at one of its grid values (index for a, b, j) (repeatable)")
    p.add_argument("--mean", action="append", default=[], metavar="DIM", help="average over a dimension, e.g. seed")
    p.add_argument("--log", action="store_true", help="log colour scale (heatmap) / log y axis (curves)")
    p.add_argument("--title", default=None)
    p.add_argument("--out", required=True, metavar="PNG",
                   help="figure file: .png, .pdf, .svg, .eps, .jpg (checked before reading the sweep)")
    p.set_defaults(func=run)


def run(args) -> int:
    import math

    from ..errors import SettingsError
    from ..sweep import load_sweep, plot_phase
    from ..sweep_plot import check_figure_path

    check_figure_path(args.out)  # suffix and writability, before reading anything
    sel = {}
    for item in args.sel:
        name, eq, v = item.partition("=")
        try:
            value = float(v)
        except ValueError:
            value = None
        if not eq or not name.strip() or value is None or not math.isfinite(value):
            raise SettingsError(f"--sel expects DIM=VALUE with a finite number, got {item!r} (e.g. --sel tau=0.5).")
        if name.strip() in sel:
            raise SettingsError(f"--sel {name.strip()}: given twice; fix each dimension once.")
        sel[name.strip()] = value
    if args.above and args.time_to is None:
        raise SettingsError("--above goes with --time-to LEVEL (first time the value is >= LEVEL); "
                            "add --time-to or drop --above.")
    ds = load_sweep(args.sweep)
    out = plot_phase(ds, args.out, kind=args.kind, x=args.x, y=args.y, value=args.value, at_time=args.at_time,
                     time_to=args.time_to, above=args.above, sel=sel, mean=args.mean, log=args.log,
                     title=args.title)
    print(f"{args.kind} of {args.value} over {args.x}{' x ' + args.y if args.y else ''} -> {out}")
    return 0
