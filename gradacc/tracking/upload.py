"""`gradacc upload`'s work: a run saved on disk (tracking/offline.py) written into its run in the store."""
from __future__ import annotations

import os

from mlflow.entities import Metric, RunTag

from gradacc.tracking.datasets import inputs_not_in, log_dataset_inputs
from gradacc.tracking.offline import SavedRun
from gradacc.tracking.redact import redact, restored
from gradacc.tracking.runs import client, params_to_log, store_errors


def upload_saved_run(saved: SavedRun, tracking_uri: str | None = None) -> str:
    """Writes a saved run into its run in the store, leaving out what the store already holds (so an upload that
    stopped halfway can be repeated), then ends the run with its saved status. Returns a one-line summary."""
    # a URI saved with its password as *** goes back to the same store with the current URI's (redact.restored)
    uri = tracking_uri or restored(saved.tracking_uri, os.environ.get("MLFLOW_TRACKING_URI"))
    with store_errors(f"uploading run {saved.run_id}", uri):
        c = client(uri)  # a URI MLflow cannot open fails here, also in one line
        run = c.get_run(saved.run_id)
        params = params_to_log(run.data.params, saved.params_given, saved.params_resolved)
        tags = [RunTag(k, v) for k, v in saved.tags.items() if run.data.tags.get(k) != v]
        metrics = []
        for key in sorted({point[0] for point in saved.metrics}):
            there = {(m.step, m.timestamp, repr(m.value)) for m in c.get_metric_history(saved.run_id, key)}
            metrics += [Metric(k, v, ts, step) for k, v, ts, step in saved.metrics
                        if k == key and (step, ts, repr(float(v))) not in there]
        c.log_batch(saved.run_id, params=params, tags=tags, metrics=metrics)  # MLflow splits it in batches
        inputs = inputs_not_in(run, saved.inputs)
        log_dataset_inputs(c, saved.run_id, inputs)
        files = [p for p in saved.artifacts.rglob("*") if p.is_file()]
        if files:
            c.log_artifacts(saved.run_id, str(saved.artifacts))
        if saved.status:
            c.set_terminated(saved.run_id, status=saved.status, end_time=saved.end_time)
    status = saved.status or "left as it was (the process stopped before it ended the run)"
    return (f"run {saved.run_id}: {len(params)} params, {len(tags)} tags, {len(metrics)} metric points, "
            f"{len(inputs)} dataset inputs, {len(files)} files uploaded to {redact(uri)}; status {status}")
