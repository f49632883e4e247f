"""`gradacc commmodel` end to end on a store of synthetic micro, converge and ddp runs: tables, plots, its run;
the network cards per node reaching the model."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.e2e import all_runs, assert_one_error_line, run_cli

SETTING = {"device_type": "cpu", "device_name": "Test CPU", "loader": "device", "epochs": "2", "micro_batch": "64",
           "train_size": "1280", "test_size": "256", "lr": "0.1", "momentum": "0.9", "weight_decay": "0.0005",
           "seed": "42", "smoke": "false"}


def log_run(name: str, part: str, params: dict, series: dict, summaries: dict) -> None:
    from gradacc.tracking.experiments import experiment_id
    from gradacc.tracking.runs import tracked_run
    with tracked_run(name, {"gradacc.part": part, "gradacc.smoke": "false"}, experiment_id(None)) as run:
        run.log_params({}, {**SETTING, **params})
        run.log_metrics({key: (list(range(len(v))), list(v)) for key, v in series.items()}, summaries)


@pytest.fixture
def model_store(tracking_store):
    rng = np.random.default_rng(0)
    for threads in (2, 1):
        log_run(f"micro-k1-t{threads}", "micro", {"k": "1", "torch_threads": str(threads)},
                {"micro_iter_ms": 300 + rng.lognormal(3, 0.5, 80)}, {"opt_step_ms_mean": 10.0})
    for k, per_epoch in ((1, 20), (2, 10)):
        updates = 2 * per_epoch
        losses = 2.3 * np.exp(-np.arange(updates) / (12 / k)) + 0.5
        log_run(f"converge-k{k}", "converge", {"k": str(k), "torch_threads": "2", "updates_per_epoch": str(per_epoch)},
                {"train_loss_update": losses}, {"final_train_loss": float(losses[-per_epoch:].mean())})
    compute = 0.34 + 0.02 * rng.standard_normal((20, 2))  # (updates, ranks): step = update * 2 + rank
    log_run("ddp-w2", "ddp", {"k": "2", "workers": "2", "torch_threads": "1"},
            {"rank_compute_ms": compute.ravel() * 1e3, "rank_allreduce_ms": np.tile([140.0, 100.0], 20),
             "collective_ms": np.full(20, 100.0), "update_time_s": np.full(20, 0.5), "opt_step_ms": np.full(20, 10.0)},
            {"compute_ms_mean": 340.0, "allreduce_ms_mean": 120.0, "busbw_gb_s": 0.37, "update_time_s_mean": 0.5,
             "algbw_gb_s": 0.37, "allreduce_bytes": 44726568.0, "allreduce_buckets": 3.0, "opt_step_ms_mean": 10.0,
             "straggle_ms_set": 0.0, "cpu_cores": 2.0})
    # a benchmark at 2 ranks: a = 2 alpha = 100 us, b = 1 / B = 1 ns per byte (B = 1 GB/s)
    log_run("allreduce-w2", "allreduce", {"workers": "2"}, {},
            {"fit_a_us": 100.0, "fit_b_ns_per_byte": 1.0, "fit_a_se_us": 5.0, "fit_b_se_ns_per_byte": 0.01,
             "fit_ab_corr": -0.5, "fit_dof": 13.0, "alpha_us": 50.0, "bandwidth_gb_s": 1.0})
    return tracking_store


def test_commmodel_writes_tables_plots_and_a_run(model_store, tmp_path):
    from mlflow.tracking import MlflowClient
    out = tmp_path / "cm"
    result = run_cli(["commmodel", "--output", out, "--max-workers", "16", "--latency-us", "20",
                      "--bandwidth-gb-s", "2.5"])
    assert result.code == 0, result.err
    for name in ("table.md", "check.md", "presets.md", "commmodel.csv", "plots/update_time_vs_n.png",
                 "plots/efficiency_vs_n.png", "plots/time_to_target_vs_n.png", "plots/ddp_predicted_vs_measured.png"):
        assert (out / name).is_file(), name
    table = (out / "table.md").read_text()
    assert "InfiniBand NDR" in table and "custom (20 us, 2.5 GB/s)" in table and "(extrap.)" in table
    assert "Test CPU (1 threads)" in table  # the newest micro run's thread count feeds the model
    check = (out / "check.md").read_text()
    assert "ddp-w2" in check and "given: 20 us, 2.5 GB/s" in check  # the given link, not the run's own busbw
    assert "Gb/s" in (out / "presets.md").read_text()
    client = MlflowClient()
    run, = [r for r in all_runs(client) if r.data.tags.get("gradacc.part") == "commmodel"]
    assert run.info.status == "FINISHED" and run.data.params["gradient_bytes"] == str(4 * 11_181_642)
    assert "InfiniBand NDR (8/node on NVLink 4, 8 NICs/node)" in table  # default: one card per GPU
    assert (run.data.params["nics_per_node"], run.data.params["nics_per_node_resolved"]) == ("auto", "8")
    assert any(key.startswith("best_workers.") for key in run.data.metrics)
    assert run.data.tags["mlflow.note.content"].startswith("Part 4's model: the update time")
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"table.md", "check.md", "plots"}


def test_the_check_takes_its_link_from_the_benchmark(model_store, tmp_path):
    """No link given: the newest all-reduce benchmark of the device; 3 buckets of the 44,726,568-byte gradient
    at 2 ranks: 3 x 100 us + 44,726,568 x 1 ns = 45.03 ms predicted, 100 ms measured (the logged collective)."""
    out = tmp_path / "cm"
    result = run_cli(["commmodel", "--output", out, "--max-workers", "4"])
    assert result.code == 0, result.err
    check = (out / "check.md").read_text()
    assert "allreduce-w2: alpha 50 us, B 1 GB/s" in check, check
    assert "| 100 / 45 ± " in check, check  # a constant measurement: no interval shown


def test_nics_per_node_reaches_the_network_term(model_store, tmp_path):
    """4 GPUs per node, N=8 on InfiniBand NDR: a ring of 4 on NVLink 4 (1 us, 450 GB/s), then 2 nodes on NDR
    (5 us, 50 GB/s), 3 buckets; the 44,726,568-byte gradient through 1 card, or split over 4 (auto)."""
    import pandas as pd
    grad = 44_726_568
    intra = 2 * 3 * 1e-6 * 3 + 2 * 3 / 4 * grad / 450e9
    for given, cards in (("1", 1), ("auto", 4)):
        out = tmp_path / given
        result = run_cli(["commmodel", "--output", out, "--max-workers", "8", "--gpus-per-node", "4",
                          "--nics-per-node", given])
        assert result.code == 0, result.err
        rows = pd.read_csv(out / "commmodel.csv")
        name = f"InfiniBand NDR (4/node on NVLink 4, {cards} NIC{'s' if cards > 1 else ''}/node)"
        ndr = rows[(rows["interconnect"] == name) & (rows["workers"] == 8)]["allreduce_s"]
        assert ndr.tolist() == [pytest.approx(intra + 2 * 1 * 5e-6 * 3 + grad / cards / 50e9, rel=1e-9)], name
    from mlflow import MlflowClient
    runs = [r for r in all_runs(MlflowClient()) if r.data.tags.get("gradacc.part") == "commmodel"]
    assert len(runs) >= 2
    for run in runs:
        assert (run.data.params["latency_us"], run.data.params["bandwidth_gb_s"]) == ("auto", "auto")  # not ''


def test_commmodel_without_micro_runs_is_one_line(tracking_store, tmp_path):
    log_run("converge-k1", "converge", {"k": "1", "updates_per_epoch": "2"}, {"train_loss_update": [2.0, 1.0]}, {})
    result = run_cli(["commmodel", "--output", tmp_path / "cm"])
    assert result.code == 1
    assert_one_error_line(result, "no FINISHED micro runs")


def test_a_link_needs_latency_and_bandwidth(tracking_store, tmp_path):
    result = run_cli(["commmodel", "--latency-us", "5", "--output", tmp_path / "cm"])
    assert result.code == 1
    assert_one_error_line(result, "give both --latency-us and --bandwidth-gb-s")


@pytest.mark.parametrize("value, contains", [("0", "0 is not in the range x>=1"), ("two", "not a valid integer")])
def test_nics_per_node_is_auto_or_a_count(value, contains, tracking_store, tmp_path):
    result = run_cli(["commmodel", "--nics-per-node", value, "--output", tmp_path / "cm"])
    assert result.code == 2
    assert_one_error_line(result, contains)
