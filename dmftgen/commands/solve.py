"""`dmftgen solve MODEL ...`: the discrete-time DMFT of the SGF, with Monte Carlo error bars.

    dmftgen solve logistic --delta 2 --tau 0.5 --T 5 --dt 0.05 --paths 20000 --out dmft.npz
    dmftgen solve linreg --tau 0 --lam 0.1 --scheme fixed-point --out gf.json
"""
from __future__ import annotations

from ._common import (add_check_alpha_arg, add_model_arg, add_scheme_arg, add_settings_args, add_theory_arg, progress_enabled,
                      result_path, settings_from_args, write_result)


def add_parser(sub):
    p = sub.add_parser(
        "solve", help="solve the DMFT of the SGF of a model (Monte Carlo effective processes)",
        description="Solve the discrete-time DMFT of the stochastic gradient flow (exact large-d limit "
                    "of Euler-Maruyama SGF at step --dt) by Monte Carlo over --paths effective "
                    "r-paths, and write t, train/test loss and metrics, Q, M (with *_err Monte Carlo "
                    "errors), the order parameters C_theta, R_theta, Gamma, R_ell, nu, S_U and meta "
                    "to --out (.nc: labelled xarray Dataset; .json/.npz exports). Defaults are shown "
                    "with each option.")
    add_model_arg(p)
    add_settings_args(p)
    g = p.add_argument_group("solver")
    g.add_argument("--paths", type=int, default=20000, help="Monte Carlo r-paths (default 20000)")
    add_scheme_arg(g, "sweep")
    g.add_argument("--damping", type=float, default=None, help="fixed point: damping in [0, 1) (default 0.3)")
    g.add_argument("--max-iter", type=int, default=None, help="fixed point: iteration cap (default 200)")
    g.add_argument("--tangent-paths", type=int, default=None,
                   help="paths carrying the response tangents (default: automatic, from paths/16 to all paths by a cost "
                        "budget; the result's meta.tangents says how many)")
    g.add_argument("--replicas", default=None, metavar="R",
                   help="independent sub-solves of paths/R paths whose spread gives the error bars "
                        "(default auto: min(8, paths // 40); 1 = one solve with batch-means errors)")
    g.add_argument("--groups", type=int, default=None, help="path groups for batch-means error bars (default 20)")
    add_check_alpha_arg(g)
    g.add_argument("--theta-samples", type=int, default=0, metavar="S",
                   help="also store S samples of the law of a theta row at every time (default 0: none)")
    g.add_argument("--richardson", action="store_true",
                   help="solve at dt and dt/2 and return the Richardson extrapolation 2 f(dt/2) - f(dt)")
    g.add_argument("--out", required=True, metavar="FILE", help=".nc (labelled netCDF; dmftgen.load), .json or .npz")
    add_theory_arg(g)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..dmft import solve
    from ..errors import SettingsError
    from ..model import load_model

    out = result_path(args.out)
    if args.paths is not None and args.paths < 1:
        raise SettingsError(f"--paths {args.paths}: must be a positive integer (e.g. 20000).")
    model = load_model(args.model)
    settings = settings_from_args(args, model)
    options = {}
    for name in ("damping", "max_iter", "tangent_paths", "groups", "replicas", "check_alpha"):
        v = getattr(args, name)
        if v is not None:
            options[name] = v
    res = solve(model, settings, paths=args.paths, method=args.scheme, theta_samples=args.theta_samples,
                progress=progress_enabled(), richardson=args.richardson,
                allow_outside_theory=args.outside_theory, **options)
    path, rc = write_result(res, out, "solve")
    if res.ok:
        print(f"{model.name}: DMFT {args.scheme} P={args.paths}: t = 0..{res.t[-1]:g}, "
              f"train loss {res['train_loss'][-1]:.6g} ± {res['train_loss_err'][-1]:.2g}, "
              f"test loss {res['test_loss'][-1]:.6g} ± {res['test_loss_err'][-1]:.2g} -> {path}")
    return rc
