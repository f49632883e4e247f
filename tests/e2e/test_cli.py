"""End to end: the CLI's smoke runs of every part, the sweep and `mlflow run`, read back from an MLflow store."""
from __future__ import annotations

import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import torch

from gradacc.core.runtime import cpu_model
from tests.support.cifar import SMOKE_TEST, SMOKE_TRAIN
from tests.support.e2e import (
    REPO_ROOT,
    VENV_BIN,
    all_runs,
    artifact,
    history,
    launched_run_id,
    mlflow_run,
    module_store,
    run_cli,
    run_process,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store and one --smoke data root for the module; cwd in the store's folder."""
    with module_store(tmp_path_factory, "cli") as made:
        yield made


def smoke_run(store, argv: list[str]):
    """Run `gradacc <argv> --smoke` in-process; returns (CliResult, the run it created)."""
    before = {r.info.run_id for r in all_runs(store["client"])}
    result = run_cli(argv + ["--smoke", "--data-dir", str(store["data"])])
    assert result.code == 0, result.err
    new = [r for r in all_runs(store["client"]) if r.info.run_id not in before]
    return result, new


@pytest.fixture(scope="module")
def micro(store):
    threads = torch.get_num_threads()
    try:
        result, new = smoke_run(store, ["micro", "--k", "2", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)  # the rest of this process keeps its thread count
    assert len(new) == 1
    return result, new[0]


@pytest.fixture(scope="module")
def update(store):
    result, new = smoke_run(store, ["update", "--k", "2"])
    assert len(new) == 1
    return result, new[0]


@pytest.fixture(scope="module")
def converge(store):
    result, new = smoke_run(store, ["converge", "--k", "2", "--experiment", "e2e-converge"])
    assert len(new) == 1
    return result, new[0]


def check_common(store, run, part: str, k: int, updates: int, experiment: str = "Default"):
    client = store["client"]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"{part}-k{k}-smoke"
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == experiment
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs
    tags = run.data.tags
    assert (tags["gradacc.part"], tags["gradacc.schema"], tags["gradacc.smoke"]) == (part, "1", "true")
    params = run.data.params
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    expected = {"k": str(k), "effective_batch": str(64 * k), "epochs": "5", "epochs_resolved": "1",
                "updates_per_epoch": str(updates), "total_updates": str(updates), "lr": "0.1",
                "momentum": "0.9", "weight_decay": "0.0005", "seed": "42", "train_size": "10240",
                "train_size_resolved": str(SMOKE_TRAIN),
                "test_size": str(SMOKE_TEST), "micro_batch": "64", "loader": "device", "device": "auto",
                "device_type": "cpu", "smoke": "true", "cpu_model": cpu_model(),
                "torch_version": torch.__version__, "data_path": str(store["data"].resolve())}
    assert {key: params.get(key) for key in expected} == expected
    assert params["code_version"].startswith(head.strip() or "0.1.0")
    assert int(params["torch_threads"]) >= 1
    metrics = run.data.metrics
    assert metrics["peak_memory_mb"] > 0 and metrics["wall_time_s"] > 0
    dst = store["tmp"] / "downloads" / run.info.run_id
    env = artifact(client, run.info.run_id, "environment.txt", dst).read_text()
    assert "packages:" in env and "mlflow==3.17.2" in env and "device_type: cpu" in env
    png = artifact(client, run.info.run_id, f"plots/{part}.png", dst)
    assert png.read_bytes().startswith(PNG_MAGIC)
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    return client, dst


def check_series(client, run, dst, name: str, steps: list[int]) -> np.ndarray:
    """The metric history has exactly these steps, and series/<name>.csv holds the same points."""
    got_steps, values = history(client, run.info.run_id, name)
    assert got_steps == steps
    rows = artifact(client, run.info.run_id, f"series/{name}.csv", dst).read_text().splitlines()
    assert rows[0] == "step,value"
    csv = [(int(s), float(v)) for s, v in (row.split(",") for row in rows[1:])]
    assert [s for s, _ in csv] == steps
    np.testing.assert_allclose([v for _, v in csv], values, rtol=1e-12)
    assert np.all(np.isfinite(values))
    return np.array(values)


def summary(run, key: str) -> float:
    return run.data.metrics[key]


def test_micro_smoke_run(store, micro):
    result, run = micro
    client, dst = check_common(store, run, "micro", k=2, updates=8)
    assert run.data.params["threads"] == "1" and run.data.params["torch_threads"] == "1"
    micro_ms = check_series(client, run, dst, "micro_iter_ms", list(range(8)))  # 8 timed micro-iterations
    step_ms = check_series(client, run, dst, "opt_step_ms", list(range(4)))  # one step per k=2 of them
    assert np.all(micro_ms > 0) and np.all(step_ms > 0)
    assert summary(run, "micro_iter_ms_mean") == pytest.approx(micro_ms.mean(), rel=1e-9)
    assert summary(run, "micro_iter_ms_std") == pytest.approx(micro_ms.std(ddof=1), rel=1e-9)
    assert summary(run, "micro_iter_ms_p90") == pytest.approx(np.percentile(micro_ms, 90), rel=1e-9)
    assert summary(run, "opt_step_ms_mean") == pytest.approx(step_ms.mean(), rel=1e-9)
    # The timed regions lie inside the part's wall time.
    assert summary(run, "wall_time_s") * 1e3 >= micro_ms.sum() + step_ms.sum()
    assert f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in result.err


def test_update_smoke_run(store, update):
    _, run = update
    client, dst = check_common(store, run, "update", k=2, updates=8)
    update_s = check_series(client, run, dst, "update_time_s", list(range(8)))
    middle = update_s[8 // 5: 8 - 8 // 5]
    assert summary(run, "update_time_s_mean") == pytest.approx(middle.mean(), rel=1e-9)
    assert summary(run, "update_time_s_std") == pytest.approx(middle.std(ddof=1), rel=1e-9)
    assert summary(run, "throughput_img_s") == pytest.approx(128 / middle.mean(), rel=1e-9)
    assert summary(run, "wall_time_s") >= update_s.sum()


def test_converge_smoke_run_in_named_experiment(store, converge):
    _, run = converge
    client, dst = check_common(store, run, "converge", k=2, updates=8, experiment="e2e-converge")
    epoch_loss = check_series(client, run, dst, "train_loss", [1])
    update_loss = check_series(client, run, dst, "train_loss_update", list(range(8)))
    accuracy = check_series(client, run, dst, "test_accuracy_epoch", [1])
    # K=2 measures the gradient noise scale by default and times its updates all the same, that work taken out
    assert run.data.tags["gradacc.noise_scale"] == "measured" and "noise_scale_simple" in run.data.metrics
    assert {"update_time_s", "update_time_s_mean", "throughput_img_s", "noise_snapshot_s_mean"} <= set(
        run.data.metrics)
    assert np.all(update_loss > 0)
    assert epoch_loss[0] == pytest.approx(update_loss.mean(), rel=1e-6)  # one epoch: the mean of its updates
    assert summary(run, "final_train_loss") == pytest.approx(epoch_loss[-1], rel=1e-12)
    assert summary(run, "test_accuracy") == pytest.approx(accuracy[-1], rel=1e-12)
    correct = accuracy[-1] * SMOKE_TEST / 100  # a percentage of 256 test images
    assert 0 <= correct <= SMOKE_TEST and correct == pytest.approx(round(correct), abs=1e-9)
    assert (run.data.tags["gradacc.noise_scale"], run.data.tags["gradacc.variant"]) == ("measured", "protocol")
    assert history(client, run.info.run_id, "grad_trace_sigma_est")[0] == list(range(8))
    assert history(client, run.info.run_id, "update_time_s")[0] == list(range(8))
    assert (run.data.params["tf32"], run.data.params["tf32_conv"]) == ("on", "false")  # no TF32 on a CPU


def test_torchvision_loader(store):
    _, new = smoke_run(store, ["update", "--k", "8", "--loader", "torchvision", "--experiment", "e2e-loader"])
    assert len(new) == 1
    run = new[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "update-k8-smoke"
    assert run.data.params["loader"] == "torchvision" and run.data.params["total_updates"] == "2"
    _, update_s = history(store["client"], run.info.run_id, "update_time_s")
    assert len(update_s) == 2  # 1,024 images / 512 per update; the middle 60% of 2 is both
    assert summary(run, "update_time_s_mean") == pytest.approx(np.mean(update_s), rel=1e-9)
    assert summary(run, "throughput_img_s") == pytest.approx(512 / np.mean(update_s), rel=1e-9)


def test_sweep_parent_and_children(store):
    _, new = smoke_run(store, ["sweep", "--ks", "1,2", "--parts", "micro", "--experiment", "e2e-sweep"])
    parents = [r for r in new if "mlflow.parentRunId" not in r.data.tags]
    compares = [r for r in new if r.data.tags.get("gradacc.part") == "compare"]
    assert len(parents) == 1 and len(compares) == 1 and len(new) == 4
    parent = parents[0]
    # The sweep ends with a comparison of its own study, logged as a child run with the report.
    study = parent.data.tags["gradacc.study"]
    assert compares[0].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert compares[0].data.tags[f"gradacc.study.{study}"] == "1"
    assert {a.path for a in store["client"].list_artifacts(compares[0].info.run_id)} >= {
        "report.html", "table.md", "table.csv", "plots"}
    assert parent.info.status == "FINISHED" and parent.info.run_name == "sweep-smoke"
    assert parent.data.tags["gradacc.part"] == "sweep" and parent.data.tags["gradacc.smoke"] == "true"
    # The parent explains itself: what the study ran, how to select its runs, where the report is; and holds it.
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith(f"Study {study}: micro for K = 1, 2, seed(s) 42 (smoke); 2 runs measured, 0 reused.")
    assert f"tags.`gradacc.study.{study}` = '1'" in note and f"study-{study}/report.html" in note
    assert {a.path for a in store["client"].list_artifacts(parent.info.run_id)} >= {"report.html", "table.md"}
    assert parent.data.metrics["runs_measured"] == 2
    assert (parent.data.params["ks"], parent.data.params["parts"]) == ("1,2", "micro")
    children = sorted((r for r in new if r is not parent and r not in compares), key=lambda r: r.data.params["k"])
    assert [c.info.run_name for c in children] == ["micro-k1-smoke", "micro-k2-smoke"]
    for k, child in zip((1, 2), children):
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED" and child.info.experiment_id == parent.info.experiment_id
        assert child.data.params["k"] == str(k) and child.data.params["effective_batch"] == str(64 * k)
        # MLflow's context, as mlflow.start_run sets it, on the runs gradacc creates itself; and a description
        assert child.data.tags["mlflow.source.type"] == "LOCAL" and child.data.tags["mlflow.user"]
        assert child.data.tags["mlflow.note.content"].startswith("Micro on ") and "Results: micro-iteration " in \
            child.data.tags["mlflow.note.content"]
        steps, _ = history(store["client"], child.info.run_id, "micro_iter_ms")
        assert steps == list(range(8))
        steps, _ = history(store["client"], child.info.run_id, "opt_step_ms")
        assert steps == list(range(8 // k))


SEED_DEFAULT = "[default: 42; 0<=x<=18446744073709551615]"  # click's IntRange shows its range


@pytest.mark.parametrize("command, defaults", [
    ("micro", ["--k INTEGER", "[default: 1; x>=1]", "[default: 5; x>=1]", SEED_DEFAULT, "[default: auto]",
               "[default: device]", "--smoke"]),
    ("update", ["[default: 1; x>=1]", "[default: 5; x>=1]", SEED_DEFAULT, "[default: device]", "[default: auto]"]),
    ("converge", ["[default: 1; x>=1]", "[default: 5; x>=1]", SEED_DEFAULT, "[default: device]", "[default: auto]"]),
    ("sweep", ["[default: 1,2,4,8]", "[default: micro,converge]", "[default: 5; x>=1]", SEED_DEFAULT]),
])
def test_help_shows_defaults(command, defaults):
    result = run_cli([command, "--help"])
    assert result.code == 0 and result.err == ""
    text = " ".join(result.out.split())  # click wraps to the terminal width
    assert text.startswith(f"Usage: gradacc {command} [OPTIONS]")
    for default in defaults:
        assert default in text


def test_console_script_and_module():
    version = run_process([VENV_BIN / "gradacc", "--version"], timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == "gradacc, version 0.1.0"
    usage = run_process([sys.executable, "-m", "gradacc", "--help"], timeout=60)
    assert usage.returncode == 0
    for command in ("micro", "update", "converge", "sweep"):
        assert command in usage.stdout


@pytest.mark.slow
def test_mlflow_run_attaches_to_its_run(store):
    before = {r.info.run_id for r in all_runs(store["client"])}
    proc = mlflow_run("micro", {"k": "2", "smoke": "true"}, "e2e-mlproject")
    assert proc.returncode == 0, proc.stderr
    run_id = launched_run_id(proc.stderr)
    new = [r for r in all_runs(store["client"]) if r.info.run_id not in before]
    assert [r.info.run_id for r in new] == [run_id]  # no second run: the CLI wrote into mlflow run's own
    run = new[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "micro-k2-smoke"
    assert run.data.tags["mlflow.project.entryPoint"] == "micro" and run.data.tags["gradacc.part"] == "micro"
    assert "Results: micro-iteration" in run.data.tags["mlflow.note.content"]
    params = run.data.params
    assert params["k"] == "2" and "k_resolved" not in params and params["effective_batch"] == "128"
    assert params["smoke"] == "true" and params["data_path"] == str(store["data"].resolve())
    assert history(store["client"], run_id, "micro_iter_ms")[0] == list(range(8))


@pytest.mark.slow
def test_mlflow_run_keeps_param_as_given(store):
    proc = mlflow_run("micro", {"k": "04", "smoke": "true"}, "e2e-mlproject")
    assert proc.returncode == 0, proc.stderr
    run = store["client"].get_run(launched_run_id(proc.stderr))
    assert run.info.status == "FINISHED" and run.info.run_name == "micro-k4-smoke"
    params = run.data.params
    assert (params["k"], params["k_resolved"], params["effective_batch"]) == ("04", "4", "256")
    assert history(store["client"], run.info.run_id, "opt_step_ms")[0] == [0, 1]  # 8 timed / k=4
