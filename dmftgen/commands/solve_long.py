"""`dmftgen solve-long MODEL ...`: DMFT on a long horizon (coarse dt + Richardson), stationary values.

    dmftgen solve-long linreg --tau 0.5 --lam 0.1 --T 100 --dt 0.2 --paths 20000 --out long.npz
    dmftgen solve-long logistic --tau 0.5 --lam 0.1 --T 50 --dt 0.2 --paths 20000 --out long.npz

Writes the same contract as `solve` (t, train/test loss and metrics, Q, M with *_err, plus
*_disc, *_coarse, *_fine and meta["long"] with time and peak memory), then prints the plateau test
of each one-time observable (dmftgen.dmft.stationary): stationary value ± error and the time reached.
"""
from __future__ import annotations

from ._common import (add_check_alpha_arg, add_model_arg, add_settings_args, progress_enabled, result_path, settings_from_args,
                      write_result)


def add_parser(sub):
    p = sub.add_parser(
        "solve-long", help="DMFT on a long horizon (coarse step + Richardson in dt) and stationary values",
        description="Solve the DMFT at the coarse step --dt and at --dt/2 on common noise and return the "
                    "Richardson extrapolation 2 f(dt/2) - f(dt) (second order in dt), for horizons "
                    "t ~ 50-100; then test every one-time observable for a plateau and print the "
                    "stationary value, its error and the time it was reached.")
    add_model_arg(p)
    add_settings_args(p, T=50.0, dt=0.2)
    g = p.add_argument_group("solver")
    g.add_argument("--paths", type=int, default=20000, help="Monte Carlo r-paths per solve (default 20000)")
    g.add_argument("--no-extrapolate", action="store_true",
                   help="one uniform solve at --dt (first-order error, half the cost)")
    g.add_argument("--tangent-paths", type=int, default=None,
                   help="paths carrying the response tangents (default: a cost budget)")
    g.add_argument("--groups", type=int, default=None, help="path groups for batch-means error bars (default 20)")
    add_check_alpha_arg(g)
    g.add_argument("--z", type=float, default=3.0, help="plateau test: error bars allowed (default 3)")
    g.add_argument("--out", required=True, metavar="FILE", help=".nc (labelled netCDF; dmftgen.load), .json or .npz")
    p.set_defaults(func=run)


def run(args) -> int:
    import math

    from ..dmft.longtime import solve_long
    from ..dmft.stationary import stationary_values
    from ..errors import SettingsError
    from ..model import load_model

    out = result_path(args.out)
    if args.paths < 1:
        raise SettingsError(f"--paths {args.paths}: must be a positive integer (e.g. 20000).")
    if not (math.isfinite(args.z) and args.z > 0):
        raise SettingsError(f"--z {args.z:g}: the plateau test's tolerance in error bars must be a finite "
                            "number > 0 (default 3).")
    model = load_model(args.model)
    settings = settings_from_args(args, model)
    options = {k: getattr(args, k) for k in ("tangent_paths", "groups", "check_alpha") if getattr(args, k) is not None}
    res = solve_long(model, settings, paths=args.paths, extrapolate=not args.no_extrapolate,
                     progress=progress_enabled(), **options)
    lm = res.meta.get("long", {})
    res.meta["stationary"] = {}
    if len(res.t) >= 10:
        for key, pl in stationary_values(res, z=args.z).items():
            res.meta["stationary"][key] = pl.as_dict()
    path, rc = write_result(res, out, "solve-long")
    print(f"{model.name}: DMFT long horizon ({lm.get('method')}, steps {lm.get('steps')}) P={args.paths}: "
          f"t = 0..{res.t[-1]:g} in {lm.get('time_s', float('nan')):.1f} s, "
          f"peak memory {lm.get('peak_rss_mb', float('nan')):.0f} MB -> {path}")
    for key, d in res.meta["stationary"].items():
        if d["reached"]:
            print(f"  {key:>14}: stationary {d['value']:.6g} ± {d['err']:.2g} from t = {d['t_reached']:g}")
        else:
            print(f"  {key:>14}: not stationary by t = {d['t_end']:g} (last window {d['value']:.6g}, "
                  f"drift {d['drift']:.2g})")
    return rc
