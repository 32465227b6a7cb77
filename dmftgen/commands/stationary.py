"""`dmftgen stationary MODEL ...`: the stationary state of the DMFT (the performance SGD finally reaches).

    dmftgen stationary logistic --tau 0.5 --lam 0.1 --dt 0.2 --out stat.json
    dmftgen stationary logistic --tau 0 --lam 0.1 --out erm.json           # tau = 0: the ERM state
    dmftgen stationary committee --tau 0.2 --lam 0.1 --out committee.json
    dmftgen stationary logistic --lam 0.1 --tau-curve 0,0.25,0.5,1 --out curve.json   # + curve.png

Writes the Result contract with one point t = inf (dmftgen.dmft.stationary_state): stationary
train/test loss and metrics, Q, M, Gamma, relaxation time with between-replica ``*_err``, the lag
kernels, samples of the law of a theta row and a status (ok, not-converged, window-too-short,
no-stationary-state).
``--tau-curve`` solves every tau of the list and writes the curve (tau, observables, errors,
status) and its figure (FILE with suffix .png).
"""
from __future__ import annotations

import math

from ._common import add_model_arg, add_settings_args, result_path, settings_from_args, write_result


def add_parser(sub):
    from ..dmft.stationary_state import DEFAULTS as D

    p = sub.add_parser(
        "stationary", help="stationary state of the DMFT (tau >= 0): final train/test loss, Q, M, kernels",
        description="Solve the stationary (time-translation-invariant) state of the discrete DMFT at "
                    "step --dt directly, without the transient: at tau = 0 the static fixed point "
                    "(the empirical-risk minimiser), at tau > 0 the lag-kernel fixed point. Error "
                    "bars: between independent replicas, plus the iteration and window-truncation errors (meta.error_budget).")
    add_model_arg(p)
    # the stationary state has no horizon: T is not used (stationary_dmft), and a fixed default
    # refused every --dt that does not divide it (--dt 0.3: "T = 1 is not a whole number of steps")
    add_settings_args(p, T=None, dt=0.2, T_help="not used: the stationary state has no horizon (default: one "
                                                "step, --dt)")
    g = p.add_argument_group("stationary solver")
    g.add_argument("--paths", type=int, default=D["paths"], help=f"tau > 0: r-paths in total (default {D['paths']})")
    g.add_argument("--replicas", type=int, default=D["replicas"],
                   help=f"independent replicas for the error bars (default {D['replicas']})")
    g.add_argument("--window", type=float, default=D["window"],
                   help=f"memory window of the lag kernels, time units (default {D['window']:g})")
    g.add_argument("--samples", type=int, default=D["samples"],
                   help=f"tau = 0: Monte Carlo draws per replica (default {D['samples']})")
    g.add_argument("--tol", type=float, default=D["tol"], help=f"relative tolerance (default {D['tol']:g})")
    g.add_argument("--max-iter", type=int, default=D["max_iter"], help=f"iteration cap (default {D['max_iter']})")
    g.add_argument("--starts", type=int, default=D["starts"],
                   help=f"tau = 0: starts of the search for distinct stationary points (non-convex models; "
                        f"1 skips it; default {D['starts']})")
    g.add_argument("--theta-samples", type=int, default=D["theta_samples"],
                   help=f"samples of the law of a theta row (default {D['theta_samples']})")
    g.add_argument("--cross-fit", action="store_true",
                   help="Q and M from the theta-side at the kernels of the fresh final pass (out of sample; "
                        "about twice the error on Q)")
    g.add_argument("--tau-curve", default=None, metavar="T1,T2,...",
                   help="solve each tau of the list (overrides --tau) and write the curve and FILE.png (default: none, the single --tau)")
    g.add_argument("--out", required=True, metavar="FILE", help="output file: .nc, .json or .npz")
    p.set_defaults(func=run)


def _options(args):
    return {"paths": args.paths, "replicas": args.replicas, "window": args.window, "samples": args.samples,
            "tol": args.tol, "max_iter": args.max_iter, "theta_samples": args.theta_samples, "starts": args.starts,
            "cross_fit": args.cross_fit}


def run(args) -> int:
    from ..dmft.stationary_state import stationary
    from ..model import load_model

    out = result_path(args.out)
    # the options are checked by stationary() before it computes anything
    model = load_model(args.model)
    if args.T is None:
        args.T = args.dt
    settings = settings_from_args(args, model)
    if args.tau_curve is not None:
        return _curve(model, settings, args, out)
    res = stationary(model, settings, **_options(args))
    # a failed solve never replaces a good earlier result (it goes beside it, FILE.failed.SUFFIX)
    path, rc = write_result(res, out, "stationary")
    tm = res.meta.get("timings", {})
    if res.status == "no-stationary-state":
        return rc
    line = [f"{model.name}: stationary state ({res.meta['route']}), {res.status}, "
            f"{tm.get('total_s', float('nan')):.1f} s -> {path}"]
    for key in ["train_loss", "test_loss"] + [f"{s}_{q}" for q in model.metrics for s in ("train", "test")] + \
            ["relaxation_time"]:
        if key in res:
            line.append(f"  {key:>16}: {res[key][0]:.6g} ± {res[key + '_err'][0]:.2g}")
    for key in ("Q", "M"):
        v, e = res[key][0], res[key + "_err"][0]
        line.append(f"  {key:>16}: " + "  ".join(f"{a:.5g}±{b:.1g}" for a, b in zip(v.ravel(), e.ravel())))
    line += [f"  warning: {w}" for w in res.meta.get("warnings", [])]
    print("\n".join(line))
    return rc


def _curve(model, settings, args, out) -> int:
    """Stationary observables against tau: one Result (axis tau) plus the figure FILE.png."""
    import numpy as np

    from ..dmft.stationary_state import stationary
    from ..errors import SettingsError
    from ..results import Result

    try:
        taus = [float(x) for x in args.tau_curve.split(",") if x.strip()]
    except ValueError:
        raise SettingsError(f"--tau-curve {args.tau_curve!r}: give numbers, e.g. 0,0.25,0.5,1.") from None
    if not taus or not all(math.isfinite(t) and t >= 0 for t in taus):
        raise SettingsError(f"--tau-curve {args.tau_curve!r}: give tau >= 0 values, e.g. 0,0.25,0.5,1.")
    keys = ["train_loss", "test_loss"] + [f"{s}_{q}" for q in model.metrics for s in ("train", "test")]
    cols = {k: [] for k in keys + [k + "_err" for k in keys]}
    statuses, metas, cpu = [], [], []
    for tau in taus:
        res = stationary(model, settings.replace(tau=tau), **_options(args))
        statuses.append(res.status)
        cpu.append(float(res.meta.get("timings", {}).get("cpu_s", np.nan)))
        metas.append({"status": res.status, "message": res.message, "timings": res.meta.get("timings")})
        for k in keys:
            ok = k in res
            cols[k].append(float(res[k][0]) if ok else np.nan)
            cols[k + "_err"].append(float(res[k + "_err"][0]) if ok else np.nan)
        print(f"  tau = {tau:g}: {res.status}, test loss {cols['test_loss'][-1]:.5g} ± "
              f"{cols['test_loss_err'][-1]:.2g} ({res.meta.get('timings', {}).get('total_s', 0):.0f} s, "
              f"CPU {cpu[-1]:.1f} s)")
    data = {"tau": np.array(taus), **{k: np.array(v) for k, v in cols.items()}, "cpu_s": np.array(cpu)}
    meta = {"kind": "stationary-tau-curve", "model": model.name, "settings": settings.as_dict(),
            "options": _options(args), "points": metas}
    status = "ok" if all(s == "ok" for s in statuses) else "not-converged"
    out, _ = write_result(Result(data, meta, status=status), out, "stationary")
    fig = out.with_suffix(".png")
    plot_tau_curve(data, model, settings, fig)
    print(f"{model.name}: stationary curve over tau = {taus} -> {out}, {fig}")
    return 0 if status == "ok" else 1


def plot_tau_curve(data, model, settings, path):
    """Stationary test (and train) loss and metrics against tau with error bars."""
    from matplotlib.figure import Figure

    from .._io import atomic_path

    names = ["loss"] + list(model.metrics)
    fig = Figure(figsize=(4.2 * len(names), 3.4))
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, q in zip(axes[0], names):
        for side, mk in (("test", "o-"), ("train", "s--")):
            key = f"{side}_{q}"
            ax.errorbar(data["tau"], data[key], yerr=2 * data[key + "_err"], fmt=mk, ms=4, capsize=2,
                        label=f"{side} {q}")
        ax.set_xlabel("temperature tau = eta / B")
        ax.set_ylabel(f"stationary {q}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{model.name}: stationary DMFT state vs tau (delta = {settings.delta:g}, lam = "
                 f"{settings.lam:g}, dt = {settings.dt:g}; error bars 2 s.e.)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return path
