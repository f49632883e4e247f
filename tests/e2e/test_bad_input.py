"""Bad input ends with one `gradacc: error:` line and a non-zero exit, no traceback, and no run left RUNNING."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import gradacc.study.run
from gradacc.core.data import FOLDER, write_batch
from gradacc.core.errors import Diverged, Terminated
from gradacc.tracking.store import HTTP_DEFAULTS
from tests.support.cifar import SMOKE_TEST, SMOKE_TRAIN, write_raw_batch
from tests.support.e2e import (
    all_runs,
    assert_one_error_line,
    error_lines,
    history,
    launched_run_id,
    mlflow_run,
    module_store,
    run_cli,
    run_process,
    subprocess_env,
)

USAGE, FAILURE = 2, 1  # click's usage errors; gradacc's own errors


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A module-wide sqlite store; GRADACC_DATA_DIR points at a valid --smoke data root."""
    with module_store(tmp_path_factory, "bad") as made:
        yield made


def running(store) -> list[str]:
    return [r.info.run_id for r in all_runs(store["client"]) if r.info.status == "RUNNING"]


def check_rejected(store, argv, code: int, contains: str):
    result = run_cli(argv)
    assert result.code == code, result.err
    assert_one_error_line(result, contains)
    assert running(store) == []
    return result


@pytest.mark.parametrize("argv, code, contains", [
    (["micro", "--k", "0"], USAGE, "'--k': 0 is not in the range x>=1"),
    (["micro", "--k", "-1"], USAGE, "'--k'"),
    (["update", "--k", "-2"], USAGE, "'--k'"),
    (["converge", "--k", "abc"], USAGE, "'abc' is not a valid integer"),
    (["micro", "--k", "1.5"], USAGE, "'1.5' is not a valid integer"),
    (["converge", "--k", "161"], FAILURE, "k=161 needs 10304 images per update"),  # protocol: 10,240 images
    (["update", "--k", "17", "--smoke"], FAILURE, "an epoch would have no update (largest k: 16)"),
    (["converge", "--epochs", "0"], USAGE, "'--epochs'"),
    (["micro", "--device", "tpu"], USAGE, "'tpu' is not one of"),
    (["micro", "--threads", "0"], USAGE, "'--threads'"),
    (["micro", "--threads", "many"], USAGE, "'--threads'"),
    (["micro", "--loader", "dali"], USAGE, "'--loader'"),
    (["micro", "--smoke", "maybe"], USAGE, "'--smoke'"),
    (["sweep", "--parts", "foo"], USAGE, "unknown part(s) foo"),
    (["sweep", "--parts", ","], USAGE, "--parts"),
    (["sweep", "--ks", "1,0"], USAGE, "'--ks'"),
    (["sweep", "--ks", "1,abc"], USAGE, "'abc' is not a valid integer"),
    (["sweep", "--ks", "1,2,1"], USAGE, "'--ks': k=1 listed more than once"),
    (["sweep", "--parts", "micro,micro"], USAGE, "Invalid value for --parts: micro listed more than once"),
    (["sweep", "--smoke", "--ks", "1,17"], FAILURE, "k=17"),
    (["sweep", "--study", "bad id/x", "--ks", "16", "--smoke"], USAGE,  # before anything is measured
     "study id 'bad id/x' is not valid: use letters, digits and . _ - : only (or new)"),
    (["compare", "--study", "a b"], USAGE, "study id 'a b' is not valid"),
    (["sweep", "--study", "all", "--ks", "16", "--smoke"], USAGE, "'all' is a keyword, not a study id"),
    (["compare", "--study", "new"], USAGE, "'new' is a keyword, not a study id (here: an id, or all)"),
    (["commmodel", "--overlap", "nan"], USAGE, "'--overlap': 'nan' is not a finite number"),
    (["commmodel", "--bucket-mb", "inf"], USAGE, "'--bucket-mb': 'inf' is not a finite number"),
    (["nonsense"], USAGE, "No such command 'nonsense'"),
    # critical (gradacc/cli/critical.py): its list of K, the target, the epoch cap, the seeds of its repeats
    (["critical", "--ks", "0,2"], USAGE, "'--ks': 0 is not in the range x>=1"),
    (["critical", "--ks", "1,2.5"], USAGE, "'2.5' is not a valid integer"),
    (["critical", "--ks", "1,2,1"], USAGE, "'--ks': k=1 listed more than once"),
    (["critical", "--ks", ","], USAGE, "give at least one k"),
    (["critical", "--smoke", "--ks", "1,32"], FAILURE, "k=32 needs 2048 images"),
    (["critical", "--target", "0"], USAGE, "'--target': 0 is not a positive finite number"),
    (["critical", "--target", "-2"], USAGE, "'--target': -2 is not a positive finite number"),
    (["critical", "--target", "inf"], USAGE, "'--target': inf is not a positive finite number"),
    (["critical", "--target", "low"], USAGE, "'--target': 'low' is not a number"),
    (["critical", "--epochs", "0"], USAGE, "'--epochs'"),
    (["critical", "--repeats", "0"], USAGE, "'--repeats': 0 is not in the range x>=1"),
    (["critical", "--smoke", "--repeats", "2", "--seed", str(2**64 - 1)], USAGE,
     "with --repeats 2 the last seed would be 18446744073709551616, above torch.manual_seed's largest"),
    (["critical", "--study", "all"], USAGE, "'all' is a keyword, not a study id"),
])
def test_rejected_options(store, argv, code, contains):
    check_rejected(store, argv, code, contains)


def test_cuda_without_gpu(store):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    check_rejected(store, ["micro", "--smoke", "--device", "cuda"], FAILURE, "torch sees no CUDA GPU")


def data_root(tmp_path, train_file=None, test_file=True):
    """A data root whose data_batch_1 is written by `train_file(path)` and test_batch is valid."""
    folder = tmp_path / FOLDER
    rng = np.random.default_rng(1)
    if test_file:
        write_batch(folder / "test_batch", rng.integers(0, 256, (SMOKE_TEST, 32, 32, 3), dtype=np.uint8),
                    np.arange(SMOKE_TEST) % 10)
    if train_file:
        train_file(folder / "data_batch_1")
    return tmp_path


def valid_train(path, n=SMOKE_TRAIN, labels=None):
    images = np.random.default_rng(2).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    write_batch(path, images, np.arange(n) % 10 if labels is None else labels)


def truncated(path):
    valid_train(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def wrong_shape(path):
    write_raw_batch(path, np.zeros((SMOKE_TRAIN, 3 * 32 * 30), dtype=np.uint8), [0] * SMOKE_TRAIN)


def bad_labels(path):
    valid_train(path, labels=np.full(SMOKE_TRAIN, 10))


def too_few(path):
    valid_train(path, n=40)


@pytest.mark.parametrize("train_file, contains", [
    (truncated, "is truncated or corrupt"),
    (wrong_shape, f"has images of shape ({SMOKE_TRAIN}, 2880)"),
    (bad_labels, "labels outside 0..9"),
    (too_few, "data batch missing: "),  # 40 images in data_batch_1: the rest is looked for in data_batch_2
])
def test_bad_data(store, tmp_path, train_file, contains):
    root = data_root(tmp_path, train_file)
    result = check_rejected(store, ["update", "--k", "2", "--smoke", "--data-dir", root], FAILURE, contains)
    assert str(root / FOLDER) in result.err  # says where


def test_missing_test_batch(store, tmp_path):
    root = data_root(tmp_path, valid_train, test_file=False)
    check_rejected(store, ["micro", "--smoke", "--data-dir", root], FAILURE,
                   f"data batch missing: {root / FOLDER / 'test_batch'}")


@pytest.mark.slow
def test_data_folder_missing_and_offline(store, tmp_path):
    """The download is tried and fails at once (a refused proxy); the message says where and what to do."""
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = "http://127.0.0.1:9"
    proc = run_process([sys.executable, "-m", "gradacc", "converge", "--smoke", "--data-dir", empty], timeout=120,
                       http_proxy=refused, https_proxy=refused, HTTP_PROXY=refused, HTTPS_PROXY=refused,
                       no_proxy="", NO_PROXY="")
    assert proc.returncode == FAILURE, proc.stderr
    line = assert_one_error_line(proc, "CIFAR-10 not found at")
    assert str(empty.resolve() / FOLDER) in line and "download failed" in line and "--data-dir" in line
    assert running(store) == []


def fail_inside(error):
    """A part that measures something, then fails: what it measured must still be logged."""
    def part(protocol, ctx, result, progress):
        result.series["micro_iter_ms"] = ([0, 1], [5.0, 6.0])
        raise error
    return part


@pytest.mark.parametrize("error, code, status, message", [
    (Diverged("training loss is nan in epoch 1"), FAILURE, "FAILED", "gradacc: error: training loss is nan"),
    (KeyboardInterrupt(), 130, "KILLED", "gradacc: interrupted;"),
    (Terminated(), 143, "KILLED", "gradacc: terminated;"),  # what the SIGTERM handler raises
])
def test_run_that_fails_after_it_started(store, monkeypatch, error, code, status, message):
    monkeypatch.setitem(gradacc.study.run.RUNNERS, "micro", fail_inside(error))
    before = {r.info.run_id for r in all_runs(store["client"])}
    result = run_cli(["micro", "--k", "2", "--smoke", "--experiment", "e2e-failures"])
    assert result.code == code and "Traceback" not in result.err
    ours = [line for line in error_lines(result.err) if line.startswith("gradacc:")]
    assert len(ours) == 1 and ours[0].startswith(message), result.err
    new = [r for r in all_runs(store["client"]) if r.info.run_id not in before]
    assert len(new) == 1 and new[0].info.status == status
    run = new[0]
    assert history(store["client"], run.info.run_id, "micro_iter_ms") == ([0, 1], [5.0, 6.0])
    assert "wall_time_s" in run.data.metrics and run.data.params["k"] == "2"
    if status == "FAILED":
        assert run.data.tags["gradacc.failure"] == "training loss is nan in epoch 1"
    assert running(store) == []


@pytest.mark.slow
@pytest.mark.parametrize("params, name, reason", [
    ({"k": "abc"}, "converge-failed", "Invalid value for '--k': 'abc' is not a valid integer"),
    # MLflow passes a parameter the entry point does not declare as `--K 4`
    ({"K": "4", "smoke": "true"}, "converge-k1-failed", "No such option '--K'. Did you mean '--k'?"),
])
def test_mlflow_run_with_bad_parameter_ends_failed(store, params, name, reason):
    """The launcher's run gets a name and the reason, not only FAILED and a random name."""
    proc = mlflow_run("converge", params, "e2e-bad-mlproject")
    assert proc.returncode != 0
    assert f"gradacc: error: {reason}" in proc.stderr
    assert "Traceback" not in proc.stderr
    run = store["client"].get_run(launched_run_id(proc.stderr))
    assert run.info.status == "FAILED" and run.info.run_name == name
    assert reason in run.data.tags["gradacc.failure"]
    assert run.data.params.get("k") == params.get("k", "1")
    assert running(store) == []


@pytest.mark.slow
def test_sigterm_ends_the_run_killed(store):
    """SIGTERM (what schedulers and `mlflow run` send) mid-training: exit 143, the run ends KILLED."""
    args = [sys.executable, "-m", "gradacc", "converge", "--smoke", "--k", "2", "--experiment", "e2e-sigterm"]
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env())
    try:
        client, deadline, runs = store["client"], time.monotonic() + 180, []
        while time.monotonic() < deadline and proc.poll() is None:
            exp = client.get_experiment_by_name("e2e-sigterm")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if runs and "total_updates" in runs[0].data.params:  # params are logged: training has begun
                break
            time.sleep(0.5)
        assert runs and proc.poll() is None, "no run in training to interrupt"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert [line for line in error_lines(err) if line.startswith("gradacc:")] == [
        "gradacc: terminated; what was measured is logged, the run ends KILLED"]
    run = client.get_run(runs[0].info.run_id)
    assert run.info.status == "KILLED" and "wall_time_s" in run.data.metrics
    assert running(store) == []


@pytest.mark.parametrize("command, what", [(["sweep", "--smoke", "--parts", "micro", "--ks", "1"], "the comparison"),
                                           (["compare"], "the comparison"), (["commmodel"], "the model's tables")])
def test_output_folder_not_writable(store, tmp_path, command, what):
    """Checked before anything is measured or loaded. A folder inside a regular file: not writable even for root."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    before = len(all_runs(store["client"]))
    check_rejected(store, command + ["--output", blocker / "out"], FAILURE,
                   f"cannot write {what} to {blocker / 'out'}: Not a directory")
    assert len(all_runs(store["client"])) == before  # no run was started


def test_tracking_uri_unreachable_fails_fast(store, monkeypatch):
    """A closed port: MLflow's retries are bounded by gradacc's defaults, so it gives up in seconds."""
    from tests.support.server import free_port
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in HTTP_DEFAULTS:
        monkeypatch.delenv(name, raising=False)  # gradacc's own defaults, as for a user who set none
    start = time.monotonic()
    check_rejected(store, ["micro", "--smoke"], FAILURE,
                   f"tracking store {uri} is not usable: no answer after 3 retries ([Errno 111] Connection refused)")
    assert time.monotonic() - start < 30


def test_tracking_uri_malformed(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://x")
    check_rejected(store, ["micro", "--smoke"], FAILURE,
                   "tracking store foo://x is not usable: unsupported URI 'foo://x'; MLflow knows the schemes")


def test_sqlite_store_that_cannot_be_created_fails_at_once(store, monkeypatch, tmp_path):
    """MLflow would retry creating it for about two minutes; gradacc says why at once."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    uri = f"sqlite:///{blocker}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.monotonic()
    check_rejected(store, ["micro", "--smoke"], FAILURE,
                   f"tracking store {uri} is not usable: cannot create {blocker}/mlflow.db: File exists ({blocker})")
    assert time.monotonic() - start < 60
