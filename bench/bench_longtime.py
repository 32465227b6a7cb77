"""Long-horizon DMFT (dmftgen.dmft.solve_long): time, peak memory, accuracy, stationary values.

    python bench/bench_longtime.py                 # all cases (~6-10 min on 2 shared cores)
    python bench/bench_longtime.py --case linreg   # one case
    python bench/bench_longtime.py --paths 10000   # fewer paths (faster, larger error bars)

Cases (each in its own subprocess, so that the peak resident memory ru_maxrss is the case's own):

* ``linreg``: ridge-less regression, delta = 2, tau = 0.5, sigma = 0.5, T = 100 at dt = 0.2
  (Richardson with dt = 0.1: K = 500 and 1000), against the continuous Volterra curve and the
  noise floor (continuous and exact-discrete), and a uniform dt = 0.025 solve on t <= 10.
* ``logistic``: logistic teacher-student with ridge lam = 0.1, delta = 2, tau = 0.5, T = 50 at
  dt = 0.2 (K = 250 and 500), against a uniform dt = 0.05 solve on t <= 10; stationary values
  by the plateau test and the stationarity balance dQ/dt = 0.

Each case prints one JSON line with the figures (and a readable summary). Numba compilation is
excluded by a warm-up solve. The machine was shared with other jobs when the figures in
docs/longtime.md were taken.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _case(name, paths, T, dt):
    import numpy as np

    from dmftgen.config import Settings
    from dmftgen.dmft import solve
    from dmftgen.dmft.longtime import compare_overlap, peak_rss_mb, solve_long
    from dmftgen.dmft.stationary import linreg_stationary, q_balance, stationary_values
    from dmftgen.model import load_model

    model = load_model(name)
    lam = 0.0 if name == "linreg" else 0.1
    T = T or (100.0 if name == "linreg" else 50.0)
    dt = dt or 0.2
    dt_ref, T_ref = (0.025, 10.0) if name == "linreg" else (0.05, 10.0)
    # warm-up: compile the kernels outside the timed region
    solve(model, Settings(delta=2.0, tau=0.5, lam=lam, T=0.5, dt=0.1, seed=0), paths=400, groups=4)
    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    res = solve_long(model, Settings(delta=2.0, tau=0.5, lam=lam, T=T, dt=dt, seed=1), paths=paths)
    wall = time.perf_counter() - t0
    rss_long = peak_rss_mb()
    t1 = time.perf_counter()
    ref = solve(model, Settings(delta=2.0, tau=0.5, lam=lam, T=T_ref, dt=dt_ref, seed=2), paths=paths)
    wall_ref = time.perf_counter() - t1
    out = {"case": name, "status": res.status, "T": T, "dt": [dt, dt / 2], "paths": paths,
           "steps": res.meta["long"]["steps"], "wall_s": round(wall, 1),
           "peak_rss_mb": round(rss_long, 0), "rss_before_mb": round(rss0, 0),
           "uniform_ref": {"dt": dt_ref, "T": T_ref, "steps": int(round(T_ref / dt_ref)),
                           "wall_s": round(wall_ref, 1)},
           "overlap": compare_overlap(res, ref)}
    # coarse-only (no extrapolation) agreement with the same reference, for contrast
    coarse_view = type(res)({"t": res.t, **{k: res[k + "_coarse"] for k in ("train_loss", "test_loss", "Q", "M")},
                             **{k + "_err": res[k + "_coarse_err"] for k in ("train_loss", "test_loss", "Q", "M")
                                if k + "_coarse_err" in res}})
    out["overlap_coarse_only"] = compare_overlap(coarse_view, ref)
    stat = stationary_values(res, keys=["train_loss", "test_loss", "Q", "M"])
    out["stationary"] = {k: p.as_dict() for k, p in stat.items()}
    if name == "linreg":
        from dmftgen.reference.marchenko_pastur import gradient_flow
        from dmftgen.reference.volterra import volterra

        v = volterra(res.t, 2.0, 0.5, 0.5, lam)
        g = gradient_flow(res.t, 2.0, sigma=0.5, lam=lam)
        out["vs_volterra_max_abs"] = {"train_loss": float(np.abs(res["train_loss"] - v.train).max()),
                                      "M": float(np.abs(res["M"][:, 0, 0] - g.M).max())}
        out["floor"] = {"continuous": linreg_stationary(2.0, 0.5, 0.5, lam),
                        "dt": linreg_stationary(2.0, 0.5, 0.5, lam, dt=dt),
                        "dt/2": linreg_stationary(2.0, 0.5, 0.5, lam, dt=dt / 2)}
        from dmftgen.dmft.stationary import plateau

        out["stationary_coarse"] = {k: plateau(res, k + "_coarse").as_dict() for k in ("train_loss", "test_loss")}
    # direct stationary solve (lag kernels) at the coarse step, vs the coarse solve's plateau
    from dmftgen.dmft.stationary import plateau
    from dmftgen.dmft.stationary_dmft import solve_stationary

    lam_s = lam if lam > 0 else 0.1  # linreg case: lam = 0.1 (short memory), exact floor known
    st_s = Settings(delta=2.0, tau=0.5, lam=lam_s, T=1.0, dt=dt, seed=3)
    t2 = time.perf_counter()
    ss = solve_stationary(model, st_s, paths=min(paths, 8000), window=20.0 if name == "linreg" else 30.0)
    out["stationary_solve"] = {k: ss[k] for k in ("train_loss", "train_loss_err", "test_loss", "Q", "Q_err", "M",
                                                 "M_err", "iterations", "converged")}
    out["stationary_solve"]["wall_s"] = round(time.perf_counter() - t2, 1)
    out["stationary_solve"]["lam"] = lam_s
    if name == "linreg":
        out["stationary_solve"]["exact_dt"] = linreg_stationary(2.0, 0.5, 0.5, lam_s, dt=dt)
    else:
        out["stationary_solve"]["plateau_coarse"] = {k: plateau(res, k + "_coarse", atol=0.0).as_dict()
                                                     for k in ("train_loss", "test_loss", "Q", "M")}
    B, scale = q_balance(res)
    late = res.t >= 0.8 * res.t[-1]
    out["q_balance_late"] = {"mean_B": float(B[late, 0, 0].mean()), "max_abs_B": float(np.abs(B[late, 0, 0]).max()),
                             "scale": float(scale[late].mean())}
    print(json.dumps(out))


def _summary(d):
    lines = [f"== {d['case']}: T = {d['T']:g}, dt = {d['dt'][0]:g} & {d['dt'][1]:g} (K = {d['steps']}), "
             f"P = {d['paths']}: {d['wall_s']} s wall, peak RSS {d['peak_rss_mb']:.0f} MB ({d['status']})",
             f"   uniform reference dt = {d['uniform_ref']['dt']} on t <= {d['uniform_ref']['T']:g} "
             f"(K = {d['uniform_ref']['steps']}): {d['uniform_ref']['wall_s']} s"]
    for k, c in d["overlap"].items():
        cc = d["overlap_coarse_only"].get(k, {})
        lines.append(f"   overlap {k:>10}: max |diff| {c['max_abs']:.2e} (rel {c['max_rel']:.2%}, max z {c['max_z']:.2f}); "
                     f"coarse dt only: {cc.get('max_abs', float('nan')):.2e}")
    for k, p in d["stationary"].items():
        lines.append(f"   stationary {k:>10}: {p['value']:.5g} ± {p['err']:.2g} from t = {p['t_reached']:g} "
                     f"(reached {p['reached']})")
    if "floor" in d:
        f = d["floor"]
        lines.append(f"   noise floor (L, E): continuous {f['continuous'][0]:.5f}, {f['continuous'][1]:.5f}; "
                     f"at dt {f['dt'][0]:.5f}, {f['dt'][1]:.5f}; at dt/2 {f['dt/2'][0]:.5f}, {f['dt/2'][1]:.5f}")
        for k, p in d["stationary_coarse"].items():
            lines.append(f"   coarse-dt plateau {k}: {p['value']:.5f} ± {p['err']:.2g}")
        lines.append(f"   vs continuous Volterra: max |train diff| {d['vs_volterra_max_abs']['train_loss']:.2e}, "
                     f"max |M diff| {d['vs_volterra_max_abs']['M']:.2e}")
    s = d["stationary_solve"]
    lines.append(f"   direct stationary solve (dt = {d['dt'][0]:g}, lam = {s['lam']:g}, {s['iterations']} iterations, "
                 f"{s['wall_s']} s): train {s['train_loss']:.5f} ± {s['train_loss_err']:.2g}, test {s['test_loss']:.5f}, "
                 f"Q {s['Q']:.4f} ± {s['Q_err']:.2g}, M {s['M']:.4f}")
    if "exact_dt" in s:
        lines.append(f"      exact stationary state at this dt: train {s['exact_dt'][0]:.5f}, test {s['exact_dt'][1]:.5f}")
    else:
        pc = s["plateau_coarse"]
        lines.append("      plateau of the coarse time-dependent solve: " + ", ".join(
            f"{k} {v['value']:.5g} ± {v['err']:.2g}" for k, v in pc.items()))
    q = d["q_balance_late"]
    lines.append(f"   dQ/dt balance over the last 20 %: mean {q['mean_B']:.2e}, max |B| {q['max_abs_B']:.2e} "
                 f"(scale {q['scale']:.3g})")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=("linreg", "logistic"), default=None)
    ap.add_argument("--paths", type=int, default=20000)
    ap.add_argument("--T", type=float, default=None)
    ap.add_argument("--dt", type=float, default=None)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.inner:
        _case(a.case, a.paths, a.T, a.dt)
        return
    for case in ([a.case] if a.case else ["linreg", "logistic"]):
        cmd = [sys.executable, __file__, "--inner", "--case", case, "--paths", str(a.paths)]
        if a.T:
            cmd += ["--T", str(a.T)]
        if a.dt:
            cmd += ["--dt", str(a.dt)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not line:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            raise SystemExit(f"case {case} failed")
        d = json.loads(line[-1])
        print(_summary(d))
        print(json.dumps(d))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
