r"""Theory against simulation: run SGD/SGF and the DMFT on one time grid, tabulate, plot, decide.

    cmp = compare(model, settings, d=1024, seeds=4, methods=("sgd",), paths=20000)
    cmp = compare(model, settings, d=(512, 1024, 2048), ...)   # finite-size extrapolation
    cmp.summary            # one screen of text: verdict, error budget, hints
    write_outputs(cmp, "out/figure1")   # figure.png, table.csv, table.json, summary.txt, *.npz

Normalised discrepancy (table column ``z``).  For a scalar observable O (train/test loss,
metrics, entries of Q and M) at grid time t_k, the simulation gives a mean over seeds with
standard error ``sem`` and the solver a value with Monte Carlo error ``err``;

.. math:: z_k = \frac{|O^{\rm sim}_k - O^{\rm dmft}_k|}{\sqrt{{\rm sem}_k^2 + {\rm err}_k^2}}.

The verdict is not a threshold on max_k z_k (~100 correlated values with estimated errors, whose
false-alarm rate is unknown) but one family of Welch t tests at four well-separated times with a
Bonferroni bound on its false-alarm rate, against the d -> infinity and dt -> 0 limits where they
were measured: :mod:`dmftgen.analysis.verdict` (and :mod:`dmftgen.analysis.stats` for the
formulas). Assumption checks: :mod:`dmftgen.analysis.diagnostics`. Figure:
:mod:`dmftgen.analysis.figure`.

Modules: :mod:`~dmftgen.comparison.run` (orchestration: :func:`compare`, :class:`Comparison`),
:mod:`~dmftgen.comparison.table` (observables, discrepancies, the table and its CSV),
:mod:`~dmftgen.comparison.summary` (summary text); this module re-exports them and writes the
files (:func:`write_outputs`).
"""
from __future__ import annotations

import json

from ..analysis.diagnostics import assumption_warnings, lipschitz_probe  # noqa: F401 (re-exported)
from ..analysis.stats import LEVEL  # noqa: F401 (re-exported)
from ..errors import SettingsError
from ..results import jsonable
# One job per module; every name stays importable from dmftgen.comparison.  The file output
# (below) stays here: it looks its helpers up in this namespace.
from .run import SIZE_SEED_STRIDE, Comparison, compare  # noqa: F401
from .summary import summary_text, verdict_what  # noqa: F401
from .table import (build_table, discrepancy, dmft_dof, observable_list, result_warnings,  # noqa: F401
                    sim_dof, table_columns, table_csv)

__all__ = ["Comparison", "compare", "assumption_warnings", "lipschitz_probe", "observable_list",
           "discrepancy", "build_table", "summary_text", "table_csv", "render_figure", "write_outputs",
           "LEVEL"]


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def render_figure(cmp: Comparison) -> bytes:
    """PNG bytes of the figure (:func:`dmftgen.analysis.figure.render`)."""
    from ..analysis.figure import render

    return render(cmp)


def table_json(cmp: Comparison) -> str:
    v = cmp.verdict
    payload = {
        "model": cmp.model.name,
        "settings": cmp.settings.as_dict(),
        "options": cmp.options,
        "t": cmp.table["t"],
        "epochs": cmp.table.get("epochs"),
        "observables": {nm: {k: (val if k != "sim" else {m: {kk: (vv if kk != "by_d" else
                                                                    {str(d_): b for d_, b in vv.items()})
                                                             for kk, vv in s.items()}
                                                         for m, s in val.items()})
                             for k, val in e.items()} for nm, e in cmp.table["observables"].items()},
        "verdict": {k: v.get(k) for k in ("word", "p", "K", "level", "times", "worst", "budget", "tests",
                                          "not_tested")},
        "verdict_uncorrected": {k: cmp.raw_verdict.get(k) for k in ("word", "p", "K")},
        "warnings": cmp.warnings,
        "status": {"dmft": cmp.dmft.status, **{f"sim_{m}": r.status for m, r in cmp.sims.items()}},
        "wall_s": cmp.wall,
        "z_note": "z = |sim - dmft| / sqrt(sem^2 + err^2); 'inf' where both errors vanish but values differ; "
                  "the verdict: Bonferroni over Welch t tests (dmftgen.analysis.verdict)",
    }
    return json.dumps(jsonable(payload, keep_inf=True), indent=1, allow_nan=False)


FILES = ("figure.png", "table.csv", "table.json", "summary.txt")


def write_outputs(cmp: Comparison, out_dir) -> dict:
    """Write figure.png, table.csv, table.json, summary.txt, sim_<method>[_d<d>].npz, dmft.npz
    [and dmft_2dt.npz].

    Every payload is produced in memory first; the directory is then replaced as a unit
    (written into a temporary directory beside it, then swapped in: dmftgen._io.replace_dir), so
    a failure at any point leaves an earlier run's set of files whole and never a mix.
    """
    from pathlib import Path

    from .._io import replace_dir

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SettingsError(f"--out {out} exists and is not a directory.")
    payloads = {
        "figure.png": render_figure(cmp),
        "table.csv": table_csv(cmp.table).encode(),
        "table.json": table_json(cmp).encode(),
        "summary.txt": cmp.summary.encode(),
    }
    results = [(f"sim_{m}.npz", r) for m, r in cmp.sims.items()]
    for m, byd in cmp.sims_by_d.items():
        if len(byd) > 1:
            results += [(f"sim_{m}_d{d_}.npz", r) for d_, r in sorted(byd.items()) if r is not cmp.sims[m]]
    results.append(("dmft.npz", cmp.dmft))
    if cmp.dt_check is not None:
        results.append(("dmft_2dt.npz", cmp.dt_check))
    for name, res in results:
        payloads[name] = res.to_bytes(".npz")
    return replace_dir(out, payloads)
