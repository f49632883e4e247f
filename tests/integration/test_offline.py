"""A store that stops answering while a run fails or is interrupted: the run is saved locally with its true
status (FAILED, KILLED), `gradacc upload` ends it so, and uploading twice adds nothing twice."""
from __future__ import annotations

import json
import shutil

import pytest
from mlflow import MlflowClient

import gradacc.study.run
from gradacc.core.errors import Diverged, Terminated
from gradacc.tracking.store import describe, sqlite_path
from tests.support.e2e import error_lines, history, module_store, run_cli


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with module_store(tmp_path_factory, "offline") as made, pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADACC_UNSENT_DIR", str(made["tmp"] / "unsent"))
        yield made


def unreachable(*args, **kwargs):
    raise ConnectionError("[Errno 111] Connection refused")


def measure_then_lose_store(error):
    """A part that measures two points; then every write to the store fails, and the part ends with `error`."""
    def part(protocol, ctx, result, progress):
        result.series["micro_iter_ms"] = ([0, 1], [5.0, float("nan")])
        for method in ("log_batch", "log_artifacts", "set_terminated", "get_run"):
            store_down.setattr(MlflowClient, method, unreachable)
        if error is not None:
            raise error
    return part


store_down = pytest.MonkeyPatch()


@pytest.mark.parametrize("error, code, status, last_line", [
    (None, 1, "FINISHED", "gradacc: error: tracking store"),
    (Diverged("training loss is nan in epoch 1"), 1, "FAILED", "gradacc: error: training loss is nan"),
    (KeyboardInterrupt(), 130, "KILLED", "gradacc: interrupted;"),
    (Terminated(), 143, "KILLED", "gradacc: terminated;"),
])
def test_saved_with_its_status_then_uploaded(store, monkeypatch, error, code, status, last_line):
    monkeypatch.setitem(gradacc.study.run.RUNNERS, "micro", measure_then_lose_store(error))
    unsent = store["tmp"] / "unsent"
    shutil.rmtree(unsent, ignore_errors=True)
    try:
        result = run_cli(["micro", "--k", "2", "--smoke", "--experiment", "offline"])
    finally:
        store_down.undo()
    assert result.code == code and "Traceback" not in result.err
    ours = [line for line in error_lines(result.err) if line.startswith("gradacc:")]
    assert ours[-1].startswith(last_line), result.err
    (folder,) = list(unsent.iterdir())
    assert any(f"gradacc upload {folder}" in line for line in ours)
    assert json.loads((folder / "run.json").read_text())["status"] == status
    client = store["client"]
    assert client.get_run(folder.name).info.status == "RUNNING"  # until it is uploaded

    backup = store["tmp"] / "backup"
    shutil.rmtree(backup, ignore_errors=True)
    shutil.copytree(folder, backup)
    assert run_cli(["upload", str(unsent)]).code == 0
    shutil.copytree(backup, folder)  # uploading the same run again adds nothing twice
    assert run_cli(["upload", str(folder)]).code == 0
    run = client.get_run(folder.name)
    assert run.info.status == status
    steps, values = history(client, folder.name, "micro_iter_ms")
    assert steps == [0, 1] and values[0] == 5.0 and values[1] != values[1]  # the NaN kept, once
    assert len(client.get_metric_history(folder.name, "wall_time_s")) == 1
    assert {a.path for a in client.list_artifacts(folder.name)} >= {"series", "plots", "environment.txt"}
    if status == "FAILED":
        assert run.data.tags["gradacc.failure"] == "training loss is nan in epoch 1"


def test_upload_rejects_a_folder_without_saved_runs(store, tmp_path):
    result = run_cli(["upload", str(tmp_path)])
    assert result.code == 1 and error_lines(result.err) == [f"gradacc: error: no saved run in {tmp_path} "
                                                            "(a saved run is a folder holding run.json)"]


def test_upload_into_a_store_that_cannot_be_opened_is_one_line(store, monkeypatch, tmp_path):
    monkeypatch.setitem(gradacc.study.run.RUNNERS, "micro", measure_then_lose_store(None))
    unsent = store["tmp"] / "unsent"
    shutil.rmtree(unsent, ignore_errors=True)
    try:
        assert run_cli(["micro", "--k", "2", "--smoke", "--experiment", "offline"]).code == 1
    finally:
        store_down.undo()
    (folder,) = list(unsent.iterdir())
    not_a_database = tmp_path / "bad.db"
    not_a_database.write_text("not sqlite")
    for uri, reason in (("foo://x", "unsupported URI 'foo://x'"),
                        (f"sqlite:///{not_a_database}", "file is not a database")):
        result = run_cli(["upload", str(folder), "--tracking-uri", uri])
        (line,) = error_lines(result.err)
        assert result.code == 1 and "Traceback" not in result.err, result.err
        assert line.startswith(f"gradacc: error: uploading run {folder.name} failed (tracking store {uri}): ")
        assert reason in line, line
    assert (folder / "run.json").exists()  # still there to upload into the right store
    assert run_cli(["upload", str(folder)]).code == 0


def test_describe_and_sqlite_path():
    refused = Exception("API request to http://127.0.0.1:9/api failed with exception HTTPConnectionPool(host="
                        "'127.0.0.1', port=9): Max retries exceeded with url: /api (Caused by NewConnectionError("
                        "\"...: Failed to establish a new connection: [Errno 111] Connection refused\"))")
    assert describe(refused).endswith("retries ([Errno 111] Connection refused)")
    assert sqlite_path("sqlite:///mlflow.db") == "mlflow.db"
    assert sqlite_path("sqlite:////abs/m.db?timeout=5") == "/abs/m.db"
    assert sqlite_path("http://127.0.0.1:5000") is None and sqlite_path("sqlite:///:memory:") is None


def test_dataset_inputs_are_saved_and_uploaded(store, monkeypatch):
    """The store stops answering at the run's first dataset write: both inputs go into run.json, and upload logs
    them once, with their contexts and digests."""
    def part(protocol, ctx, result, progress):
        result.summaries["test_accuracy"] = 10.0
    monkeypatch.setitem(gradacc.study.run.RUNNERS, "converge", part)
    monkeypatch.setattr(MlflowClient, "log_inputs", unreachable)  # every later write of the run goes to disk too
    unsent = store["tmp"] / "unsent"
    shutil.rmtree(unsent, ignore_errors=True)
    result = run_cli(["converge", "--k", "2", "--smoke", "--experiment", "offline"])
    monkeypatch.undo()
    assert result.code == 1 and "Traceback" not in result.err
    (folder,) = list(unsent.iterdir())
    saved = json.loads((folder / "run.json").read_text())
    assert [i["tags"]["mlflow.data.context"] for i in saved["inputs"]] == ["training", "evaluation"]
    assert [i["dataset"]["name"] for i in saved["inputs"]] == ["cifar10-train-1024", "cifar10-test-256"]

    backup = store["tmp"] / "backup-inputs"
    shutil.copytree(folder, backup)
    upload = run_cli(["upload", str(folder)])
    assert upload.code == 0 and "2 dataset inputs" in upload.out + upload.err
    shutil.copytree(backup, folder)  # again: nothing twice
    again = run_cli(["upload", str(folder)])
    assert again.code == 0 and "0 dataset inputs" in again.out + again.err
    inputs = store["client"].get_run(folder.name).inputs.dataset_inputs
    assert sorted((i.dataset.name, i.dataset.digest) for i in inputs) == sorted(
        (i["dataset"]["name"], i["dataset"]["digest"]) for i in saved["inputs"])
    assert {t.value for i in inputs for t in i.tags if t.key == "mlflow.data.context"} == {"training", "evaluation"}
