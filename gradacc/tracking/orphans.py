"""Runs left behind by a process that no longer exists (SIGKILL, an out-of-memory kill, a preempted machine): every
run carries its host and process id (tags gradacc.host, gradacc.pid), so that a later sweep of the same study can
tell them from runs still being written, end them KILLED and say why; the runs a job's killed processes left (the
launcher ends them once torchrun has exited); and the plot a reused run never got."""
from __future__ import annotations

import os
import platform

import mlflow
from mlflow.entities import RunTag

from gradacc.names import FAILURE, HOST, PID, SERIES, STUDY
from gradacc.tracking.runs import client, store_errors
from gradacc.tracking.store import sqlite_path, wait_on_sqlite_locks


def process_gone(tags: dict[str, str]) -> bool:
    """True only where the run's writer ran on this host and its process id is free now; a run of another host,
    or of an older gradacc (no tags), cannot be judged here and is left as it is."""
    if tags.get(HOST) != platform.node() or not tags.get(PID, "").isdigit():
        return False
    try:
        os.kill(int(tags[PID]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def left_running(study: str | None = None, exp_ids: list[str] | None = None,
                 run_ids: list[str] | None = None) -> list:
    """The runs still RUNNING: of `run_ids` where given, else of `study` (None: every run) in `exp_ids` (None: every
    experiment)."""
    c = client()
    with store_errors("looking for runs left RUNNING" + (f" in study {study}" if study else "")):
        if run_ids is not None:
            return [run for run in map(c.get_run, run_ids) if run.info.status == "RUNNING"]
        exp_ids = exp_ids if exp_ids is not None else [e.experiment_id for e in c.search_experiments()]
        wanted = "attributes.status = 'RUNNING'" + (f" and tags.`{STUDY}.{study}` = '1'" if study else "")
        return c.search_runs(exp_ids, wanted) if exp_ids else []


def end_killed(runs: list, reason) -> list[str]:
    """Ends each run KILLED with `reason(run)` as its gradacc.failure; returns their names. Only for runs no live
    process writes to: a process killed outright (SIGKILL) leaves its run RUNNING forever."""
    c = client()
    for run in runs:
        with store_errors(f"ending run {run.info.run_id}, left RUNNING"):
            c.log_batch(run.info.run_id, tags=[RunTag(FAILURE, reason(run)[:4000])])
            c.set_terminated(run.info.run_id, status="KILLED")
    return [run.info.run_name for run in runs]


def orphans(study: str | None, exp_ids: list[str] | None = None) -> list:
    """The runs of `study` (None: every run) in `exp_ids` (None: every experiment) still RUNNING whose process no
    longer exists."""
    return [run for run in left_running(study, exp_ids) if process_gone(run.data.tags)]


def orphan_names(exp_id: str, study: str | None) -> list[str]:
    """'name (run id)' of each orphan of the experiment (or of its study): what compare leaves out and says so."""
    return [f"{run.info.run_name} ({run.info.run_id})" for run in orphans(study, [exp_id])]


def end_orphans(study: str, by: str) -> list[str]:
    """Ends KILLED every orphan of `study` (see `orphans`), with gradacc.failure saying whose process was gone and
    who ended it; returns their names."""
    return end_killed(orphans(study), lambda run: (
        f"left RUNNING by process {run.data.tags[PID]} on {run.data.tags[HOST]}, which no longer exists (killed "
        f"outright: SIGKILL, out of memory, a lost machine); ended KILLED by {by}; what it logged is all it has"))


def end_runs_left_running(study: str | None, reason: str, run_ids: list[str] | None = None) -> list[str]:
    """After the processes of a job have all exited (torchrun's workers, a spread sweep's ranks): ends KILLED every
    run of `study` (or of `run_ids`) still RUNNING, with `reason`; returns their names."""
    if study is None and not run_ids:
        return []
    path = sqlite_path(mlflow.get_tracking_uri())
    if path and not os.path.exists(path):  # nothing was written, and a search would create the store
        return []
    if path:
        wait_on_sqlite_locks()
    return end_killed(left_running(study, run_ids=run_ids if study is None else None), lambda _run: reason)


def missing_plot(run_id: str, part: str) -> tuple[str, str, dict] | None:
    """(run name, device name, series) of a run that has no `plots/<part>.png`, to draw it from its logged series;
    None when it has one or has no series."""
    c = client()
    with store_errors(f"checking the plot of run {run_id}"):
        if any(f.path == f"plots/{part}.png" for f in c.list_artifacts(run_id, "plots")):
            return None
        run = c.get_run(run_id)
        series = {}
        for key in SERIES.get(part, ()):
            if key in run.data.metrics:
                points = sorted((m.step, m.value) for m in c.get_metric_history(run_id, key))
                series[key] = ([s for s, _ in points], [v for _, v in points])
    if not series:
        return None
    return run.info.run_name, run.data.params.get("device_name", "?"), series
