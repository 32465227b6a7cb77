"""Issue 12: the tangents' control variate -- pathwise, its linear part, or a window of it.

    PYTHONPATH=$PWD python3 bench/bench_cv.py                       # committee, dt 0.02
    PYTHONPATH=$PWD python3 bench/bench_cv.py --model logistic --dt 0.02 --windows 16 64

One replica of a solve (4000 paths, 640 tangent paths) supplies the tangent paths' histories
(a_l = grad ell(r_l) (dt + sqrt(tau delta) dB_l), grad ell(r_k)), R_theta and the control
variate's matrices Gcv; then, in float64 numpy and vectorised over the paths, for rows
k = K/5, K/2, K the adjoint Z and three control variates (docs/theory.md section 3):

* pathwise: Zc, the same recursion with Gcv[l] (dt + sqrt(tau delta) dB_l) in place of a_l,
  estimator Z - Zc + E Zc (what the kernel runs with ``tangent_cv="pathwise"``: twice the flops);
* linear: L, Zc's first-order part in eps_l = sqrt(tau delta) dB_l / dt (mean 0, linear in eps),
  estimator Z - L (``tangent_cv="linear"``, the default: its path average is L at the mean eps,
  one deterministic recursion per row, :func:`dmftgen.dmft._linalg.adjoint_mean_row`);
* windowed: Zc with its sums cut to m - l <= W, whose mean is the same cut recursion (exact).

Printed per row: the summed variance over the row's entries of each estimator, relative to the
pathwise one (and of Z alone), and for the linear one the variance with the best scalar multiple
of L (whether rescaling it would help).
"""
from __future__ import annotations

import argparse

import numpy as np


def histories(name, dt, paths, tangent_paths, seed=0):
    from dmftgen.config import Settings
    from dmftgen.dmft.options import as_options
    from dmftgen.dmft.solver import Solve
    from dmftgen.model import load_model

    model = load_model(name)
    committee = name == "committee"
    st = Settings(delta=3 if committee else 2, tau=0.2 if committee else 0.5, T=5, dt=dt, seed=seed)
    sv = Solve(model, st, paths, "sweep", 0, False, as_options({"tangent_paths": tangent_paths}))
    sv.run()
    r = sv.rside
    nt = r.n_tan_g * r.G
    pix = np.array([r.bounds[t // r.n_tan_g] + t % r.n_tan_g for t in range(nt)])
    fac = st.dt + r.sq * r.dB[pix]
    return dict(M=sv.m, N=sv.N, nt=nt, A=r.a_hist[:nt], Gh=r.g_hist[:nt], fac=fac, eps=fac / st.dt - 1.0,
                Gcv=r.Gcv, Gcv_g=r.Gcv_g, R=sv.th.R, inv=1.0 / sv.delta, dt=st.dt)


def row_variances(h, k, windows):
    M, nt, inv, dt = h["M"], h["nt"], h["inv"], h["dt"]
    Rb = h["R"][: (k + 1) * M, : k * M].reshape(k + 1, M, k, M)  # Rb[i, b, l, c]
    A, Gcv, fac, eps = h["A"], h["Gcv"], h["fac"], h["eps"]
    Z = np.zeros((nt, k + 1, M, M))
    Z[:, k] = h["Gh"][:, k]
    L = np.zeros((nt, k + 1, M, M))
    E = np.zeros((k + 1, M, M))
    E[k] = h["Gcv_g"][k]
    Wall = list(windows) + [k + 1]
    Zc = {W: np.zeros((nt, k + 1, M, M)) for W in Wall}
    Ec = {W: np.zeros((k + 1, M, M)) for W in Wall}
    for W in Wall:
        Zc[W][:, k] = Ec[W][k] = h["Gcv_g"][k]
    push = lambda X, lo, hi, l: np.einsum("...iab,ibc->...ac", X[..., lo:hi, :, :], Rb[lo:hi, :, l, :])
    for l in range(k - 1, -1, -1):
        Z[:, l] = -inv * push(Z, l + 1, k + 1, l) @ A[:, l]
        E[l] = -inv * push(E, l + 1, k + 1, l) @ Gcv[l] * dt
        L[:, l] = E[l] * eps[:, l, None, None] - inv * (push(L, l + 1, k + 1, l) @ Gcv[l]) * dt
        for W in Wall:
            hi = min(k, l + W) + 1
            Zc[W][:, l] = -inv * (push(Zc[W], l + 1, hi, l) @ Gcv[l]) * fac[:, l, None, None]
            Ec[W][l] = -inv * push(Ec[W], l + 1, hi, l) @ Gcv[l] * dt
    var = lambda X: float(X.var(0).sum())
    full = var(Z[:, :k] - Zc[k + 1][:, :k])
    X = Z[:, :k].reshape(nt, -1) - Z[:, :k].reshape(nt, -1).mean(0)
    Y = L[:, :k].reshape(nt, -1) - L[:, :k].reshape(nt, -1).mean(0)
    b = (X * Y).sum() / (Y * Y).sum()
    out = {"none": var(Z[:, :k]) / full, "linear": var(Z[:, :k] - L[:, :k]) / full,
           "best multiple": float(((X - b * Y) ** 2).sum() / nt) / full, "b": b}
    for W in windows:
        out[f"W={W}"] = var(Z[:, :k] - Zc[W][:, :k]) / full
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="committee")
    ap.add_argument("--dt", type=float, default=0.02)
    ap.add_argument("--paths", type=int, default=4000)
    ap.add_argument("--tangent-paths", type=int, default=640)
    ap.add_argument("--windows", type=int, nargs="*", default=[16, 64])
    a = ap.parse_args(argv)
    h = histories(a.model, a.dt, a.paths, a.tangent_paths)
    N = h["N"]
    print(f"{a.model} dt {a.dt}: K = {N + 1}, {h['nt']} tangent paths; variance of K_ell row k summed over "
          "its entries, relative to the pathwise control variate")
    for k in (N // 5, N // 2, N):
        o = row_variances(h, k, a.windows)
        print(f"  k = {k:4d}: " + "  ".join(f"{key} {v:.3f}" for key, v in o.items()), flush=True)


if __name__ == "__main__":
    main()
