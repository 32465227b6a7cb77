"""Issue 12 (performance) levers that must not move a result: test observables of the replicas at
their mean, the sweep's row mode for the per-group two-time sums, the running replica sums."""
import numpy as np
import pytest

from dmftgen.codegen import load_kernels
from dmftgen.config import Settings
from dmftgen.model import load_model
from dmftgen.observables import replica_test_observables, test_observables


def test_replica_test_observables_match_the_per_replica_evaluation():
    """Committee (smooth in Q, M): F at the replica mean equals the mean of the R evaluations to the
    Jensen gap, and the propagated error equals their standard error to a few per cent."""
    model = load_model("committee")
    kern = load_kernels(model)
    p = model.param_vector()
    rng = np.random.default_rng(0)
    T, R = 5, 8
    base_Q = np.array([[[0.5, 0.1], [0.1, 0.4]]] * T) * np.linspace(1, 2, T)[:, None, None]
    base_M = np.full((T, 2, 1), 0.3)
    Qs = np.array([base_Q + 0.01 * (lambda a: a + np.swapaxes(a, 1, 2))(rng.standard_normal((T, 2, 2)))
                   for _ in range(R)])
    Ms = np.array([base_M + 0.01 * rng.standard_normal((T, 2, 1)) for _ in range(R)])
    rho = np.eye(1)
    per = np.array([test_observables(kern, model, Qs[r], Ms[r], rho, p)["test_loss"] for r in range(R)])
    out = replica_test_observables(kern, model, Qs, Ms, rho, p)
    err = per.std(0, ddof=1) / np.sqrt(R)
    assert np.all(np.abs(out["test_loss"] - per.mean(0)) < 0.05 * err)
    assert np.allclose(out["test_loss_err"], err, rtol=0.05)


@pytest.mark.parametrize("name,tau,kw", [("logistic", 0.5, {"replicas": 1, "jackknife": False}),
                                          ("committee", 0.0, {"replicas": 1, "jackknife": False}),
                                          ("committee", 0.2, {}),
                                          ("linreg", 0.3, {"replicas": 1, "jackknife": False})])
def test_row_mode_gives_the_same_solve(name, tau, kw, monkeypatch):
    """The sweep with only row k of su_sum / kl_sum per group (default) and with every row (as
    before issue 12): the same bytes for every curve, the self-checks equal to round-off. The row
    mode records the self-checks' contractions during the sweep, from the one-row sums (the
    kernel's S_U row buffer, the zeroing between steps, C_theta's row from the causal factor); the
    full mode after it, from the stored sums and C_theta (checks.RowRecord.after; the contractions
    themselves are tested in test_selfchecks). Monte Carlo tangents with and without the control
    variate (committee tau 0.2 / 0), Stein and pathwise nu, deterministic tangents (linreg)."""
    from dmftgen.dmft import solve, solver

    model = load_model(name)
    st = Settings(delta=2 if name == "logistic" else 3, tau=tau, T=1.0, dt=0.1)
    a = solve(model, st, paths=2000, **kw)
    monkeypatch.setattr(solver.Solve, "use_row_sums", lambda self: False)
    b = solve(model, st, paths=2000, **kw)
    assert a.status == b.status == "ok"
    assert set(a.keys()) == set(b.keys())
    for key in a.keys():
        if key.startswith("check_"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-9, atol=1e-14)
        else:
            assert np.array_equal(np.asarray(a[key]), np.asarray(b[key]), equal_nan=True), key
    za = [c["worst_z"] for c in a.meta["checks"]]
    zb = [c["worst_z"] for c in b.meta["checks"]]
    np.testing.assert_allclose(za, zb, rtol=1e-9, atol=1e-12)


def test_replica_solve_reports_the_timings_of_all_replicas():
    """The combined solve's path and theta-side seconds are the replicas' together, not the first
    replica's alone (~1/R of them: it was reported as the solve's), and its wall and CPU
    seconds cover the whole solve. Bookkeeping, not speed: every timing is >= 0, so the sum
    over all replicas is >= the sum over the others, which the first replica's alone is not."""
    from dmftgen.dmft import solve

    model, st = load_model("logistic"), Settings(delta=2, tau=0.5, T=0.5, dt=0.1)
    solve(model, st, paths=800)  # warm-up: the first replica of a process's first solve loads the kernels
    res = solve(model, st, paths=800)
    t = res.meta["timings"]
    others = res.meta["replica_meta"]
    assert len(others) == res.meta["replicas"] - 1 >= 2
    for key in ("paths_s", "theta_s", "total_s"):
        assert t[key] >= sum(m["timings"][key] for m in others) > 0
    assert t["total_s"] >= t["paths_s"] + t["theta_s"]
