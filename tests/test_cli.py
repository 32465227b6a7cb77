"""One CLI vocabulary: every subcommand described, every default stated, one meaning per option."""
import argparse

import pytest

from dmftgen.cli import build_parser
from dmftgen.commands._common import default_dynamics


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_subcommand_has_a_description_and_states_its_defaults():
    for name, sub in _subparsers().items():
        assert sub.description and len(sub.description) > 20, name
        for a in sub._actions:
            if a.help in (None, argparse.SUPPRESS) or not a.option_strings or a.dest == "help":
                continue
            if isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._AppendAction)):
                continue  # off unless given / repeatable: nothing to state
            if a.required:
                continue
            assert "default" in a.help, f"dmftgen {name} {a.option_strings[0]}: help does not state the default"


def test_one_meaning_per_option_name():
    """--method is the simulated dynamics wherever it exists, --scheme the DMFT scheme."""
    meanings = {"--method": set(), "--scheme": set()}
    for name, sub in _subparsers().items():
        for a in sub._actions:
            for opt in meanings:
                if opt in a.option_strings:
                    meanings[opt].add(frozenset(a.choices or ()) - {"both"})
    assert meanings["--method"] == {frozenset({"sgd", "sgf"})}
    assert meanings["--scheme"] == {frozenset({"sweep", "fixed-point"})}


@pytest.mark.parametrize("command", ["simulate", "compare"])
def test_simulate_and_compare_default_to_the_same_dynamics(command):
    args = build_parser().parse_args([command, "linreg", "--out", "x.nc" if command == "simulate" else "d"])
    assert args.method is None  # resolved by the one rule below in both commands
    assert default_dynamics(args.method, 0.5) == "sgd" and default_dynamics(args.method, 0.0) == "sgf"
