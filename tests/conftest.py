"""Shared test configuration: hypothesis profiles and fixtures.

Profiles (select with HYPOTHESIS_PROFILE=...):
  default   few examples, derandomized (reproducible CI runs), no deadline (numba compiles)
  thorough  many examples, for the slow validation run (pytest -m slow)
"""
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=20, deadline=None, derandomize=True, database=None,
                          print_blob=True, report_multiple_bugs=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("thorough", max_examples=200, deadline=None, print_blob=True,
                          report_multiple_bugs=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.getenv("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def gen_dir(tmp_path, monkeypatch):
    """Point dmftgen's generated/ at a temporary directory (never touch the repository's)."""
    d = tmp_path / "generated"
    monkeypatch.setenv("DMFTGEN_GENERATED", str(d))
    return d


@pytest.fixture(scope="session")
def reg_h_model(tmp_path_factory):
    """linreg with a declared regulariser (tests.model_sources.REG_H), generated and compiled once
    per session in a temporary folder."""
    from dmftgen.codegen import generate
    from dmftgen.model import load_model

    from .model_sources import REG_H

    f = tmp_path_factory.mktemp("reg_h") / "reg_h_test.py"
    f.write_text(REG_H)
    generate(load_model(str(f)))
    return load_model(str(f))


@pytest.fixture(scope="module")
def linreg():
    from dmftgen.model import load_model

    return load_model("linreg")


@pytest.fixture(scope="module")
def logistic():
    from dmftgen.model import load_model

    return load_model("logistic")
