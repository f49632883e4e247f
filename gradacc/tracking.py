"""The only module that imports mlflow: experiments, run naming, tags, params, batched metrics, artifacts."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from .errors import TrackingError

SCHEMA_VERSION = "1"
DEFAULT_EXPERIMENT = "gradacc"
UI_ADDRESS = "http://127.0.0.1:5000"
METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
PARAMS_PER_BATCH = 100


def client() -> MlflowClient:
    return MlflowClient()


def launcher_run_id() -> str | None:
    """The run that `mlflow run` created for this process, if any."""
    return os.environ.get("MLFLOW_RUN_ID") or None


def experiment_id(name: str | None) -> str:
    """The experiment of the `mlflow run` run; else --experiment / MLFLOW_EXPERIMENT_NAME / 'gradacc'."""
    c = client()
    run_id = launcher_run_id()
    if run_id:
        return c.get_run(run_id).info.experiment_id
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    try:
        found = c.get_experiment_by_name(name)
        return found.experiment_id if found else c.create_experiment(name)
    except Exception as err:
        raise TrackingError(f"tracking store {mlflow.get_tracking_uri()} is not usable: "
                            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None


def runs_link(exp_id: str, run_id: str | None = None) -> str:
    """Where the MLflow 3 UI shows the runs table (or one run) of an experiment."""
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_ADDRESS
    return f"{base}/#/experiments/{exp_id}/runs" + (f"/{run_id}" if run_id else "")


class TrackedRun:
    """One MLflow run: every write to it goes through here, batched."""

    def __init__(self, run_id: str, exp_id: str):
        self.run_id, self.experiment_id = run_id, exp_id
        self.client = client()

    def log_params(self, given: dict[str, str], resolved: dict[str, str]) -> None:
        """Logs the options as given and the resolved config, never changing a param already there (`mlflow
        run` logs its parameters as given, e.g. k=04): a resolved value that differs goes under `<key>_resolved`."""
        existing = self.client.get_run(self.run_id).data.params
        todo = {key: str(value) for key, value in given.items() if key not in existing}
        for key, value in resolved.items():
            value = str(value)
            if key not in existing and key not in todo:
                todo[key] = value
            elif existing.get(key, todo.get(key)) != value:
                todo[f"{key}_resolved"] = value
        todo = [Param(key, value) for key, value in todo.items()]
        for start in range(0, len(todo), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=todo[start: start + PARAMS_PER_BATCH])

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, series: dict[str, tuple[list[int], list[float]]],
                    summaries: dict[str, float]) -> None:
        """Every per-step series with its steps, then the summaries at step 0, in batches of 1000."""
        now = int(time.time() * 1000)
        metrics = [Metric(name, float(v), now, int(s)) for name, (steps, values) in series.items()
                   for s, v in zip(steps, values)]
        metrics += [Metric(name, float(v), now, 0) for name, v in summaries.items()]
        for start in range(0, len(metrics), METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start: start + METRICS_PER_BATCH])

    def log_files(self, files: dict[str, str | bytes], writers=()) -> None:
        """Artifacts from memory: {relative path: content}; `writers` are callables that write into the folder."""
        with tempfile.TemporaryDirectory(prefix="gradacc-artifacts-") as tmp:
            root = Path(tmp)
            for rel, content in files.items():
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content if isinstance(content, bytes) else content.encode())
            for write in writers:
                write(root)
            self.client.log_artifacts(self.run_id, str(root))

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def find_finished_run(exp_id: str, config_key: str) -> str | None:
    """The newest FINISHED run of the experiment whose tag gradacc.config equals config_key, if any."""
    found = client().search_runs([exp_id], filter_string=f"tags.`gradacc.config` = '{config_key}' and "
                                 "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
                                 max_results=1)
    return found[0].info.run_id if found else None


def add_tags(run_id: str, tags: dict[str, str]) -> None:
    client().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def time_metric_writes(uri: str, values: int) -> tuple[float, float]:
    """Seconds to write `values` metric values into the store at `uri`: batched as runs do, and with one
    `log_metric` call per value (the benchmark's baseline, the way a loop that logs as it goes writes)."""
    c = MlflowClient(tracking_uri=uri)
    exp_id = c.create_experiment("gradacc-logging-bench")
    now = int(time.time() * 1000)
    batched_run, each_run = (c.create_run(exp_id).info.run_id for _ in range(2))
    metrics = [Metric("update_time_s", 0.001 * i, now, i) for i in range(values)]
    start = time.perf_counter()
    for first in range(0, values, METRICS_PER_BATCH):
        c.log_batch(batched_run, metrics=metrics[first: first + METRICS_PER_BATCH])
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    for m in metrics:
        c.log_metric(each_run, m.key, m.value, timestamp=m.timestamp, step=m.step)
    return batched_s, time.perf_counter() - start


def series_csv(steps: list[int], values: list[float]) -> str:
    rows = ["step,value"] + [f"{s},{v!r}" for s, v in zip(steps, values)]
    return "\n".join(rows) + "\n"


@contextmanager
def tracked_run(run_name: str, tags: dict[str, str], exp_name: str | None = None,
                parent_run_id: str | None = None):
    """Opens a run (the `mlflow run` one when this process has it and no parent is given, else a new one)
    and always closes it: FINISHED, KILLED on an interrupt, FAILED on any error, which is re-raised."""
    exp_id = experiment_id(exp_name)
    c = client()
    own = launcher_run_id() if parent_run_id is None else None
    all_tags = dict(tags, **{"mlflow.runName": run_name, "gradacc.schema": SCHEMA_VERSION})
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    if own:
        run_id = own
    else:
        run_id = c.create_run(exp_id, run_name=run_name).info.run_id
    run = TrackedRun(run_id, exp_id)
    run.set_tags(all_tags)
    try:
        yield run
    except KeyboardInterrupt:
        run.end("KILLED")
        raise
    except BaseException:
        run.end("FAILED")
        raise
    run.end("FINISHED")


def print_link(exp_id: str, run_id: str | None = None) -> None:
    print(f"runs: {runs_link(exp_id)}" + (f"  (this run: {runs_link(exp_id, run_id)})" if run_id else ""),
          file=sys.stderr)
