"""The run writer: experiments, runs opened and always closed, tags, params, batched metrics, artifacts; a run
whose store stops answering goes on into a local copy (tracking/offline.py)."""
from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from gradacc.core.errors import GradaccError, TrackingError
from gradacc.names import CONFIG, FAILURE, HOST, PART, PID, SCHEMA, SCHEMA_VERSION
from gradacc.tracking.context import context_tags
from gradacc.tracking.datasets import log_dataset_inputs
from gradacc.tracking.offline import ROOT_ENV, SavedRun
from gradacc.tracking.redact import quiet_mlflow_links, redact
from gradacc.tracking.store import bound_http_retries, describe
from gradacc.tracking.system_metrics import monitoring, switched_on

UI_ENV = "GRADACC_UI_URL"  # where the UI of a local store runs (`mlflow ui` takes any free port)
# The runs this process opened and those an interrupt ended KILLED: what the CLI's last line says after a signal
OPENED: list[str] = []
KILLED: list[str] = []


def client(tracking_uri: str | None = None) -> MlflowClient:
    bound_http_retries()
    quiet_mlflow_links(tracking_uri or mlflow.get_tracking_uri())
    return MlflowClient(tracking_uri)


def launcher_run_id() -> str | None:
    """The run that `mlflow run` created for this process, if any."""
    return os.environ.get("MLFLOW_RUN_ID") or None


def ui_address() -> str | None:
    """The UI's address: a tracking server's own (a password in the URI: ***); for a local store, $GRADACC_UI_URL
    (None without it: no address is known, and a guessed port may lead to another server)."""
    uri = redact(mlflow.get_tracking_uri())
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return os.environ.get(UI_ENV, "").strip().rstrip("/") or None


def runs_link(exp_id: str, run_id: str | None = None, base: str | None = None) -> str:
    """Where the MLflow 3 UI shows the runs table (or one run) of an experiment: its path after `base`."""
    return f"{base or ''}/#/experiments/{exp_id}/runs" + (f"/{run_id}" if run_id else "")


def params_to_log(existing: dict[str, str], given: dict[str, str], resolved: dict[str, str]) -> list[Param]:
    """The options as given and the resolved config, never changing a param already there (`mlflow run` logs its
    parameters as given, e.g. k=04): a resolved value that differs goes under `<key>_resolved`."""
    todo = {key: str(value) for key, value in given.items() if key not in existing}
    for key, value in resolved.items():
        value = str(value)
        if key not in existing and key not in todo:
            todo[key] = value
        elif existing.get(key, todo.get(key)) != value:
            todo[f"{key}_resolved"] = value
    return [Param(key, value) for key, value in todo.items() if existing.get(key) != value]


class TrackedRun:
    """One MLflow run: every write to it goes through here, batched. If the store stops answering (after the
    bounded HTTP retries), the write and every later one of this run go to a SavedRun folder instead."""

    def __init__(self, run_id: str, exp_id: str):
        self.run_id, self.experiment_id = run_id, exp_id
        self.client = client()
        self.saved: SavedRun | None = None
        self.status: str | None = None  # how the run ended; None while it is open
        self.written: set[tuple[str, int]] = set()  # (key, step) of the points written while it trained

    def _write(self, call, save) -> None:
        if self.saved is None:
            try:
                call()
                return
            except Exception as err:  # whatever the cause, what was measured must not be lost
                uri = mlflow.get_tracking_uri()
                try:
                    self.saved = SavedRun.create(self.run_id, self.experiment_id, redact(uri), describe(err, uri))
                except OSError as local:
                    raise TrackingError(f"tracking store {redact(uri)} failed ({describe(err, uri)}) "
                                        f"and run {self.run_id} could not be saved locally either: "
                                        f"{local.strerror or local} ({local.filename}); set {ROOT_ENV}") from None
        save(self.saved)

    def log_params(self, given: dict[str, str], resolved: dict[str, str]) -> None:
        def call():
            existing = self.client.get_run(self.run_id).data.params
            self.client.log_batch(self.run_id, params=params_to_log(existing, given, resolved))
        self._write(call, lambda saved: saved.add_params(given, resolved))

    def set_tags(self, tags: dict[str, str]) -> None:
        self._write(lambda: self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]),
                    lambda saved: saved.add_tags(tags))

    def log_points(self, metrics: list[Metric]) -> None:
        """Points measured as the run goes (tracking/live.py), each with its own time; remembered as written."""
        self._write(lambda: self.client.log_batch(self.run_id, metrics=metrics),  # MLflow splits it in batches
                    lambda saved: saved.add_metrics([(m.key, m.value, m.timestamp, m.step) for m in metrics]))
        self.written.update((m.key, m.step) for m in metrics)

    def log_metrics(self, series: dict[str, tuple[list[int], list[float]]],
                    summaries: dict[str, float]) -> None:
        """Every per-step series with its steps, then the summaries at step 0, in batches of 1000; a point written
        while the run trained (log_points) is not written again (MLflow would keep both)."""
        now = int(time.time() * 1000)
        metrics = [Metric(name, float(v), now, int(s)) for name, (steps, values) in series.items()
                   for s, v in zip(steps, values) if (name, int(s)) not in self.written]
        metrics += [Metric(name, float(v), now, 0) for name, v in summaries.items()]
        self.log_points(metrics)

    def log_model(self, model) -> None:
        """The trained model as an MLflow model (`model/`; `mlflow.pytorch.load_model` reads it back): torchvision's
        ResNet class, so it loads where torch and torchvision are installed and gradacc is not. MLflow's log_model
        writes to the active run: this one, resumed for the call (its end sets FINISHED, which the run's own end
        then sets again). The requirements are given, not inferred: inference loads the model again in a
        subprocess."""
        import copy
        from importlib.metadata import version

        import mlflow.pytorch  # MLflow's torch flavour: only for a run that keeps its model
        import numpy as np
        # pickled, as Lightning's checkpoints are: MLflow 3.17's default ('pt2') traces a graph fixed to the
        # example's batch size; on the CPU, so that a machine with no GPU loads it
        model = copy.deepcopy(model).cpu().eval()
        example = np.zeros((2, 3, 32, 32), dtype=np.float32)
        requirements = [f"{name}=={version(name)}" for name in ("torch", "torchvision")]
        with store_errors(f"logging the model of run {self.run_id}"), mlflow.start_run(run_id=self.run_id):
            mlflow.pytorch.log_model(model, name="model", input_example=example, serialization_format="pickle",
                                     pip_requirements=requirements)

    def log_inputs(self, records: list[dict]) -> None:
        """Dataset inputs, as tracking/datasets.py records them (a saved run keeps the same records)."""
        self._write(lambda: log_dataset_inputs(self.client, self.run_id, records),
                    lambda saved: saved.add_inputs(records))

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
            self._write(lambda: self.client.log_artifacts(self.run_id, str(root)),
                        lambda saved: saved.add_artifacts(root))

    def end(self, status: str) -> None:
        """Ends the run. If it had to be saved locally: raises TrackingError for a run that would have ended
        FINISHED (the exit must not be 0), else prints where it is and lets the run's own error go on."""
        if self.status is not None:  # one of several runs measured together may have ended before the others
            return
        self.status = status
        self._write(lambda: self.client.set_terminated(self.run_id, status=status),
                    lambda saved: saved.end(status))
        if self.saved is None:
            return
        message = (f"tracking store {self.saved.tracking_uri} failed ({self.saved.reason}); run {self.run_id} "
                   f"({status}) is saved in {self.saved.folder}: upload it with `gradacc upload "
                   f"{self.saved.folder}`")
        if status == "FINISHED":
            raise TrackingError(message)
        print(f"gradacc: {message}", file=sys.stderr)


@contextmanager
def store_errors(what: str, uri: str | None = None):
    """A store call outside a TrackedRun (nothing measured is at stake): its failure is one line, TrackingError."""
    try:
        yield
    except GradaccError:
        raise
    except Exception as err:
        uri = uri or mlflow.get_tracking_uri()
        raise TrackingError(f"{what} failed (tracking store {redact(uri)}): {describe(err, uri)}") from None


def find_finished_run(exp_id: str, config_key: str) -> str | None:
    """The newest FINISHED run of the experiment whose tag gradacc.config equals config_key, if any."""
    with store_errors("looking for finished runs"):
        found = client().search_runs([exp_id], filter_string=f"tags.`{CONFIG}` = '{config_key}' and "
                                     "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
                                     max_results=1)
    return found[0].info.run_id if found else None


def add_tags(run_id: str, tags: dict[str, str]) -> None:
    with store_errors(f"tagging run {run_id}"):
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
    c.log_batch(batched_run, metrics=metrics)  # MLflow splits it into batches of its limit, 1000
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    for m in metrics:
        c.log_metric(each_run, m.key, m.value, timestamp=m.timestamp, step=m.step)
    return batched_s, time.perf_counter() - start


def copies_of(paths, base: Path):
    """A `log_files` writer that copies files from under `base` into the artifact folder, keeping their layout."""
    def write(root: Path) -> None:
        for path in paths:
            target = root / Path(path).relative_to(base)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return write


def series_csv(steps: list[int], values: list[float]) -> str:
    rows = ["step,value"] + [f"{s},{v!r}" for s, v in zip(steps, values)]
    return "\n".join(rows) + "\n"


@contextmanager
def tracked_run(run_name: str, tags: dict[str, str], exp_id: str, parent_run_id: str | None = None,
                measures: bool = False, start_ms: int | None = None):
    """Opens a run in experiment `exp_id`, resolved once by the caller (tracking/experiments.py): the `mlflow run`
    one when this process has it and no parent is given, else a new one, started at `start_ms` where its work
    began before it opens. Always closes it: FINISHED, KILLED on an interrupt, FAILED on any error, which is
    re-raised. A run that `measures` carries MLflow's system metrics
    while they are switched on (tracking/system_metrics.py), the monitor stopped before the run ends."""
    c = client()
    own = launcher_run_id() if parent_run_id is None else None
    all_tags = dict(tags, **{"mlflow.runName": run_name, SCHEMA: SCHEMA_VERSION,
                             HOST: platform.node(), PID: str(os.getpid())})  # an orphan is told by these
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    if own:
        run_id = own
    else:
        all_tags = {**context_tags(c), **all_tags}
        with store_errors(f"creating run {run_name}"):
            run_id = c.create_run(exp_id, start_time=start_ms, run_name=run_name).info.run_id
    run = TrackedRun(run_id, exp_id)
    OPENED.append(run_id)
    run.set_tags(all_tags)
    try:
        with monitoring(run_id, measures and switched_on(), store_answers=lambda: run.saved is None):
            yield run
    except KeyboardInterrupt:
        run.end("KILLED")
        KILLED.append(run_id)
        raise
    except BaseException as err:
        if isinstance(err, GradaccError) and run.status is None:  # the reason, where the UI and load_runs show it
            run.set_tags({FAILURE: one_line(err)})
        run.end("FAILED")
        raise
    run.end("FINISHED")


def one_line(err: BaseException) -> str:
    text = redact(str(err)).strip()
    return text.splitlines()[0][:4000] if text else type(err).__name__


def note_launcher_failure(reason: str, name: str) -> None:
    """Under `mlflow run`, a command that stopped before its own run began (a rejected option, missing data)
    leaves MLflow's run FAILED with a random name: give it a name and the reason. Best effort: the error itself
    is already on the terminal."""
    run_id = launcher_run_id()
    if not run_id:
        return
    try:
        c = client()
        tags = c.get_run(run_id).data.tags
        new = {} if FAILURE in tags else {FAILURE: reason[:4000]}
        if PART not in tags:  # gradacc never attached: the name is MLflow's random one
            new["mlflow.runName"] = name
        if new:
            c.log_batch(run_id, tags=[RunTag(k, v) for k, v in new.items()])
    except Exception:  # noqa: BLE001 - a store that cannot take the note has nothing more to lose
        pass


def print_link(exp_id: str, run_id: str | None = None) -> None:
    """The links to the runs in the UI; for a local store with no $GRADACC_UI_URL, the `mlflow ui` command that
    shows it and the path to open there."""
    base = ui_address()
    if base is not None:
        print(f"runs: {runs_link(exp_id, base=base)}" + (f"  (this run: {runs_link(exp_id, run_id, base)})"
                                                         if run_id else ""), file=sys.stderr)
        return
    print(f"runs: {runs_link(exp_id, run_id)} in this store's UI: `mlflow ui --backend-store-uri "
          f"{redact(mlflow.get_tracking_uri())}` starts it (set {UI_ENV} to its address to get whole links)",
          file=sys.stderr)
