"""`dmftgen show-result FILE`: status, settings and the self-checks of a saved result.

    dmftgen show-result dmft.json
"""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser(
        "show-result", help="print a saved result's status, settings and self-checks",
        description="Print the status and message of a result file (.json or .npz written by simulate, "
                    "solve, solve-long), its settings, the final values with error bars and, for a DMFT "
                    "solve, every self-check (the identities the exact discrete solution satisfies: "
                    "Q and M balance, kernel consistency, descent at tau = 0, sampler), with its worst "
                    "|z|, threshold and time. Exit status 0 if the status is ok, 1 otherwise.")
    p.add_argument("file", metavar="FILE", help="result file (.json or .npz)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..errors import SettingsError
    from ..results import Result

    path = Path(args.file)
    if not path.is_file():
        raise SettingsError(f"{path}: no such result file; give a .json or .npz written by dmftgen.")
    try:
        if path.suffix in (".json", ".npz"):
            res = Result.load(path)
        else:
            from ..dataset import load, to_result

            res = to_result(load(path))
    except Exception as exc:  # a corrupted or foreign file: one message, no traceback
        raise SettingsError(f"{path}: cannot be read as a dmftgen result ({type(exc).__name__}: {exc}).") from None
    meta = res.meta or {}
    print(f"file       {path}")
    print(f"model      {meta.get('model', '?')}   status {res.status}" + (f": {res.message}" if res.message else ""))
    if meta.get("settings"):
        print("settings   " + ", ".join(f"{k} = {v}" for k, v in meta["settings"].items() if k != "params")
              + (f", params {meta['settings'].get('params')}" if meta["settings"].get("params") else ""))
    if meta.get("outside_theory"):
        print(f"OUTSIDE THEORY: {meta['outside_theory']}")
    if "t" in res and len(res.t):
        for key in ("train_loss", "test_loss"):
            if key in res:
                err = res.get(key + "_err", res.get(key + "_sem"))
                e = f" ± {float(err[-1]):.2g}" if err is not None else ""
                print(f"{key:<10} {float(res[key][-1]):.6g}{e} at t = {float(res.t[-1]):g}")
    checks = meta.get("checks") or []
    pool = meta.get("pooled_checks") or []
    if checks:
        alpha = (meta.get("options") or {}).get("check_alpha", 1e-3)
        which = (f"; those of replica 1 of {meta.get('replicas')}, then those pooled over the replicas"
                 if pool else "")
        print(f"self-checks (fail when |z| > threshold; false-alarm rate {alpha:g} for the solve{which}):")
        for c in checks + pool:
            tw = c.get("t_worst")
            where = f" at t = {tw:g}" if isinstance(tw, (int, float)) and tw == tw else ""
            print(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['name']:<26} worst {c['worst_z']:.3g} "
                  f"(threshold {c['threshold']:.3g}){where}: {c['what']}")
    return 0 if res.ok else 1
