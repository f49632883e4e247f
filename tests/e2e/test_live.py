"""Metrics written while a run trains (gradacc/tracking/live.py): a converge run killed outright (SIGKILL) after its
first epochs keeps every epoch it finished, each update's points stamped with the time that update ended; a run
that ends normally has each point once, and the per-update epoch, images_seen and lr series."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from gradacc.core.config import Protocol
from tests.support.cifar import write_data_root
from tests.support.e2e import all_runs, isolated_store, run_cli, subprocess_env

pytestmark = pytest.mark.reliability
TRAIN = 256  # K=1: 4 updates of 64 images per epoch
CONVERGE = ["converge", "--k", "1", "--threads", "1", "--train-size", str(TRAIN), "--experiment", "live"]


@pytest.fixture()
def client(tmp_path):
    from mlflow import MlflowClient
    data = write_data_root(tmp_path / "data", train=TRAIN, test=Protocol.test_size)
    (tmp_path / "store").mkdir()
    with isolated_store(tmp_path / "store", data):
        yield MlflowClient()


def points(client, run_id: str, key: str) -> list:
    return sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)


def test_sigkill_after_an_epoch_keeps_every_epoch_it_finished(client):
    proc = subprocess.Popen([sys.executable, "-m", "gradacc", *CONVERGE, "--epochs", "50"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        deadline, run_id = time.monotonic() + 300, None
        while time.monotonic() < deadline and proc.poll() is None:
            runs = [r for r in all_runs(client) if r.data.tags.get("gradacc.part") == "converge"]
            if runs and points(client, runs[0].info.run_id, "train_loss"):
                run_id = runs[0].info.run_id
                break
            time.sleep(0.2)
        assert run_id and proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert client.get_run(run_id).info.status == "RUNNING"  # nothing ended it: what it has was written live
    epochs = [m.step for m in points(client, run_id, "train_loss")]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 50
    updates = 4 * len(epochs)
    for key in ("train_loss_update", "update_time_s", "epoch", "images_seen", "lr"):
        steps = [m.step for m in points(client, run_id, key)]
        assert steps[:updates] == list(range(updates)), key  # every update of every finished epoch
    stamps = [m.timestamp for m in points(client, run_id, "train_loss_update")][:updates]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]  # each update's own time, not one for all
    assert [m.value for m in points(client, run_id, "epoch")][:4] == [0.25, 0.5, 0.75, 1.0]


def test_a_finished_run_has_each_point_once(client):
    argv = [a if a != "1" else "2" for a in CONVERGE[:3]] + CONVERGE[3:]  # K=2: 2 updates of 128 images an epoch
    result = run_cli(argv + ["--epochs", "2", "--warmup-epochs", "1", "--lr-scaling", "linear"])
    assert result.code == 0, result.err
    (run,) = [r for r in all_runs(client) if r.data.tags.get("gradacc.part") == "converge"]
    for key in ("train_loss", "train_loss_update", "update_time_s", "epoch", "images_seen", "lr",
                "test_accuracy_epoch"):
        steps = [m.step for m in points(client, run.info.run_id, key)]
        assert steps == sorted(set(steps)), key  # no step written twice
    assert [m.step for m in points(client, run.info.run_id, "train_loss")] == [1, 2]
    assert [m.value for m in points(client, run.info.run_id, "images_seen")] == [128, 256, 384, 512]
    assert [m.value for m in points(client, run.info.run_id, "epoch")] == [0.5, 1, 1.5, 2]
    lrs = [m.value for m in points(client, run.info.run_id, "lr")]
    assert lrs == pytest.approx([0.1, 0.15, 0.2, 0.2])  # the warm-up ramp, then the peak (0.1 * K)
