"""Issue 12 (performance): equal-accuracy cost, growth in K, fine steps, long horizon, in one run.

    PYTHONPATH=$PWD python3 bench/bench_issue12.py --quick     # (a) + (b) at K = 100..400, minutes
    PYTHONPATH=$PWD python3 bench/bench_issue12.py             # all: (a) P = 2e4, (b) K = 100..800, (c), (d)
    PYTHONPATH=$PWD python3 bench/bench_issue12.py --only a    # one section (a | b | c | d)

Every measurement runs in a fresh subprocess (peak resident memory ru_maxrss is that run's own,
imports and one warm-up solve included) after a warm-up call that compiles / loads the cached
numba kernels; the timed call reports CPU seconds (time.process_time: all threads of the process)
and wall seconds. On a shared machine quote CPU seconds; the wall column moves with the load.

(a) Equal-accuracy cost, the poster's Figure 1 setting (logistic, delta 2, tau 0.5, lam 0, T 5,
    dt 0.05): ``dmftgen.simulate(method="sgd", d=1024, seeds=4)`` gives the test loss at t = 5 with
    its standard error e_sim (``test_loss_sem``, between seeds); ``dmftgen.solve(paths=P)`` gives
    its own ``test_loss_err`` e_dmft (group jackknife, or between replicas if that is the default).
    Monte Carlo error scales like P^-1/2 and the path cost like P, so the DMFT cost at the
    simulation's error is  cpu_dmft * (e_dmft / e_sim)^2  (an upper bound on the true cost: the
    P-independent theta-side / jackknife time is scaled up too).  Printed: that cost / cpu_sim
    (goal <= 0.1), and the ratio with only the P-dependent part scaled (the P-independent part
    measured by a solve at P = 40). Each at the default options and with the tangent lever
    ``tangent_paths=1000`` (adjoint tangents on an unbiased subset of 50 paths per group).
    e_dmft is one run's error estimate (group jackknife: ~15-30 % scatter between seeds), so the
    ratio, which goes like e_dmft^2, scatters by ~+-40 % between seeds.
(b) Growth in K = T/dt at fixed P (logistic, T = 5, dt = 5/K, default tangent budget): CPU and
    wall time and peak RSS per K, fitted exponents of log(time) and log(RSS - RSS_0) against log K
    (RSS_0: the interpreter + numba baseline, measured by a P = 200, K = 10 run).
(c) Committee (m = 2, delta 3, tau 0.2, T 5) at dt = 0.01 (K = 500), P = 2e4: time, memory.
(d) Logistic lam 0.1, delta 2, tau 0.5, T = 100 via ``dmftgen.dmft.solve_long`` (coarse dt 0.1 with
    Richardson against dt 0.05, i.e. effective step 0.05 with the O(dt) error removed).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ONE = r"""
import json, resource, sys, time
import numpy as np
a = json.loads(sys.argv[1])
from dmftgen.config import Settings
from dmftgen.model import load_model
m = load_model(a["model"])
st = Settings(**a["settings"])
kind = a["kind"]
kw = a.get("kw", {})
if kind == "solve":
    from dmftgen.dmft import solve as fn
elif kind == "long":
    from dmftgen.dmft.longtime import solve_long as fn
else:
    from dmftgen.sim import simulate as fn
# warm-up: compile / load the cached kernels outside the timed region
if kind == "sim":
    fn(m, Settings(T=0.1, dt=0.05, delta=st.delta, tau=st.tau, lam=st.lam), d=64, seeds=1, method=kw.get("method", "sgd"))
else:
    from dmftgen.dmft import solve
    solve(m, Settings(T=0.2, dt=0.1, delta=st.delta, tau=st.tau, lam=st.lam), paths=400)
w0, c0 = time.perf_counter(), time.process_time()
res = fn(m, st, **kw)
w1, c1 = time.perf_counter(), time.process_time()
out = {"wall_s": w1 - w0, "cpu_s": c1 - c0, "status": res.status,
       "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}
tl = np.asarray(res["test_loss"])
out["test_loss_T"] = float(tl[-1])
for e in ("test_loss_err", "test_loss_sem"):
    if e in res:
        out["test_loss_err_T"] = float(np.asarray(res[e])[-1])
meta = res.meta
if "timings" in meta:
    out["paths_s"] = meta["timings"].get("paths_s")
    out["theta_s"] = meta["timings"].get("theta_s")
    out["total_s"] = meta["timings"].get("total_s")
    out["tangents"] = meta.get("tangents")
    out["errors"] = meta.get("errors", "")[:60]
if kind == "solve":
    from dmftgen.dmft.memory import estimate_bytes
    out["est_mb"] = estimate_bytes(m, st, kw.get("paths", 20000), {k: v for k, v in kw.items() if k != "paths"}) / 1e6
if kind == "long":
    t = np.asarray(res["t"])
    out["long"] = {k: v for k, v in meta.get("long", {}).items() if isinstance(v, (int, float, str))}
    for tt in (5.0, 10.0, 60.0, 100.0):
        i = int(np.argmin(abs(t - tt)))
        out[f"test_loss_t{tt:g}"] = [float(tl[i]), float(np.asarray(res["test_loss_err"])[i])]
print("@@" + json.dumps(out))
"""


def run(kind, model, settings, **kw):
    """One timed call in a fresh subprocess; returns its JSON figures."""
    arg = json.dumps({"kind": kind, "model": model, "settings": settings, "kw": kw})
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", ONE, arg], capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [x for x in p.stdout.splitlines() if x.startswith("@@")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} {model} {settings} {kw} failed:\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][2:])


def fit(xs, ys):
    """Least-squares slope of log y against log x."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def fmt(label, r):
    return (f"{label:40s} cpu {r['cpu_s']:8.2f} s  wall {r['wall_s']:8.2f} s  rss {r['rss_mb']:7.0f} MB  "
            f"{r['status']}")


FIG1 = {"delta": 2.0, "tau": 0.5, "lam": 0.0, "T": 5.0, "dt": 0.05, "seed": 0}


def section_a(quick, out):
    print("(a) equal-accuracy cost, logistic delta 2 tau 0.5 T 5 dt 0.05", flush=True)
    sim = run("sim", "logistic", FIG1, method="sgd", d=1024, seeds=4)
    print("   " + fmt("simulate sgd d=1024 seeds=4", sim), flush=True)
    P = 5000 if quick else 20000
    es = sim["test_loss_err_T"]
    # the P-independent part of a solve (theta-side, jackknife, test observables and their
    # gradients, self-checks): a solve with the fewest paths allowed (2 per group)
    fixed = run("solve", "logistic", FIG1, paths=40)
    print("   " + fmt("solve P=40 (P-independent part)", fixed), flush=True)
    out["a"] = {"sim": sim, "P": P, "fixed": fixed}
    # default options, then the tangent lever: response tangents on 1000 paths (50 per group,
    # an unbiased subset) instead of all P; the test-loss error at t = 5 is set by the r-side
    for label, kw in (("default", {}), ("tangent_paths=1000", {"tangent_paths": 1000})):
        dm = run("solve", "logistic", FIG1, paths=P, **kw)
        print("   " + fmt(f"solve P={P} {label}", dm) + f"  paths_s {dm['paths_s']:.2f}  total_s "
              f"{dm['total_s']:.2f} (wall)  [{dm['tangents']}]", flush=True)
        ed = dm["test_loss_err_T"]
        scale = (ed / es) ** 2
        cpu_eq = dm["cpu_s"] * scale
        wall_eq = dm["wall_s"] * scale
        ratio = cpu_eq / sim["cpu_s"]
        # scaling only the P-dependent part: fixed + (cpu - fixed) * scale
        cpu_lin = fixed["cpu_s"] + max(dm["cpu_s"] - fixed["cpu_s"], 0.0) * scale
        ratio_lin = cpu_lin / sim["cpu_s"]
        print(f"   test loss t=5: sim {sim['test_loss_T']:.5f} +- {es:.5f}   dmft {dm['test_loss_T']:.5f} +- {ed:.5f}"
              f"   [{dm.get('errors', '')}]")
        print(f"   DMFT at the simulation's error (error ~ P^-1/2, cost ~ P): P_eq = {P * scale:.0f}, "
              f"cpu {cpu_eq:.2f} s, wall {wall_eq:.2f} s")
        print(f"   ==> equal-accuracy cost ratio DMFT/sim (CPU) [{label}] = {ratio:.3f}   "
              f"(wall {wall_eq / sim['wall_s']:.3f}; goal <= 0.1); scaling only the P-dependent part "
              f"(cpu {cpu_lin:.2f} s): {ratio_lin:.3f}", flush=True)
        out["a"][label] = {"dmft": dm, "P_eq": P * scale, "ratio_cpu": ratio, "ratio_wall": wall_eq / sim["wall_s"],
                           "ratio_cpu_fixed_unscaled": ratio_lin}


def section_b(quick, out):
    Ks = (100, 200, 400) if quick else (100, 200, 400, 800)
    P = 2000
    print(f"(b) growth in K = T/dt, logistic T 5, P = {P}, default tangent budget", flush=True)
    base = run("solve", "logistic", dict(FIG1, T=1.0, dt=0.1), paths=400)
    rows = []
    for K in Ks:
        r = run("solve", "logistic", dict(FIG1, dt=5.0 / K), paths=P)
        rows.append(r)
        print("   " + fmt(f"K={K}", r) + f"  paths_s {r['paths_s']:.2f}  est {r['est_mb']:.0f} MB  "
              f"[{r['tangents']}]", flush=True)
    cpu = fit(Ks, [r["cpu_s"] for r in rows])
    wall = fit(Ks, [r["wall_s"] for r in rows])
    mem = fit(Ks, [max(r["rss_mb"] - base["rss_mb"], 1.0) for r in rows])
    mem2 = fit(Ks[-2:], [max(r["rss_mb"] - base["rss_mb"], 1.0) for r in rows[-2:]])
    est = fit(Ks, [r["est_mb"] for r in rows])
    print(f"   ==> fitted exponents over K = {Ks[0]}..{Ks[-1]}: cpu K^{cpu:.2f}, wall K^{wall:.2f} (goal <= 2.2); "
          f"RSS - {base['rss_mb']:.0f} MB baseline: K^{mem:.2f} (last two K: K^{mem2:.2f}); solver's own "
          f"allocation estimate (dmft.memory.estimate_bytes) {rows[0]['est_mb']:.0f}..{rows[-1]['est_mb']:.0f} MB: "
          f"K^{est:.2f} (goal <= 1)", flush=True)
    out["b"] = {"K": list(Ks), "P": P, "rows": rows, "base_rss_mb": base["rss_mb"], "exp_cpu": cpu,
                "exp_wall": wall, "exp_mem": mem, "exp_mem_last2": mem2, "exp_est": est}


def section_c(quick, out):
    print("(c) committee m=2 delta 3 tau 0.2 T 5 dt 0.01 (K = 500), P = 2e4", flush=True)
    st = {"delta": 3.0, "tau": 0.2, "lam": 0.0, "T": 5.0, "dt": 0.01, "seed": 0}
    r = run("solve", "committee", st, paths=20000)
    print("   " + fmt("committee dt=0.01 P=2e4", r) + f"  paths_s {r['paths_s']:.2f}  [{r['tangents']}]  "
          "(goal <= 15 s CPU, <= 1 GB)", flush=True)
    out["c"] = r


def section_d(quick, out):
    print("(d) logistic lam 0.1 delta 2 tau 0.5 T 100, solve_long dt 0.1 + Richardson (dt 0.05)", flush=True)
    st = {"delta": 2.0, "tau": 0.5, "lam": 0.1, "T": 100.0, "dt": 0.1, "seed": 0}
    r = run("long", "logistic", st, paths=20000)
    print("   " + fmt("solve_long T=100", r) + "  (goal <= 120 s CPU, <= 2 GB)", flush=True)
    print("   test loss (value, err) at t = 5, 10, 60, 100: " +
          ", ".join(str(r.get(f"test_loss_t{t}")) for t in ("5", "10", "60", "100")), flush=True)
    out["d"] = r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="(a) at P = 5000, (b) at K <= 400; skip (c), (d)")
    ap.add_argument("--only", choices=("a", "b", "c", "d"), default=None)
    ap.add_argument("--json", default=None, help="also write all figures to this JSON file")
    args = ap.parse_args()
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = float("nan")
    print(f"bench_issue12: {os.cpu_count()} CPUs, load average {load:.1f} at start"
          f"{' (--quick)' if args.quick else ''}", flush=True)
    out = {"quick": args.quick, "load_start": load}
    secs = {"a": section_a, "b": section_b, "c": section_c, "d": section_d}
    todo = [args.only] if args.only else (["a", "b"] if args.quick else ["a", "b", "c", "d"])
    for s in todo:
        secs[s](args.quick, out)
    out["load_end"] = os.getloadavg()[0]
    print(f"load average {out['load_end']:.1f} at end", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
