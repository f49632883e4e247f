"""Real DDP (torchrun, gloo on CPU): the rank's share of the stream, bandwidth definitions, worker counts the
machine cannot start, verify's first-update agreement, one logged smoke run, a failing worker."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from gradacc.distributed.rank import RankStream, bandwidth_summaries
from gradacc.names import SERIES
from tests.support.e2e import all_runs, assert_one_error_line, history, run_cli


class CountingStream:
    def __init__(self):
        self.n = -1
        self.closed = False

    def next_batch(self):
        self.n += 1
        return self.n

    def close(self):
        self.closed = True


def test_rank_takes_its_micro_batch_of_every_group():
    for rank in range(3):
        stream = RankStream(CountingStream(), rank, 3)
        assert [stream.next_batch() for _ in range(4)] == [rank, 3 + rank, 6 + rank, 9 + rank]


def test_algbw_and_busbw_as_nccl_tests_define_them():
    summary = bandwidth_summaries(np.full(10, 0.5), 4e9, world=4)
    assert summary["algbw_gb_s"] == pytest.approx(8.0)
    assert summary["busbw_gb_s"] == pytest.approx(8.0 * 2 * 3 / 4)
    assert summary["allreduce_ms_mean"] == pytest.approx(500.0)


def test_relative_difference_per_tensor_and_the_reversed_control():
    import torch

    from gradacc.distributed.verify import ReversedGroups, largest_difference, relative_difference
    b = torch.tensor([3.0, 4.0])
    assert relative_difference(b + torch.tensor([0.0, 0.5]), b) == pytest.approx(0.1)
    assert relative_difference(torch.zeros(2), torch.zeros(2)) == 0.0
    assert largest_difference({"x": b, "y": b * 1.5}, {"x": b, "y": b}) == (pytest.approx(0.5), "y")
    control = ReversedGroups(CountingStream(), 3)
    assert [control.next_batch() for _ in range(6)] == [2, 1, 0, 5, 4, 3]


@pytest.mark.parametrize("argv, contains", [
    (["ddp", "--workers", "0"], "0 is not in the range x>=1"),
    (["verify", "--workers", "-2"], "is not in the range x>=1"),
    (["ddp", "--workers", str(4 * (os.cpu_count() or 1) + 1), "--device", "cpu"], "more than this machine"),
    (["ddp", "--workers", "two"], "not a valid integer"),
])
def test_worker_counts_the_machine_cannot_start(argv, contains, tracking_store):
    result = run_cli(argv)
    assert result.code != 0
    assert_one_error_line(result, contains)


def verify_figures(control_grad: float) -> dict:
    shot = {"grad_rel_diff": control_grad, "weight_rel_diff": 0.0, "running_rel_diff": 0.5,
            "grad_tensor": "a", "weight_tensor": "a", "running_tensor": "b"}
    return {"workers": 2, "updates": 1, "tolerance": 1e-5, "first": dict(shot, grad_rel_diff=0.0), "last": shot,
            "control_first": shot, "control_last": shot,
            "accuracy": {"accumulation": 10.0, "ddp": 10.0, "ddp_weights_accumulation_bn": 10.0}}


def test_verify_table_labels_the_control_and_says_when_rounding_is_invisible():
    from gradacc.distributed.verify import table_lines
    text = "\n".join(table_lines(verify_figures(0.0)))
    # the reversed order is rounding for gradients and weights; for BN statistics a deterministic change
    assert "gradients and weights: float rounding alone" in text and "not rounding" in text
    assert "cannot tell rounding from agreement" in text and "the control's reversed sum differs by 0.00e+00" in text
    assert "cannot tell" not in "\n".join(table_lines(verify_figures(3e-8)))


@pytest.mark.slow
def test_verify_default_sees_rounding_below_the_tolerance(tiny_cifar, tracking_store):
    """At verify's default worker count rounding is visible: the reversed-order control's gradients differ
    (non-zero) by less than the tolerance, so the bar measures something; DDP's agree within it too."""
    from mlflow.tracking import MlflowClient

    from gradacc.distributed.verify import TOLERANCE
    result = run_cli(["verify", "--updates", "2", "--smoke", "--device", "cpu", "--data-dir", tiny_cifar])
    assert result.code == 0, result.err
    found = re.search(r"first-update gradients agree to (\S+) \(tolerance 1e-05; the control's reversed sum "
                      r"differs by (\S+)\)", result.out)
    assert found and float(found.group(1)) < TOLERANCE == 1e-5, result.out
    assert "BN running-stat rel diff" in result.out and "test accuracy after 2 updates" in result.out
    assert "cannot tell rounding" not in result.out
    run, = all_runs(MlflowClient())
    assert run.info.run_name == "verify-w4-smoke" and run.data.tags["gradacc.part"] == "verify"
    m = run.data.metrics
    assert 0 < m["grad_rel_diff_control_first"] < TOLERANCE, m  # measured on tiny data: 7.5e-8
    assert float(found.group(2)) == pytest.approx(m["grad_rel_diff_control_first"], rel=1e-2)
    assert m["grad_rel_diff_first"] < TOLERANCE and "test_accuracy_ddp" in m
    params = run.data.params  # what was compared, on what: as a ddp run says it
    assert (params["k"], params["workers"], params["updates"], params["backend"]) == ("4", "4", "2", "gloo")
    assert params["device_type"] == "cpu" and params["code_version"] and params["effective_batch"] == "256"
    assert "total_updates" not in params  # verify trains `updates` updates, not the protocol's epochs


@pytest.mark.slow
def test_ddp_run_is_logged_once_by_rank_0(tiny_cifar, tracking_store):
    from mlflow.tracking import MlflowClient
    result = run_cli(["ddp", "--workers", "2", "--smoke", "--device", "cpu", "--data-dir", tiny_cifar])
    assert result.code == 0, result.err
    client = MlflowClient()
    run, = all_runs(client)  # rank 0 alone logs
    assert run.info.status == "FINISHED" and run.info.run_name == "ddp-w2-smoke"
    assert run.data.tags["gradacc.part"] == "ddp" and run.data.params["workers"] == "2"
    assert run.data.params["k"] == "2" and run.data.params["torch_threads"] == "1"
    m = run.data.metrics
    assert m["allreduce_bytes"] == 4 * 11_181_642
    assert m["busbw_gb_s"] == pytest.approx(m["algbw_gb_s"])  # 2(n-1)/n = 1 for n = 2
    assert m["compute_ms_mean"] > 0 and m["allreduce_ms_mean"] > 0 and 0 <= m["test_accuracy"] <= 100
    steps, losses = history(client, run.info.run_id, "train_loss_update")
    assert steps == list(range(8)) and all(np.isfinite(losses))  # 1,024 images / (64 x 2); same data: see verify
    assert [f.path for f in client.list_artifacts(run.info.run_id, "series")] == [
        f"series/{name}.csv" for name in sorted(SERIES["ddp"])]  # the public names load_series fetches
    # one training loop: N=2 DDP workers train what converge trains with K=2 (the same losses, to rounding), and
    # log the same axes (epoch, images_seen, lr per update)
    result = run_cli(["converge", "--k", "2", "--smoke", "--device", "cpu", "--threads", "1", "--data-dir",
                      tiny_cifar])
    assert result.code == 0, result.err
    converge, = [r for r in all_runs(client) if r.data.tags["gradacc.part"] == "converge"]
    assert history(client, converge.info.run_id, "train_loss_update")[1] == pytest.approx(losses, rel=1e-4)
    for axis in ("epoch", "images_seen", "lr"):
        assert history(client, run.info.run_id, axis) == history(client, converge.info.run_id, axis)


@pytest.mark.slow
def test_a_failing_worker_is_one_line(tmp_path, tracking_store):
    from tests.support.cifar import write_raw_batch
    root = tmp_path / "broken"
    write_raw_batch(root / "cifar-10-batches-py" / "data_batch_1", np.zeros((3, 5), dtype=np.uint8), [0, 1, 2])
    result = run_cli(["ddp", "--workers", "2", "--smoke", "--device", "cpu", "--data-dir", root])
    assert result.code == 1
    line = assert_one_error_line(result, "DDP worker rank")
    assert "full log:" in line


@pytest.mark.slow
def test_a_worker_killed_outright_leaves_no_run_running(tiny_cifar, tracking_store, monkeypatch):
    """Rank 0 SIGKILLed with its run open (the OOM killer, say): no process is left to end the run, so the
    launcher ends it KILLED, with the reason, and says so in one line before the error."""
    from mlflow.tracking import MlflowClient
    monkeypatch.setattr("gradacc.distributed.launch.WORKER", "tests.support.ddp_rank")
    monkeypatch.setenv("DDP_TEST_KILL_RANK", "0")
    result = run_cli(["ddp", "--workers", "2", "--smoke", "--device", "cpu", "--data-dir", tiny_cifar])
    assert result.code == 1, result.err
    run, = all_runs(MlflowClient())
    assert run.info.run_name == "ddp-w2-smoke" and run.info.status == "KILLED", run.info.status
    assert run.data.tags["gradacc.failure"].startswith("killed: its process ended before it could end the run "
                                                       "(torchrun exited with code 1)")
    assert "ddp: 1 run(s) left RUNNING by a killed process, ended KILLED: ddp-w2-smoke" in result.err, result.err
    assert "Traceback" not in result.err, result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("gradacc: error: DDP worker local rank 0 ended by signal 9 (SIGKILL), and torchrun "
                           "stopped the others (full log: "), result.err


@pytest.mark.slow
def test_torchrun_started_by_hand_builds_the_job_on_each_rank(tiny_cifar, tracking_store):
    """The multi-node form (`torchrun ... -m gradacc.cli.ddp_node OPTIONS`), here on one node: the run is logged
    once, and a bad option is one error line per rank and a non-zero exit."""
    import sys

    from mlflow.tracking import MlflowClient

    from tests.support.e2e import run_process
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "gradacc.cli.ddp_node"]
    done = run_process(torchrun + ["--smoke", "--device", "cpu", "--threads", "1", "--data-dir", tiny_cifar],
                       timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient()
    run, = all_runs(client)
    assert run.info.status == "FINISHED" and run.info.run_name == "ddp-w2-smoke" and run.data.params["k"] == "2"
    bad = run_process(torchrun + ["--epochs", "0", "--device", "cpu", "--data-dir", tiny_cifar], timeout=200)
    assert bad.returncode != 0
    errors = [line for line in bad.stderr.splitlines() if line.startswith("gradacc: error:")]
    assert errors and all("'--epochs': 0 is not in the range x>=1" in line for line in errors), bad.stderr[-2000:]


@pytest.mark.slow
def test_ddp_records_every_ranks_times_and_an_injected_straggler(tiny_cifar, tracking_store):
    """Rank 1 sleeps an exponential of mean 30 ms before each forward: it is in rank 1's compute, rank 0 waits
    for it, and the per-rank series hold every rank's compute and hook time per update (step = update * 2 + rank)."""
    from mlflow.tracking import MlflowClient
    result = run_cli(["ddp", "--workers", "2", "--smoke", "--device", "cpu", "--data-dir", tiny_cifar,
                      "--straggle-ms", "30"])
    assert result.code == 0, result.err
    client = MlflowClient()
    run, = all_runs(client)
    assert run.data.params["straggle_ms"] == "30" and run.data.params["straggle_rank"] == "1"
    m = run.data.metrics
    assert m["straggle_ms_set"] == 30 and m["straggle_ms_drawn_mean"] > 0 and m["cpu_cores"] == os.cpu_count()
    steps, compute = history(client, run.info.run_id, "rank_compute_ms")
    _, hooks = history(client, run.info.run_id, "rank_allreduce_ms")
    _, collective = history(client, run.info.run_id, "collective_ms")
    assert steps == list(range(16)) and len(hooks) == 16 and len(collective) == 8  # 8 updates, 2 ranks
    compute, hooks = np.reshape(compute, (8, 2)), np.reshape(hooks, (8, 2))
    _, own = history(client, run.info.run_id, "compute_ms")
    assert compute[:, 0] == pytest.approx(own)  # rank 0's column is its own compute series
    assert np.all(np.asarray(collective) <= hooks.min(axis=1) + 1e-9)  # per bucket the fastest: at most the sums'
    assert m["wait_ms_mean"] > 0 and m["collective_ms_mean"] > 0
