"""Four gradacc processes writing to one new sqlite store at once: no run fails, no metric point is lost."""
from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow import MlflowClient

from e2e_support import all_runs, history, subprocess_env, write_data_root

pytestmark = pytest.mark.slow
KS = (1, 2, 4, 8)


def test_four_processes_on_a_fresh_sqlite_store(tmp_path):
    """The store does not exist when they start: they take turns creating it and the experiment (a file lock
    beside the database), then write their runs concurrently (MLflow's sqlite busy timeout)."""
    data = write_data_root(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    uri = f"sqlite:///{work / 'fresh.db'}"
    env = subprocess_env(MLFLOW_TRACKING_URI=uri, GRADACC_DATA_DIR=str(data))
    procs = [subprocess.Popen([sys.executable, "-m", "gradacc", "micro", "--smoke", "--k", str(k), "--threads", "1",
                               "--experiment", "together"], cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in KS]
    try:
        outputs = [proc.communicate(timeout=400) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    client = MlflowClient(uri)
    runs = all_runs(client)
    assert len(client.search_experiments()) == 2  # Default and `together`, each created once
    assert sorted(int(r.data.params["k"]) for r in runs) == list(KS)
    for run in runs:
        k = int(run.data.params["k"])
        assert run.info.status == "FINISHED"
        assert history(client, run.info.run_id, "micro_iter_ms")[0] == list(range(8))
        assert history(client, run.info.run_id, "opt_step_ms")[0] == list(range(8 // k))
        assert {"micro_iter_ms_mean", "wall_time_s", "peak_memory_mb"} <= set(run.data.metrics)
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"series", "plots", "environment.txt"}
