"""Finite-size simulators of the stochastic gradient flow (SGF) and minibatch SGD.

    simulate(model, settings, d=..., seeds=..., method="sgf"|"sgd", ...) -> dmftgen.results.Result

Layers: ``data`` (seeded draws of X, teacher, init, noise), ``sgf`` / ``sgd`` (one seed, on the
generated kernels of ``dmftgen/codegen/templates/sim.py``), ``driver`` (validation, seeds, test
observables, mean and standard errors, metadata).
"""
from .data import SimData, draw_data
from .driver import resolve_run, simulate
from .path import Path
from .sgd import run_sgd
from .sgf import run_sgf

__all__ = ["simulate", "resolve_run", "run_sgf", "run_sgd", "draw_data", "SimData", "Path"]
