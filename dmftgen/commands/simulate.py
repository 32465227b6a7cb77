"""`dmftgen simulate MODEL ...`: finite-size SGF / minibatch-SGD curves, averaged over seeds.

    dmftgen simulate linreg --delta 2 --tau 0.5 --T 5 --dt 0.05 --d 1024 --seeds 4 --out sim.json
    dmftgen simulate logistic --method sgd --batch 8 --tau 0.5 --param beta=3 --out sgd.npz
"""
from __future__ import annotations

from ._common import (add_model_arg, add_settings_args, progress_enabled, result_path, settings_from_args,
                      write_result)


def add_parser(sub):
    p = sub.add_parser(
        "simulate", help="simulate SGF (Euler-Maruyama) or minibatch SGD of a model",
        description="Simulate the stochastic gradient flow (Euler-Maruyama, step --dt) or minibatch "
                    "SGD (tau = eta/B, clock t = k*eta/d) at dimension d, average over seeds, and "
                    "write t, train/test loss and metrics, Q, M (with *_sem standard errors) and "
                    "meta to --out (.json or .npz).")
    add_model_arg(p)
    add_settings_args(p)
    g = p.add_argument_group("simulation")
    g.add_argument("--d", type=int, default=1024, help="dimension d; n = round(delta*d) samples (default 1024)")
    g.add_argument("--seeds", type=int, default=4, help="independent runs averaged (default 4)")
    g.add_argument("--method", choices=("sgf", "sgd"), default="sgf",
                   help="sgf: Euler-Maruyama of the SGF; sgd: minibatch SGD (default sgf)")
    g.add_argument("--batch", type=int, default=None, help="SGD minibatch size B (default 1, or eta/tau)")
    g.add_argument("--eta", type=float, default=None, help="SGD learning rate (default tau*B)")
    g.add_argument("--no-replace", dest="replace", action="store_false",
                   help="SGD minibatches without replacement (default: with replacement)")
    g.add_argument("--data", choices=("gaussian", "rademacher"), default="gaussian",
                   help="law of the entries of X, variance 1/d (default gaussian)")
    g.add_argument("--theta-rows", type=int, default=0, metavar="R",
                   help="also record the first R rows of theta at every time")
    g.add_argument("--matrix-free", action="store_true",
                   help="SGF only: regenerate X block by block from the seed at every step instead "
                        "of storing it (for very large d; slower)")
    g.add_argument("--schedule", default=None, metavar="EXPR",
                   help="learning-rate schedule gamma(t), a formula in t, e.g. '1/(1+t)': SGD uses "
                        "eta*gamma(k*eta/d), the SGF gamma(t)*ell (default: constant)")
    g.add_argument("--out", required=True, metavar="FILE", help="output file, .json or .npz")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..model import load_model
    from ..sim import simulate

    out = result_path(args.out)
    model = load_model(args.model)
    settings = settings_from_args(args, model)
    res = simulate(model, settings, d=args.d, seeds=args.seeds, method=args.method,
                   batch=args.batch, eta=args.eta, replace=args.replace, data=args.data,
                   theta_rows=args.theta_rows, progress=progress_enabled(),
                   matrix_free=args.matrix_free, schedule=args.schedule)
    path, rc = write_result(res, out, "simulate")
    t = res.t
    if res.ok:
        print(f"{model.name}: {args.method} d={args.d} seeds={args.seeds}: t = 0..{t[-1]:g}, "
              f"train loss {res['train_loss'][-1]:.6g}, test loss {res['test_loss'][-1]:.6g} -> {path}")
    return rc
