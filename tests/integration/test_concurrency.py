"""Four processes writing to one new sqlite store at once: no run fails, no metric point is lost."""
from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow import MlflowClient

from tests.support.e2e import all_runs, history, subprocess_env

pytestmark = pytest.mark.slow
WRITERS = 4
POINTS = 2_500  # three log_batch calls of up to 1,000 points each, interleaved with the other writers'

# What a gradacc run does with the store (tracking.tracked_run, params, batched metrics, files), without the
# minutes of training that would only keep the four processes from writing at the same moment.
WRITER = f"""
import sys
from gradacc.tracking.experiments import experiment_id
from gradacc.tracking.runs import tracked_run
n = int(sys.argv[1])
with tracked_run(f"writer-{{n}}", {{"gradacc.part": "micro"}}, experiment_id("together")) as run:
    run.log_params({{"k": str(n)}}, {{"effective_batch": str(64 * n)}})
    series = {{"micro_iter_ms": (list(range({POINTS})), [n + i / 1e4 for i in range({POINTS})])}}
    run.log_metrics(series, {{"micro_iter_ms_mean": float(n)}})
    run.log_files({{"series/micro_iter_ms.csv": "step,value\\n"}})
"""


def test_four_writers_on_a_fresh_sqlite_store(tmp_path):
    """The store does not exist when they start: they take turns creating it and the experiment (a file lock
    beside the database), then write their runs concurrently (MLflow's sqlite busy timeout)."""
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = subprocess_env(MLFLOW_TRACKING_URI=uri)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(n)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(1, WRITERS + 1)]
    try:
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    client = MlflowClient(uri)
    assert sorted(e.name for e in client.search_experiments()) == ["Default", "together"]
    runs = all_runs(client)
    assert sorted(int(r.data.params["k"]) for r in runs) == list(range(1, WRITERS + 1))
    for run in runs:
        n = int(run.data.params["k"])
        assert run.info.status == "FINISHED" and run.data.params["effective_batch"] == str(64 * n)
        steps, values = history(client, run.info.run_id, "micro_iter_ms")
        assert steps == list(range(POINTS)) and values == [n + i / 1e4 for i in range(POINTS)]
        assert run.data.metrics["micro_iter_ms_mean"] == n
        assert [a.path for a in client.list_artifacts(run.info.run_id, "series")] == ["series/micro_iter_ms.csv"]
