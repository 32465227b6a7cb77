"""Issue 9's committee table at one time step: DMFT sweep against SGF at the same dt.

Committee (m = 2), delta 3, tau 0 (gradient flow), T 5. The DMFT is solved once (8 replicas,
``--paths`` in total, optionally ``--tangent-paths``), then ``dmftgen.compare`` simulates the SGF at
the same dt for every size in ``--d`` (fit in 1/d when several) and writes figure, table and
summary into ``--out``. The DMFT's CPU seconds are printed (time.process_time).

    python bench/bench_committee_tau0.py --dt 0.005 --d 2000 --tangent-paths 480 --out out/c_tau0_dt0.005
"""
import argparse
import time

from dmftgen import Settings, load_model, solve
from dmftgen.comparison import compare, write_outputs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dt", type=float, required=True)
    ap.add_argument("--tau", type=float, default=0.0)
    ap.add_argument("--d", default="2000", help="simulation sizes, comma separated")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--paths", type=int, default=40000)
    ap.add_argument("--tangent-paths", type=int, default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    model = load_model("committee")
    s = Settings(delta=3, tau=a.tau, T=5, dt=a.dt)
    c0, w0 = time.process_time(), time.perf_counter()
    opts = {} if a.tangent_paths is None else {"tangent_paths": a.tangent_paths}
    dm = solve(model, s, paths=a.paths, **opts)
    print(f"DMFT {dm.status} {dm.message} ({dm.meta['tangents']}): {time.process_time() - c0:.0f} s CPU, "
          f"{time.perf_counter() - w0:.0f} s wall", flush=True)
    cmp = compare(model, s, d=[int(x) for x in a.d.split(",")], seeds=a.seeds, methods=("sgf",),
                  paths=a.paths, dmft=dm)
    write_outputs(cmp, a.out)
    print(open(f"{a.out}/summary.txt").read())


if __name__ == "__main__":
    main()
