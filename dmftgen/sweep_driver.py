"""The sweep driver: :func:`run_sweep` on a Dask cluster (or serially), writing parts as points
finish and the combined Dataset at the end (see :mod:`dmftgen.sweep`)."""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SettingsError
from .sweep_parts import combine, load_part, parts_dir, save_part, sweep_meta, write_dataset
from .sweep_task import run_point

if TYPE_CHECKING:  # annotations only: dmftgen.sweep imports this module
    from .sweep import SweepSpec


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------
def _check_out(out) -> Path:
    out = Path(out)
    if out.suffix not in (".nc", ".nc4", ".h5"):
        raise SettingsError(f"--out {out}: a sweep is stored as netCDF; the file must end in .nc.")
    from ._io import check_output_file
    return check_output_file(out)  # writable, before any point is computed


def _holds_good_sweep(path: Path) -> bool:
    """``path`` is a readable sweep file whose every point has status ok."""
    if not path.is_file():
        return False
    try:
        import xarray as xr

        with xr.open_dataset(path, engine="h5netcdf") as ds:
            if ds.attrs.get("dmftgen") != "sweep" or "status" not in ds:
                return False
            status = [str(s) for s in ds["status"].values.ravel()]
    except Exception:  # unreadable, truncated, not a sweep: nothing worth keeping
        return False
    return bool(status) and all(s == "ok" for s in status)


def _target(out: Path, ds) -> tuple[Path | None, str]:
    """Where the combined dataset goes, and a note for the user ("" if simply ``out``).

    Like :func:`dmftgen.results.save_result`: a sweep that is not all ok never replaces an
    earlier sweep at ``out`` whose points are all ok (it goes beside it, ``<stem>.failed.nc``),
    and a dataset in which no point finished is not written at all (``out`` is left as it is).
    """
    from .results import failed_path

    status = [str(s) for s in ds["status"].values.ravel()]
    done = sum(s != "missing" for s in status)
    if done == 0:
        kept = f"; {out} was left as it was" if out.exists() else ""
        return None, f"no point finished, so no dataset was written{kept}"
    if all(s == "ok" for s in status) or not _holds_good_sweep(out):
        return out, ""
    target = failed_path(out)
    ok = status.count("ok")
    return target, (f"{out} holds an earlier sweep with every point ok and was kept; this sweep ({ok} of "
                    f"{len(status)} points ok) was written beside it to {target}")


def local_cluster(workers: int | None = None, threads_per_task: int = 1):
    """LocalCluster of ``workers`` processes, one thread slot each, no dashboard, quiet logs."""
    import dask
    from distributed import LocalCluster

    workers = int(workers or os.cpu_count() or 1)
    env = {"OMP_NUM_THREADS": threads_per_task, "MKL_NUM_THREADS": threads_per_task,
           "OPENBLAS_NUM_THREADS": threads_per_task, "NUMBA_NUM_THREADS": max(1, threads_per_task)}
    saved = {k: os.environ.get(k) for k in env}
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env,
                              "distributed.worker.daemon": True}):
            # no dashboard; the scheduler's HTTP server (health routes) still starts, on port 8787
            # unless told otherwise: a free local port, so that two sweeps (or a notebook's
            # cluster) on one machine do not warn "Port 8787 is already in use"
            return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                dashboard_address=None, silence_logs=logging.CRITICAL,
                                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    finally:
        # The nannies live in this process and distributed applies pre-spawn-environ to its
        # os.environ: put it back once the workers are spawned, or every later numba compilation
        # here fails ("Cannot set NUMBA_NUM_THREADS to a different value once the threads have
        # been launched") and this process's BLAS would be told to use one thread.
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_sweep(spec: SweepSpec, out, *, scheduler: str | None = None, workers: int | None = None,
              client=None, threads_per_task: int | None = None, progress: bool = False,
              two_time: bool = False, log=None):
    """Run (or resume) a sweep; returns the combined Dataset, also written to ``out``.

    Parameters
    ----------
    spec : SweepSpec
    out : path ending in .nc
        Combined dataset; finished points go to ``out.parts/`` as they complete.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``); default a LocalCluster.
    workers : int, optional
        Workers of the LocalCluster (default: CPU count).  ``0`` runs the points serially in
        this process (no Dask; for debugging).
    client : distributed.Client, optional
        Use this client (tests); overrides ``scheduler``/``workers``.
    threads_per_task : int, optional
        numba/BLAS threads per task (default 1 per Dask thread slot).
    progress : bool
        tqdm bar on stderr.
    two_time : bool
        Also put the two-time kernels (C_theta, R_theta, K_ell, R_ell) into ``out``; the parts
        always have them, so this can be switched on later without recomputing.
    log : callable, optional
        Called with one-line status messages (default: nothing).

    Returns
    -------
    xarray.Dataset
        As :func:`combine`; ``meta["failed"]`` lists points whose task raised (not written, so a
        resume retries them).
    """
    if workers is not None and int(workers) < 0:
        raise SettingsError(f"--workers {workers}: give the number of LocalCluster worker processes "
                            "(>= 1), or 0 to run the points here, serially.")
    if threads_per_task is not None and int(threads_per_task) < 1:
        raise SettingsError(f"--threads-per-task {threads_per_task}: give a positive number of threads "
                            "(default 1 per Dask thread slot).")
    out = _check_out(out)
    log = log or (lambda msg: None)
    points = spec.points()
    spec.check(points)  # every point's options, before any is computed
    from .codegen import load_kernels
    load_kernels(spec.model())  # stale/missing kernels: one clear error now, not one per point
    todo = [p for p in points if load_part(out, p) is None]
    done0 = len(points) - len(todo)
    run_id = uuid.uuid4().hex[:12]
    log(f"{len(points)} points, {done0} already done in {parts_dir(out)}, computing {len(todo)}")
    parts_dir(out).mkdir(parents=True, exist_ok=True)
    failed = {}
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(points), initial=done0, desc=f"sweep {spec.what}", unit="pt", file=sys.stderr)
    extra = {"threads": int(threads_per_task)} if threads_per_task else {}  # not part of the key
    saved = []

    def finished(p, payload):
        if payload.get("status") == "interrupted":
            # Ctrl-C reached the point's own run, which kept its finished part and returned: not a
            # finished point (it was saved and then reused on every resume). Stop the sweep here;
            # the points done so far are combined below and a rerun computes the rest.
            raise KeyboardInterrupt
        save_part(out, p, payload, run_id)
        saved.append(p.key)
        if bar is not None:
            bar.update(1)
        else:  # no terminal (pipe, batch log): one line per finished point
            where = ", ".join(f"{k}={v:g}" for k, v in p.coords.items())
            task_s = payload["meta"].get("worker", {}).get("task_s", float("nan"))
            log(f"{done0 + len(saved)}/{len(points)} {where}: {payload['status']} ({task_s:.1f} s)")

    own_client = own_cluster = None
    try:
        if todo and workers == 0 and client is None and scheduler is None:
            for p in todo:
                try:
                    finished(p, run_point(spec.model_ref, p.settings, spec.what, {**p.options, **extra}))
                except Exception as exc:  # noqa: BLE001 -- reported per point, the sweep goes on
                    failed[p.key] = f"{type(exc).__name__}: {exc}"
        elif todo:
            try:
                from distributed import Client, as_completed
            except ImportError:
                raise SettingsError("sweeps run on Dask: install the dist extra (pip install "
                                    "'dmftgen[dist]'), or use --workers 0 to run the points here, serially.") from None
            if client is None:
                if scheduler:
                    try:
                        own_client = client = Client(scheduler, timeout="30s")
                    except (OSError, TimeoutError) as exc:
                        raise SettingsError(f"could not connect to the Dask scheduler at {scheduler!r} ({exc}). "
                                            "Start one (`dask scheduler`, then `dask worker ADDRESS`), or omit "
                                            "--scheduler to use a LocalCluster on this machine.") from None
                else:
                    own_cluster = local_cluster(workers, threads_per_task or 1)
                    own_client = client = Client(own_cluster)
            futures = {}
            for p in todo:
                f = client.submit(run_point, spec.model_ref, p.settings, spec.what,
                                  {**p.options, **extra}, key=f"dmftgen-point-{p.key}-{run_id}", pure=False)
                futures[f] = p
            for f in as_completed(futures):
                p = futures[f]
                try:
                    payload = f.result()
                except Exception as exc:  # noqa: BLE001
                    failed[p.key] = f"{type(exc).__name__}: {exc}"
                    continue
                finally:
                    f.release()
                finished(p, payload)
    finally:
        if bar is not None:
            bar.close()
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
        wall = time.perf_counter() - t0
        run_meta = {"run_id": run_id, "computed": len(saved), "reused": done0,
                    "failed": failed, "wall_s": wall}
        ds = combine(spec, out, points, run_meta=run_meta, two_time=two_time)
        target, note = _target(out, ds)
        meta = sweep_meta(ds)
        meta.update(written=str(target) if target is not None else None, note=note)
        ds.attrs["meta"] = json.dumps(meta, allow_nan=False, default=str)
        if target is not None:
            write_dataset(ds, target)
        if note:
            log(note)
    for key, msg in failed.items():
        log(f"point {key} failed: {msg}")
    return ds
