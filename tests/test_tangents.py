"""Which paths carry the response tangents (dmftgen/dmft/tangents.py, docs/theory.md §3)."""
import numpy as np
import pytest

from dmftgen import Settings, solve
from dmftgen.dmft import solver as S
from dmftgen.dmft.tangents import total_tangent_paths


def _n_tangent(res):
    """Total tangent paths of a solve from its meta ("adjoint on N paths ...")."""
    return int(res.meta["tangents"].split()[2])


def test_control_variate_equals_its_mean_at_tau0(logistic, monkeypatch):
    """At tau = 0 the own-noise factors are the constant dt: the control variate Zc equals its
    mean, so skipping it must leave K_ell unchanged to round-off. Were the claim wrong, the two
    estimates would differ at the Monte Carlo level (~1e-3 relative here), not at 1e-10."""
    st = Settings(delta=2, tau=0.0, T=1, dt=0.1)
    off = solve(logistic, st, paths=2000, replicas=1, tangent_paths=400)
    monkeypatch.setattr(S, "use_control_variate", lambda opts, tau: True)
    on = solve(logistic, st, paths=2000, replicas=1, tangent_paths=400)
    scale = np.abs(on["K_ell"]).max()
    assert scale > 0
    assert np.abs(on["K_ell"] - off["K_ell"]).max() <= 1e-10 * scale
    assert np.allclose(on["test_loss"], off["test_loss"], rtol=1e-10, atol=0)


def test_control_variate_matters_at_tau_positive(logistic, monkeypatch):
    """The converse, so that the test above has teeth: at tau > 0 the control variate changes the
    K_ell estimate (by Monte Carlo noise), i.e. the forced switch really switches it."""
    st = Settings(delta=2, tau=0.5, T=1, dt=0.1)
    on = solve(logistic, st, paths=2000, replicas=1, tangent_paths=400)
    monkeypatch.setattr(S, "use_control_variate", lambda opts, tau: False)
    off = solve(logistic, st, paths=2000, replicas=1, tangent_paths=400)
    scale = np.abs(on["K_ell"]).max()
    assert np.abs(on["K_ell"] - off["K_ell"]).max() > 1e-6 * scale


@pytest.mark.parametrize("tangent_paths", [None, 600])
def test_replicas_share_the_tangent_paths(logistic, tangent_paths):
    """R replicas carry (up to rounding to whole paths per group) the tangent paths of one solve
    of the same total size, not R times as many (the cost of the K^3 adjoint)."""
    st = Settings(delta=2, tau=0.5, T=2, dt=0.02)  # N = 100: the automatic subset is below P
    opts = {} if tangent_paths is None else {"tangent_paths": tangent_paths}
    one = solve(logistic, st, paths=16000, replicas=1, **opts)
    eight = solve(logistic, st, paths=16000, replicas=8, **opts)
    n1, n8 = _n_tangent(one), _n_tangent(eight)
    G = one.meta["groups"]
    assert n1 < 16000  # the subset is really a subset at this grid
    assert n1 <= n8 <= n1 + 8 * G  # each replica rounds up to whole paths per group


def test_automatic_subset_costs_at_most_the_r_side():
    """The automatic P_J keeps the adjoint's N^3 m^3 c / 6 per path within the r-side's
    3 N^2 m^2 / 2 per path (above the floor of 50 per group), and never exceeds P."""
    G = 20
    for N, m, P, tau in [(100, 1, 20000, 0.5), (500, 2, 20000, 0.2), (1000, 2, 80000, 0.0), (10, 1, 500, 0.5)]:
        c = 2.0 if tau > 0 else 1.0
        PJ = total_tangent_paths(P, N, m, G, {}, tau)
        assert PJ <= P
        assert PJ == min(P, 50 * G) or PJ * N ** 3 * m ** 3 * c / 6 <= 1.0001 * P * 1.5 * N ** 2 * m ** 2
