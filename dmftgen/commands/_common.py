"""Options shared by the run commands (simulate, solve, compare, sweep): one definition each."""
from __future__ import annotations

import argparse

from ..config import Settings
from ..errors import SettingsError


def add_model_arg(parser: argparse.ArgumentParser, nargs=None) -> None:
    parser.add_argument("model", metavar="MODEL", nargs=nargs,
                        help="built-in model name (see `dmftgen list`) or path to a model file")


def add_settings_args(parser: argparse.ArgumentParser, *, T: float | None = 5.0, dt: float = 0.05,
                      delta: float = 2.0, tau: float = 0.5, T_help: str | None = None) -> None:
    """--delta --tau --lam --T --dt --seed --param NAME=VALUE (``T_help`` replaces the help of --T)."""
    g = parser.add_argument_group("run settings")
    g.add_argument("--delta", type=float, default=delta, help=f"sample ratio n/d (default {delta})")
    g.add_argument("--tau", type=float, default=tau, help=f"temperature eta/B; 0 = gradient flow (default {tau})")
    g.add_argument("--lam", type=float, default=0.0, help="ridge strength lambda (default 0)")
    g.add_argument("--T", type=float, default=T, help=T_help or f"horizon in SGF time t = k*eta/d (default {T})")
    g.add_argument("--dt", type=float, default=dt, help=f"time step of the grid (default {dt})")
    g.add_argument("--seed", type=int, default=0, help="root random seed (default 0)")
    g.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a model parameter (repeatable)")


#: One vocabulary for every command: ``--method`` is always the simulated dynamics,
#: ``--scheme`` always the DMFT solver scheme.
DYNAMICS_HELP = ("simulated dynamics: sgd (minibatch SGD, clock t = k*eta/d) or sgf (Euler-Maruyama "
                 "stochastic gradient flow)")


def add_dynamics_arg(group, *, both: bool = False) -> None:
    """``--method {sgd,sgf[,both]}``; default :func:`default_dynamics` (the same in simulate and compare)."""
    group.add_argument("--method", choices=("sgd", "sgf") + (("both",) if both else ()), default=None,
                       help=DYNAMICS_HELP + (", or both" if both else "") + " (default sgd, or sgf at tau = 0)")


def add_check_alpha_arg(group) -> None:
    """``--check-alpha`` (the solve option ``check_alpha``; None: its default)."""
    group.add_argument("--check-alpha", type=float, default=None, metavar="ALPHA",
                       help="false-alarm rate of the self-checks: the probability that a correct solve "
                            "is reported inaccurate (default 1e-3)")


def default_dynamics(method, tau: float) -> str:
    """The dynamics of ``--method`` when not given: SGD (the experiment), SGF at tau = 0 (no SGD exists)."""
    return method or ("sgd" if tau > 0 else "sgf")


def add_scheme_arg(group, default: str | None) -> None:
    """``--scheme {sweep,fixed-point}``: the DMFT solver scheme."""
    group.add_argument("--scheme", choices=("sweep", "fixed-point"), default=default,
                       help="DMFT scheme: causal forward sweep or damped fixed point over whole trajectories "
                            f"(default {default or 'sweep'})")


def parse_params(items) -> dict:
    out = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise SettingsError(f"--param expects NAME=VALUE, got {item!r} (e.g. --param beta=3).")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise SettingsError(f"--param {name.strip()}: value {value!r} is not a number.") from None
    return out


def settings_from_args(args, model=None) -> Settings:
    """Validated Settings from parsed options; parameter names are checked against ``model``."""
    s = Settings(delta=args.delta, tau=args.tau, lam=args.lam, T=args.T, dt=args.dt, seed=args.seed,
                 params=parse_params(args.param))
    if model is not None:
        model.param_vector(s.params)  # raises SettingsError naming the unknown parameter
    return s


def result_path(out):
    """The --out FILE of simulate/solve/solve-long, checked before any work is done: the suffix,
    and that the file can be written there (existing writable directory or creatable one, not a
    directory, not below a file; dmftgen._io.check_output_file)."""
    from pathlib import Path

    from .._io import check_output_file

    out = Path(out)
    if out.suffix not in (".nc", ".json", ".npz"):
        raise SettingsError(f"--out {out}: the file must end in .nc (labelled netCDF), .json or .npz.")
    return check_output_file(out)


def write_result(res, out, command: str) -> tuple:
    """Save a run's Result (dmftgen.results.save_result) and tell the user where it went.

    A non-ok run never replaces a good earlier file at --out (it goes beside it as
    <stem>.failed<suffix>); a failed write saves the result to a rescue path and raises
    OutputError (exit 2).  Returns (path written, exit status for the run's status):
    0 ok, 130 interrupted, 1 otherwise.
    """
    import sys

    from ..results import save_result

    path, note = save_result(res, out)
    if note:
        print(f"dmftgen {command}: {note}.", file=sys.stderr)
    if res.ok:
        return path, 0
    print(f"dmftgen {command}: {res.status}: {res.message} -> {path}", file=sys.stderr)
    return path, 130 if res.status == "interrupted" else 1


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal (never in CI logs or pipes)."""
    import sys

    return sys.stderr.isatty()


def add_theory_arg(parser: argparse.ArgumentParser) -> None:
    """--outside-theory: run a model whose ell jumps in r (refused by default)."""
    parser.add_argument("--outside-theory", action="store_true",
                        help="run a model outside the theory's assumptions (ell discontinuous in r) "
                             "anyway; the result is marked outside_theory")


def write_output_dir(out, write):
    """``write(out)``: an output directory written as a unit (compare, w2). If that fails (disk
    full, read-only), ``write`` goes to a rescue directory and OutputError names both (exit 2);
    an earlier directory at ``out`` is unchanged either way."""
    from .._io import rescue_path
    from ..results import OutputError

    try:
        return write(out)
    except OSError as exc:
        rescue = rescue_path(out)
        try:
            write(rescue)
            where = f"the results were saved to {rescue} instead"
        except OSError:
            where = "nor could they be saved elsewhere"
        raise OutputError(f"could not write the output directory {out} ({exc.strerror or exc}); "
                          f"an earlier directory there is unchanged, {where}.") from None


def beside_good_output(out, allowed) -> tuple:
    """(DIR.failed, note): where a run that is not ok goes when the output directory ``out`` holds
    an earlier run that is all ok (compare, w2; files use :func:`dmftgen.results.failed_path`).
    DIR.failed is checked like --out (``allowed``: the file names the command writes); a foreign
    one sends the run to a rescue directory instead."""
    from .._io import check_output_dir, rescue_path
    from ..errors import SettingsError

    target = out.with_name(out.name + ".failed")
    try:
        check_output_dir(target, allowed=allowed)
    except SettingsError:
        target = rescue_path(target)
    return target, (f"{out} holds an earlier run whose results are all ok and was kept; this run (not ok) "
                    f"is written beside it to {target}")
