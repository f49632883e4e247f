"""Against a real `mlflow server` (sqlite backend, local artifacts, 127.0.0.1): the same runs over HTTP as in the
default store; and a server that dies before the run logs: the run is saved locally, then uploaded."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

import gradacc.study.run
from tests.support.cifar import write_data_root
from tests.support.e2e import all_runs, error_lines, history, isolated_store, run_cli
from tests.support.server import MlflowServer

pytestmark = pytest.mark.slow
# One torch thread: on a busy 2-core machine, oversubscribed threads make a smoke run ten times slower.
COMMANDS = [["micro", "--k", "2", "--smoke", "--threads", "1"], ["converge", "--k", "2", "--smoke", "--threads", "1"],
            ["compare", "--include-smoke", "--output", "cmp"]]
# Differ between any two runs, whatever the store.
VARYING_TAGS = {"mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit",
                "mlflow.note.content"}  # the description quotes the run's timings


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("server")).start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture(autouse=True)
def keep_thread_count():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # --threads 1 in this process must not slow the tests that follow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data_root(tmp_path_factory.mktemp("server_data"))


def run_all(folder: Path, data: Path, uri: str | None) -> dict:
    """COMMANDS in a store of their own (the sqlite default when uri is None); {part: run} of what they made."""
    folder.mkdir()
    with isolated_store(folder, data) as _, pytest.MonkeyPatch.context() as mp:
        if uri:
            mp.setenv("MLFLOW_TRACKING_URI", uri)
        for argv in COMMANDS:
            result = run_cli(argv + ["--experiment", "http-check"])
            assert result.code == 0, result.err
        client = MlflowClient()
        runs = {r.data.tags["gradacc.part"]: r for r in all_runs(client)}
        return {part: (run, describe_run(client, run, folder / "dl")) for part, run in runs.items()}


def describe_run(client, run, dst: Path) -> dict:
    """What must be the same over HTTP: params, tags, metric keys, series steps (and loss values), artifacts."""
    def files(path=None):
        out = []
        for item in client.list_artifacts(run.info.run_id, path):
            out += files(item.path) if item.is_dir else [(item.path, item.file_size > 0)]
        return out
    series = {key: history(client, run.info.run_id, key) for key in run.data.metrics}
    return {"status": run.info.status, "name": run.info.run_name, "params": run.data.params,
            "tags": {k: v for k, v in run.data.tags.items() if k not in VARYING_TAGS},
            "steps": {key: steps for key, (steps, _) in series.items()},
            "losses": {key: values for key, (_, values) in series.items() if "loss" in key or "accuracy" in key},
            "files": sorted(files())}


def test_same_runs_over_http_as_in_the_default_store(server, data, tmp_path):
    local = run_all(tmp_path / "local", data, None)
    remote = run_all(tmp_path / "remote", data, server.uri)
    assert set(local) == set(remote) == {"micro", "converge", "compare"}
    for part in local:
        (_, want), (run, got) = local[part], remote[part]
        assert got == want, part
        assert got["status"] == "FINISHED"
        # the artifacts went to the server's own artifact store, not to a local ./mlruns
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert "series/train_loss_update.csv" in dict(remote["converge"][1]["files"])
    assert not (tmp_path / "remote" / "mlruns").exists()


def test_server_killed_before_the_run_logs_then_upload(server, data, tmp_path, monkeypatch):
    """The server dies (SIGKILL) between measurement and logging: the run's writes fail within the bounded
    retries, everything goes to a local folder, exit 1; after a restart `gradacc upload` completes the run."""
    real, killed_at = gradacc.study.run.RUNNERS["micro"], []

    def measure_then_kill_server(protocol, ctx, result, advance):
        real(protocol, ctx, result, advance)
        server.kill()
        killed_at.append(time.monotonic())

    monkeypatch.setitem(gradacc.study.run.RUNNERS, "micro", measure_then_kill_server)
    unsent = tmp_path / "unsent"
    (tmp_path / "work").mkdir()
    with isolated_store(tmp_path / "work", data), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", server.uri)
        mp.setenv("GRADACC_UNSENT_DIR", str(unsent))
        result = run_cli(["micro", "--k", "2", "--smoke", "--threads", "1", "--experiment", "server-dies"])
        elapsed = time.monotonic() - killed_at[0]
        assert result.code == 1 and "Traceback" not in result.err
        lines = [line for line in error_lines(result.err) if line.startswith("gradacc:")]
        assert len(lines) == 1 and lines[0].startswith(f"gradacc: error: tracking store {server.uri} failed")
        assert elapsed < 60, f"a dead server took {elapsed:.0f} s to give up on"
        (folder,) = [p for p in unsent.iterdir()]
        assert f"gradacc upload {folder}" in lines[0]
        saved = json.loads((folder / "run.json").read_text())
        assert saved["status"] == "FINISHED"
        keys = {point[0] for point in saved["metrics"]}
        assert {"micro_iter_ms", "opt_step_ms", "micro_iter_ms_mean", "wall_time_s"} <= keys
        assert (folder / "artifacts" / "series" / "micro_iter_ms.csv").is_file()

        server.start()  # same port, same store
        uploaded = run_cli(["upload", str(folder)])
        assert uploaded.code == 0, uploaded.err
        client = MlflowClient()
        run = client.get_run(folder.name)
        assert run.info.status == "FINISHED"
        assert run.data.params["k"] == "2"  # logged before the server died
        for key in keys:  # every point that was saved is in the store, once
            points = sorted((p[3], p[1]) for p in saved["metrics"] if p[0] == key)
            assert list(zip(*history(client, run.info.run_id, key))) == points, key
        stored = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"series", "plots", "environment.txt"} <= stored
        assert not folder.exists() and folder.with_name(folder.name + ".uploaded").is_dir()
        again = run_cli(["upload", str(unsent)])  # nothing left to upload
        assert again.code == 1 and "no saved run" in again.err
