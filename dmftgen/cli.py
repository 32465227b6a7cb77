"""Command-line interface: one subcommand per module in ``dmftgen/commands/``.

Each command module exposes ``add_parser(subparsers)`` and ``run(args) -> int``.  User errors
(DmftgenError) are printed as one message without a traceback and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from .errors import DmftgenError

#: Pipeline order; a command whose module does not exist (yet) is simply not offered.
COMMANDS = ("list", "show", "generate", "simulate", "solve", "solve-long", "stationary", "compare", "w2", "sweep",
            "plot", "show-result")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmftgen",
        description="Declare a model in sympy; generate numba kernels; simulate SGD/SGF; solve its DMFT; compare.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"dmftgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        modname = f"dmftgen.commands.{name.replace('-', '_')}"
        if importlib.util.find_spec(modname) is None:
            continue
        importlib.import_module(modname).add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DmftgenError as exc:
        print(f"dmftgen {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # commands that keep partial work say where (sweep: its parts); otherwise nothing was
        # written and an earlier output is untouched (every write is atomic)
        note = getattr(args, "interrupt_note", None) or "nothing was written; an earlier output is unchanged"
        print(f"dmftgen {args.command}: interrupted; {note}.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`dmftgen show MODEL | head`): stop quietly like other Unix tools,
        # exit 128 + SIGPIPE; files are written before the summaries are printed. Point stdout at
        # devnull so that the interpreter's final flush does not raise again.
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except MemoryError:
        print(f"dmftgen {args.command}: error: out of memory; nothing was written. Use fewer paths/seeds, "
              "a smaller d, or a coarser --dt / shorter --T.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
