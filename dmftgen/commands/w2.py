"""`dmftgen w2 MODEL ... --d 256,512,1024,2048 --out DIR`: Theorem 2, W2 of the rows of theta^t to the DMFT law.

    dmftgen w2 logistic --d 256,512,1024,2048 --times 2.5,5 --out out/w2_logistic
"""
from __future__ import annotations

import math

from ._common import (add_model_arg, add_settings_args, beside_good_output, progress_enabled, settings_from_args,
                      write_output_dir)


def _ints(text):
    from ..errors import SettingsError

    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise SettingsError(f"--d expects comma-separated integers, got {text!r} (e.g. --d 256,512,1024).") from None


def _floats(text):
    from ..errors import SettingsError

    try:
        return [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise SettingsError(f"--times expects comma-separated numbers, got {text!r} (e.g. --times 2.5,5).") from None


def add_parser(sub):
    p = sub.add_parser(
        "w2", help="Theorem 2: W2(empirical law of the rows of theta^t, DMFT law) against d",
        description="Simulate at several dimensions d (all d rows of theta recorded), solve the DMFT "
                    "once with a sample of its theta-process, and compute the 2-Wasserstein distance "
                    "between the rows and the DMFT law at chosen times (exact quantile formula for "
                    "m = 1, optimal assignment for m > 1), with the sampling floor W2 of two "
                    "independent DMFT subsamples of size d. Prints a table and the log-log slopes; "
                    "writes w2.png, w2.json, w2.csv, w2.txt into --out (replaced as a unit; a scan that is not ok "
                    "goes beside a good earlier one, to DIR.failed; Ctrl-C stops at once and writes nothing, "
                    "exit 130).")
    add_model_arg(p)
    add_settings_args(p)
    g = p.add_argument_group("W2")
    g.add_argument("--d", default="256,512,1024,2048", help="comma-separated dimensions (default 256,512,1024,2048)")
    g.add_argument("--times", default=None, help="comma-separated times (default T/2,T)")
    g.add_argument("--seeds", type=int, default=4, help="simulations per d (default 4)")
    g.add_argument("--method", choices=("sgf", "sgd"), default="sgf", help="simulated dynamics (default sgf)")
    g.add_argument("--batch", type=int, default=None, help="SGD minibatch B (default 1, or eta/tau)")
    g.add_argument("--eta", type=float, default=None, help="SGD learning rate (default tau*B)")
    g.add_argument("--paths", type=int, default=20000, help="DMFT Monte Carlo paths (default 20000)")
    g.add_argument("--theta-samples", type=int, default=None,
                   help="DMFT theta-process samples (default max(paths, 2*max d))")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run)


NAMES = ("w2.png", "w2.csv", "w2.json", "w2.txt")


def _holds_good_scan(path) -> bool:
    """True when directory ``path`` holds an earlier w2 run whose status is ok."""
    import json
    from pathlib import Path

    try:
        return json.loads((Path(path) / "w2.json").read_text()).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        return False


def fmt_slope(v) -> str:
    """A log-log slope, or why there is none (dmftgen.w2.loglog_slope is NaN with fewer than two
    positive values, e.g. an excess of 0 at the floor: printed as '+nan' before)."""
    return f"{v:+.3f}" if math.isfinite(v) else "n/a (fewer than 2 sizes above 0)"


def run(args) -> int:
    import io
    import json
    import sys
    from pathlib import Path

    from .._io import check_output_dir, replace_dir
    from ..results import jsonable
    from ..model import load_model
    from ..w2 import plot_w2, scan_payload, w2_scan

    check_output_dir(args.out, allowed=lambda n: n in NAMES)  # before computing
    model = load_model(args.model)
    settings = settings_from_args(args, model)
    scan = w2_scan(model, settings, dims=_ints(args.d), times=None if args.times is None else _floats(args.times),
                   seeds=args.seeds, method=args.method, batch=args.batch, eta=args.eta, paths=args.paths,
                   theta_samples=args.theta_samples, progress=progress_enabled())
    out = Path(args.out)
    if not len(scan["t"]):  # the DMFT stopped early: nothing to show or write
        print(f"dmftgen w2: {scan.status}: {scan.message}; nothing was written"
              + (f", the earlier output in {out} is unchanged." if out.is_dir() else "."), file=sys.stderr)
        return 1
    lines = [f"dmftgen w2 {model.name}: W2(rows of theta^t, DMFT law), {args.method}, {scan.meta['seeds']} seeds/d, "
             f"{scan.meta['theta_samples']} DMFT samples; delta={settings.delta:g} tau={settings.tau:g} dt={settings.dt:g}",
             f"  {'t':>6} {'d':>6} {'W2':>18} {'floor':>18} {'excess':>9}"]
    for q, t in enumerate(scan["t"]):
        for j, d in enumerate(scan["d"]):
            lines.append(f"  {t:>6.3g} {d:>6d} {scan['w2'][q, j]:>10.4g} ± {scan['w2_sem'][q, j]:<6.2g}"
                         f"{scan['floor'][q, j]:>10.4g} ± {scan['floor_sem'][q, j]:<6.2g}{scan['excess'][q, j]:>9.3g}")
        lines.append(f"  t = {t:g}: log-log slope of W2 {fmt_slope(scan['slope'][q])}, of the floor "
                     f"{fmt_slope(scan['floor_slope'][q])}, of the excess {fmt_slope(scan['excess_slope'][q])}")
    for msg in scan.meta["messages"]:
        lines.append(f"  WARNING: {msg}")
    text = "\n".join(lines) + "\n"
    fig = plot_w2(scan, title=f"{model.name}: Theorem 2, W2 against d ({args.method}, δ={settings.delta:g}, "
                              f"τ={settings.tau:g})")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    csv = ["t,d,w2,w2_sem,floor,floor_sem,excess"]
    for q, t in enumerate(scan["t"]):
        for j, d in enumerate(scan["d"]):
            csv.append(f"{t:.10g},{d},{scan['w2'][q, j]:.10g},{scan['w2_sem'][q, j]:.10g},"
                       f"{scan['floor'][q, j]:.10g},{scan['floor_sem'][q, j]:.10g},{scan['excess'][q, j]:.10g}")
    payload = {"model": model.name, "settings": settings.as_dict(), **scan_payload(scan)}
    files = {"w2.png": buf.getvalue(), "w2.csv": ("\n".join(csv) + "\n").encode(),
             "w2.json": json.dumps(jsonable(payload, keep_inf=True), indent=1).encode(), "w2.txt": text.encode()}
    target, note = out, ""
    if not scan.ok and _holds_good_scan(out):
        # a failed scan never replaces a good earlier one: it goes beside it
        target, note = beside_good_output(out, lambda n: n in NAMES)
    written = write_output_dir(target, lambda d: replace_dir(d, files))  # the set is replaced as a unit
    print(text, end="")
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    if note:
        print(f"dmftgen w2: {note}.", file=sys.stderr)
    if not scan.ok:
        print(f"dmftgen w2: {scan.status}: {scan.message} -> {target}", file=sys.stderr)
        return 1
    return 0
