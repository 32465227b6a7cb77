"""Issue 12 (performance): equal-accuracy cost, growth in K, fine steps, long horizon, in one run.

    PYTHONPATH=$PWD python3 bench/bench_issue12.py --quick     # (a) + (b) at K = 100..400, minutes
    PYTHONPATH=$PWD python3 bench/bench_issue12.py             # all: (a) P = 2e4, (b) K = 100..800, (c), (d)
    PYTHONPATH=$PWD python3 bench/bench_issue12.py --only a    # one section (a | b | c | d)
    python3 bench/bench_issue12.py --only a --threads 1 --root /tmp/before   # another checkout

Every measurement runs in a fresh subprocess (peak resident memory ru_maxrss is that run's own,
imports and one warm-up solve included) after a warm-up call that compiles / loads the cached
numba kernels; the timed call reports CPU seconds (time.process_time: all threads of the process)
and wall seconds. On a shared machine quote CPU seconds; the wall column moves with the load.

(a) Equal-accuracy cost, the poster's Figure 1 setting (logistic, delta 2, tau 0.5, lam 0, T 5,
    dt 0.05): ``dmftgen.simulate(method="sgd", d=1024)`` run with 16 seeds gives the test-loss error
    at t = 5 of 4 seeds, e_sim = 2 x its 16-seed standard error, and the CPU of 4 seeds, cpu(16)/4
    (a 4-seed standard error itself has 3 degrees of freedom: +-80 % in the squared ratio).
    ``dmftgen.solve(paths=2e4)`` at --seeds seeds (default 3) gives the median CPU and the rms of
    its ``test_loss_err`` (between-replica, 7 dof each). Monte Carlo error ~ P^-1/2 and path cost
    ~ P give P_eq = P (e_dmft / e_sim)^2; the solve is then RUN at P_eq (same seeds), and its CPU,
    rescaled for the small mismatch of its error (P-dependent part only; the P-independent part
    is a solve at P = 320, 8 replicas of 40 paths), over the simulation's CPU is the ratio
    (goal <= 0.1). Also printed: the two scaled estimates from P = 2e4.
    ``--threads N`` runs every timed subprocess with NUMBA_NUM_THREADS = OPENBLAS_NUM_THREADS = N
    (one core = one thread everywhere); ``--root DIR`` times another checkout (before/after);
    ``--static-qmc`` runs the DMFT with its static draws by randomised QMC (dmftgen.dmft.streams).
(b) Growth in K = T/dt at fixed P (logistic, T = 5, dt = 5/K, default tangent budget): CPU and
    wall time and peak RSS per K, fitted exponents of log(time) and log(RSS - RSS_0) against log K
    (RSS_0: the interpreter + numba baseline, measured by a P = 200, K = 10 run).
(c) Committee (m = 2, delta 3, tau 0.2, T 5) at dt = 0.01 (K = 500), P = 2e4: time (median of 3 solves), memory.
(d) Logistic lam 0.1, delta 2, tau 0.5, T = 100 via ``dmftgen.dmft.solve_long`` (coarse dt 0.2 with
    Richardson against dt 0.1: measured more accurate on t <= 10 than a uniform dt = 0.05, see
    section_d), and its plateau t >= 60 against the stationary state solved directly (3 seeds).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NSEEDS = 3        # DMFT seeds in (a) (--seeds)
THREADS = None    # NUMBA_NUM_THREADS of the measured subprocesses (--threads)
KS = None         # (b): K values (--Ks)
REPEAT_C = 3      # (c): solves (--repeat-c), the median against the goal
SOLVE_KW = {}     # (a): extra options of every DMFT solve (--static-qmc)

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
if kind == "obs":
    # CPU of one evaluation of the test observables on the Figure 1 grid (both the simulation, per
    # seed, and the DMFT, once, evaluate them), after a warm-up call
    from dmftgen.codegen import load_kernels
    from dmftgen.observables import test_observables
    kern, n = load_kernels(m), len(st.times)
    Q, Mo = np.linspace(0.0, 2.0, n), np.linspace(0.0, 1.0, n)
    test_observables(kern, m, Q, Mo, 1.0, m.param_vector())
    c0 = time.process_time()
    test_observables(kern, m, Q, Mo, 1.0, m.param_vector())
    print("@@" + json.dumps({"cpu_s": time.process_time() - c0}))
    sys.exit(0)
if kind == "solve":
    from dmftgen.dmft import solve as fn
elif kind == "long":
    from dmftgen.dmft.longtime import solve_long as fn
elif kind == "stationary":
    from dmftgen import stationary as fn
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
tl = np.asarray(res["test_loss"]).ravel()
out["test_loss_T"] = float(tl[-1])
OBS = ("train_loss", "test_loss", "Q", "M")
if kind == "stationary":
    out["values"] = {k: [float(np.ravel(res[k])[0]), float(np.ravel(res[k + "_err"])[0])] for k in OBS}
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
    # late-time averages (t >= 0.6 T) of the extrapolated, coarse and fine curves; the error of
    # an average of errors fully correlated in time is the mean error (an upper bound otherwise)
    late = t >= 0.6 * t[-1]
    for sub in ("", "_coarse", "_fine"):
        out["late" + sub] = {k: [float(np.asarray(res[k + sub]).reshape(len(t), -1)[late, 0].mean()),
                                 float(np.asarray(res[k + sub + "_err"]).reshape(len(t), -1)[late, 0].mean())]
                             for k in OBS}
print("@@" + json.dumps(out))
"""


def run(kind, model, settings, **kw):
    """One timed call in a fresh subprocess; returns its JSON figures."""
    arg = json.dumps({"kind": kind, "model": model, "settings": settings, "kw": kw})
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if THREADS:
        # one core means one thread everywhere: numba's prange and numpy's BLAS (OpenBLAS threads
        # spin: 100 x 100 matrix products cost ~9x more CPU with 2 threads on a loaded machine)
        for var in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(THREADS)
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
    # The simulation's error of 4 seeds is estimated from 16 seeds (sd / sqrt(4)): a 4-seed
    # standard error has 3 degrees of freedom (+-40 % scatter, +-80 % in the squared ratio).
    # Its CPU time is that of 4 seeds (cpu(16 seeds) / 4; seeds are independent runs).
    sim = run("sim", "logistic", FIG1, method="sgd", d=1024, seeds=16)
    es = 2.0 * sim["test_loss_err_T"]
    cpu_sim = sim["cpu_s"] / 4.0
    print("   " + fmt("simulate sgd d=1024 seeds=16", sim) + f"  -> 4 seeds: cpu {cpu_sim:.2f} s, "
          f"test-loss error at t=5 {es:.5f}", flush=True)
    P = 5000 if quick else 20000
    # the P-independent part of a default solve (8 replicas of 40 paths: theta-side, checks,
    # test observables and their gradients, N+1 kernel launches per replica)
    # (median of 3 runs: one ~0.4 s run on a shared machine is easily 50 % off, and it enters the ratio)
    runs = sorted((run("solve", "logistic", FIG1, paths=320, **SOLVE_KW) for _ in range(3)), key=lambda r: r["cpu_s"])
    fixed = runs[1]
    print("   " + fmt("solve P=320 (P-independent part)", fixed) + "  (median of "
          + ", ".join(f"{r['cpu_s']:.2f}" for r in runs) + " s)", flush=True)
    out["a"] = {"sim": sim, "sim_err_4_seeds": es, "sim_cpu_4_seeds": cpu_sim, "P": P, "fixed": fixed}
    seeds = range(NSEEDS)
    dms = []
    for sd in seeds:
        dm = run("solve", "logistic", dict(FIG1, seed=sd), paths=P, **SOLVE_KW)
        dms.append(dm)
        print("   " + fmt(f"solve P={P} seed {sd}", dm) + f"  paths_s {dm['paths_s']:.2f} (wall)  "
              f"test loss {dm['test_loss_T']:.5f} +- {dm['test_loss_err_T']:.5f}  [{dm['tangents']}]", flush=True)
    cpus = sorted(d["cpu_s"] for d in dms)
    cpu_med = cpus[len(cpus) // 2]
    # pooled error (rms over seeds: each is a 7-dof between-replica estimate)
    ed = math.sqrt(sum(d["test_loss_err_T"] ** 2 for d in dms) / len(dms))
    scale = (ed / es) ** 2
    cpu_eq = cpu_med * scale
    ratio = cpu_eq / cpu_sim
    cpu_lin = fixed["cpu_s"] + max(cpu_med - fixed["cpu_s"], 0.0) * scale
    print(f"   DMFT: median cpu {cpu_med:.2f} s over {len(dms)} seeds, rms error {ed:.5f}; at the "
          f"simulation's error (error ~ P^-1/2, cost ~ P): P_eq = {P * scale:.0f}, cpu {cpu_eq:.2f} s")
    print(f"   scaled: cpu x (e_dmft/e_sim)^2 / cpu_sim = {ratio:.3f}; scaling only the P-dependent part "
          f"(cpu {cpu_lin:.2f} s): {cpu_lin / cpu_sim:.3f}", flush=True)
    out["a"].update({"dmft": dms, "cpu_median": cpu_med, "err_rms": ed, "P_eq": P * scale,
                     "ratio_scaled": ratio, "ratio_fixed_unscaled": cpu_lin / cpu_sim})
    # direct: solve at P_eq itself (no scaling assumption), same seeds
    Pq = max(320, int(round(P * scale / 320.0)) * 320)
    dq = [run("solve", "logistic", dict(FIG1, seed=sd), paths=Pq, **SOLVE_KW) for sd in seeds]
    cq = sorted(d["cpu_s"] for d in dq)[len(dq) // 2]
    eq = math.sqrt(sum(d["test_loss_err_T"] ** 2 for d in dq) / len(dq))
    for sd, d in zip(seeds, dq):
        print("   " + fmt(f"solve P={Pq} seed {sd}", d) + f"  test loss {d['test_loss_T']:.5f} +- "
              f"{d['test_loss_err_T']:.5f}", flush=True)
    # the measured cost at P_eq, rescaled for its error if it missed e_sim (P-dependent part only)
    cq_eq = fixed["cpu_s"] + max(cq - fixed["cpu_s"], 0.0) * (eq / es) ** 2
    print(f"   direct: P = {Pq}: median cpu {cq:.2f} s, rms error {eq:.5f} (sim {es:.5f}); at the "
          f"simulation's error: cpu {cq_eq:.2f} s", flush=True)
    print(f"   ==> equal-accuracy cost ratio DMFT/sim (CPU) = {cq_eq / cpu_sim:.3f} (goal <= 0.1)", flush=True)
    # a floor on the ratio: both sides evaluate the test observables with the same function, the
    # simulation once per seed, the DMFT once (at the replica mean; plus its gradient)
    v = run("obs", "logistic", FIG1)["cpu_s"]
    print(f"   test observables, one evaluation on the 101 times: cpu {v:.3f} s; in the "
          f"simulation's 4 seeds 4 x {v:.3f} s of {cpu_sim:.2f} s; a DMFT costing nothing else would "
          f"still have ratio {v / cpu_sim:.3f}", flush=True)
    out["a"].update({"obs_cpu": v, "ratio_floor": v / cpu_sim})
    out["a"].update({"direct": dq, "P_direct": Pq, "cpu_direct": cq, "err_direct": eq,
                     "ratio_cpu": cq_eq / cpu_sim})


def section_b(quick, out):
    Ks = KS or ((100, 200, 400) if quick else (100, 200, 400, 800))
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
    rss_list = ", ".join("%.0f" % r["rss_mb"] for r in rows)
    print(f"   ==> fitted exponents over K = {Ks[0]}..{Ks[-1]}: cpu K^{cpu:.2f}, wall K^{wall:.2f} (goal <= 2.2); "
          f"peak RSS {rss_list} MB (interpreter + numba ~{base['rss_mb']:.0f} MB, "
          f"+-15 MB between runs: RSS - baseline K^{mem:.2f} is unreliable below ~100 MB); solver's own "
          f"allocation estimate (dmft.memory.estimate_bytes) {rows[0]['est_mb']:.0f}..{rows[-1]['est_mb']:.0f} MB: "
          f"K^{est:.2f} (goal <= 1; its K^2 part is the O(K^2 m^2) two-time output, C_theta, R_theta, K_ell, ...)",
          flush=True)
    out["b"] = {"K": list(Ks), "P": P, "rows": rows, "base_rss_mb": base["rss_mb"], "exp_cpu": cpu,
                "exp_wall": wall, "exp_mem": mem, "exp_mem_last2": mem2, "exp_est": est}


def section_c(quick, out):
    """REPEAT_C solves (default 3), the median against the goal: one ~15 s solve on a shared
    virtual machine moves by +-10 % between runs (seen: 13.6 to 18.3 s for the same code on one
    day)."""
    print(f"(c) committee m=2 delta 3 tau 0.2 T 5 dt 0.01 (K = 500), P = 2e4, {REPEAT_C} runs", flush=True)
    st = {"delta": 3.0, "tau": 0.2, "lam": 0.0, "T": 5.0, "dt": 0.01, "seed": 0}
    runs = []
    for i in range(REPEAT_C):
        r = run("solve", "committee", st, paths=20000)
        runs.append(r)
        print("   " + fmt(f"committee dt=0.01 P=2e4 run {i + 1}", r) + f"  paths_s {r['paths_s']:.2f}  "
              f"[{r['tangents']}]", flush=True)
    cpu = [r["cpu_s"] for r in runs]
    out["c"] = {"runs": runs, "cpu_median": statistics.median(cpu), "rss_max_mb": max(r["rss_mb"] for r in runs)}
    print(f"   ==> median cpu {out['c']['cpu_median']:.2f} s (range {min(cpu):.2f}-{max(cpu):.2f}), peak RSS "
          f"{out['c']['rss_max_mb']:.0f} MB (goal <= 15 s CPU, <= 1 GB)", flush=True)


def section_d(quick, out):
    """T = 100 by ``solve_long`` at dt 0.2 with Richardson against dt 0.1. Its error on t <= 10,
    measured against 2 f(0.025) - f(0.05) on common noise (all four grids aggregate one dt = 0.025
    noise, option ``refine``; logistic, this setting, P = 2e4, T = 10), is below that of a uniform
    dt = 0.05 solve: max |error| train loss 4.6e-4 / 1.3e-3, test loss 3.6e-4 / 5.8e-4, Q 9.2e-4 /
    9.0e-3, M 2.6e-4 / 3.4e-3 (uniform 0.025: 6.5e-4, 2.9e-4, 4.5e-3, 1.7e-3): an effective step
    <= 0.05. The late plateau (t >= 60) is compared with the stationary state solved directly
    (dmftgen.stationary) at the same two steps, Richardson-combined the same way."""
    print("(d) logistic lam 0.1 delta 2 tau 0.5 T 100, solve_long dt 0.2 + Richardson (dt 0.1)", flush=True)
    st = {"delta": 2.0, "tau": 0.5, "lam": 0.1, "T": 100.0, "dt": 0.2, "seed": 0}
    r = run("long", "logistic", st, paths=20000)
    print("   " + fmt("solve_long T=100", r) + "  (goal <= 120 s CPU, <= 2 GB)", flush=True)
    print("   test loss (value, err) at t = 5, 10, 60, 100: " +
          ", ".join(str(r.get(f"test_loss_t{t}")) for t in ("5", "10", "60", "100")), flush=True)
    # the stationary state at each step from 3 seeds: one solve's error bar has 3 degrees of
    # freedom (a seed with a small one gave |z| = 3.5 against the plateau; seeds 1, 2 agreed), so
    # the reference is the plain mean of three with the error sqrt(sum err^2) / 3
    def pooled(dt):
        vals = [run("stationary", "logistic", dict(st, dt=dt, seed=sd))["values"] for sd in range(3)]
        return {k: [sum(v[k][0] for v in vals) / 3, math.sqrt(sum(v[k][1] ** 2 for v in vals)) / 3]
                for k in vals[0]}

    s2 = pooled(0.2)
    s1 = pooled(0.1)
    for sub, ref in (("_coarse", s2), ("_fine", s1),
                     ("", {k: [2 * s1[k][0] - s2[k][0], math.hypot(2 * s1[k][1], s2[k][1])] for k in s1})):
        late = r["late" + sub]
        print(f"   t >= 60{sub or ' (Richardson)'}: " + "; ".join(
            f"{k} {late[k][0]:.4f} +- {late[k][1]:.4f} vs stationary {ref[k][0]:.4f} +- {ref[k][1]:.4f} "
            f"(z {(late[k][0] - ref[k][0]) / math.hypot(late[k][1], ref[k][1]):+.1f})" for k in late), flush=True)
    out["d"] = dict(r, stationary={"dt0.2": s2, "dt0.1": s1})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="(a) at P = 5000, (b) at K <= 400; skip (c), (d)")
    ap.add_argument("--only", choices=("a", "b", "c", "d"), default=None)
    ap.add_argument("--json", default=None, help="also write all figures to this JSON file")
    ap.add_argument("--root", default=None, help="time the dmftgen of another checkout (before/after)")
    ap.add_argument("--threads", type=int, default=None, help="NUMBA_NUM_THREADS of the timed runs")
    ap.add_argument("--seeds", type=int, default=3, help="DMFT seeds in (a) (median CPU, rms error)")
    ap.add_argument("--static-qmc", action="store_true",
                    help="(a): DMFT solves with static_qmc=True (randomised QMC static draws)")
    ap.add_argument("--Ks", default=None, help="(b): comma-separated K values (default 100,200,400,800)")
    ap.add_argument("--repeat-c", type=int, default=3, help="(c): solves, median against the goal")
    args = ap.parse_args()
    global ROOT, THREADS, NSEEDS, KS, REPEAT_C
    ROOT = os.path.abspath(args.root) if args.root else ROOT
    THREADS, NSEEDS, REPEAT_C = args.threads, args.seeds, max(int(args.repeat_c), 1)
    if args.static_qmc:
        SOLVE_KW["static_qmc"] = True
    KS = tuple(int(x) for x in args.Ks.split(",")) if args.Ks else None
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = float("nan")
    print(f"bench_issue12: {os.cpu_count()} CPUs, load average {load:.1f} at start"
          f"{' (--quick)' if args.quick else ''}; dmftgen from {ROOT}; NUMBA_NUM_THREADS="
          f"{THREADS or os.environ.get('NUMBA_NUM_THREADS', 'default')}", flush=True)
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
