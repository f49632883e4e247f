"""gradacc.results on synthetic runs in a temporary store: typed columns, filters, metric histories."""
from __future__ import annotations

import pandas as pd
import pytest
from mlflow import MlflowClient

from gradacc.analysis.compare import build_sections
from gradacc.core.errors import TrackingError
from gradacc.tracking.results import SERIES_COLUMNS, load_runs, load_series
from tests.support.compare import SyntheticStore, fresh_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the module (tests only read it). Study A: K 1, 2, 16 for seed 42 (all parts); study B:
    K=4 micro (seed 42); a run reused by both; a smoke run, a FAILED run and a run of another experiment."""
    with pytest.MonkeyPatch.context() as mp:
        fresh_store(tmp_path_factory.mktemp("results"), mp)
        yield _populate()


def _populate():
    s = SyntheticStore()
    ids = s.sweep(ks=(1, 2, 16), study="A")
    ids["b"] = s.log("micro", 4, studies=("B",), micro_ms=120.0)
    ids["both"] = s.log("update", 8, studies=("A", "B"))
    ids["smoke"] = s.log("converge", 4, smoke=True, studies=("A",))
    ids["failed"] = s.log("converge", 8, status="FAILED", studies=("A",))
    ids["given"] = s.log("converge", 2, seed=7, epochs=1, given_epochs="5")
    other = SyntheticStore("other")
    ids["other"] = other.log("micro", 1)
    return s, ids


def test_typed_columns(store):
    runs = load_runs()
    assert pd.api.types.is_datetime64_any_dtype(runs["start_time"])
    for column in ("k", "effective_batch", "epochs", "updates_per_epoch", "total_updates", "seed", "train_size",
                   "test_size", "micro_batch", "torch_threads"):
        assert pd.api.types.is_integer_dtype(runs[column]), column
    for column in ("lr", "momentum", "weight_decay", "micro_iter_ms_mean", "update_time_s_mean",
                   "throughput_img_s", "test_accuracy", "final_train_loss"):
        assert pd.api.types.is_float_dtype(runs[column]), column
    assert runs["smoke"].dtype == bool
    row = runs[runs["run_name"] == "update-k16"].iloc[0]
    assert (row.k, row.effective_batch, row.total_updates, row.seed) == (16, 1024, 50, 42)
    assert row.lr == pytest.approx(0.1) and row.weight_decay == pytest.approx(5e-4)
    assert (row.part, row.loader, row.device_type, row.variant, row.status) == (
        "update", "device", "cpu", "protocol", "FINISHED")
    assert row.throughput_img_s == pytest.approx(64 * 16 / ((16 * 100 + 5 + 2) / 1e3))
    assert runs["start_time"].is_monotonic_decreasing  # newest first


def test_default_filters_leave_out_smoke_failed_and_other_experiments(store):
    _s, ids = store
    chosen = set(load_runs()["run_id"])
    assert ids["smoke"] not in chosen and ids["failed"] not in chosen and ids["other"] not in chosen
    assert ids["micro", 1, 42] in chosen
    everything = set(load_runs(include_smoke=True, statuses=None)["run_id"])
    assert {ids["smoke"], ids["failed"]} <= everything
    assert set(load_runs(statuses=("FAILED",))["run_id"]) == {ids["failed"]}


def test_study_and_part_filters(store):
    _s, ids = store
    a = load_runs(study="A")
    assert set(a["run_id"]) == {v for key, v in ids.items() if isinstance(key, tuple)} | {ids["both"], ids["sweep"]}
    assert a.set_index("run_id").loc[ids["sweep"], "part"] == "sweep"
    b = load_runs(study="B")
    assert set(b["run_id"]) == {ids["b"], ids["both"]}
    assert set(b.loc[b["run_id"] == ids["both"], "studies"].iloc[0]) == {"A", "B"}
    assert b.loc[b["run_id"] == ids["both"], "study"].iloc[0] == "B"  # the latest study id
    micro = load_runs(parts=["micro"])
    assert set(micro["part"]) == {"micro"} and len(micro) == 4
    two = load_runs(parts=("micro", "update"), study="A")
    assert set(two["part"]) == {"micro", "update"} and len(two) == 7
    assert load_runs(study="nope").empty


def test_experiment_by_name_id_or_environment(store, monkeypatch):
    s, ids = store
    assert set(load_runs(s.exp_id)["run_id"]) == set(load_runs("Default")["run_id"]) == set(load_runs()["run_id"])
    assert set(load_runs("other")["run_id"]) == {ids["other"]}
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "other")
    assert set(load_runs()["run_id"]) == {ids["other"]}
    assert len(load_runs(["Default", "other"])) == len(load_runs("Default")) + 1
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", MlflowClient().get_experiment_by_name("other").experiment_id)
    assert set(load_runs()["run_id"]) == {ids["other"]}
    with pytest.raises(TrackingError, match="no experiment 'missing'"):
        load_runs("missing")
    with pytest.raises(TrackingError, match="study id"):
        load_runs(study="a'b")


def test_resolved_params_win_over_given(store):
    _s, ids = store
    row = load_runs().set_index("run_id").loc[ids["given"]]
    assert row.epochs == 1 and row.total_updates == 10_240 // 128


def test_load_series_shape_and_order(store):
    runs = load_runs(study="A")
    series = load_series(runs)
    assert list(series.columns) == SERIES_COLUMNS
    counts = series.groupby(["part", "k", "key"]).size()
    assert counts["micro", 1, "micro_iter_ms"] == 80 and counts["micro", 16, "opt_step_ms"] == 5
    assert counts["update", 1, "update_time_s"] == 800 and counts["update", 16, "update_time_s"] == 50
    assert counts["converge", 2, "train_loss"] == 5 and counts["converge", 2, "train_loss_update"] == 400
    assert counts["update", 8, "update_time_s"] == 100
    assert list(series["k"].drop_duplicates()) == [1, 2, 8, 16]  # numerically, not '1', '16', '2', '8'
    assert set(series["run_id"]) == set(runs.loc[runs["part"] != "sweep", "run_id"])
    epoch = series[(series["key"] == "train_loss") & (series["k"] == 1)]
    assert list(epoch["step"]) == [1, 2, 3, 4, 5] and epoch["value"].iloc[-1] == pytest.approx(1.55)


def test_load_series_keys_and_empty(store):
    runs = load_runs(parts=["converge"])
    only = load_series(runs, keys=["train_loss"])
    assert set(only["key"]) == {"train_loss"} and set(only["part"]) == {"converge"}
    assert len(only) == runs["epochs"].sum()  # one run trained 1 epoch, the others 5
    assert load_series(runs, keys=["update_time_s"]).empty  # converge runs have no such series
    empty = load_series(runs.iloc[0:0])
    assert empty.empty and list(empty.columns) == SERIES_COLUMNS


def test_empty_experiment(tmp_path, monkeypatch):
    fresh_store(tmp_path, monkeypatch)
    SyntheticStore()
    runs = load_runs()
    assert runs.empty and {"run_id", "k", "part", "start_time"} <= set(runs.columns)


def test_tf32_is_known_where_logged_and_unknown_only_for_old_cuda_runs(tmp_path, monkeypatch):
    fresh_store(tmp_path, monkeypatch)
    s = SyntheticStore()
    ids = {"on": s.log("micro", 1, device_type="cuda", tf32="true"),
           "off": s.log("micro", 1, device_type="cuda", tf32="false"),
           "old cuda": s.log("micro", 1, device_type="cuda"), "old cpu": s.log("micro", 1)}
    runs = load_runs().set_index("run_id")["tf32_conv"]
    assert [runs[ids[name]] for name in ("on", "off", "old cuda", "old cpu")] == [True, False, None, False]
    labels = [section.label for section in build_sections(load_runs(), expected_ks=(1,))]
    cuda = sorted(label.partition("threads")[2] for label in labels if "(cuda)" in label)
    assert cuda == ["", "; TF32 convolutions", "; TF32 unknown (runs from before it was logged)"] and len(labels) == 4


def test_a_series_named_as_a_param_leaves_the_param(store):
    """converge logs `lr` per update (its last value under warm-up or a schedule is not the run's lr); load_runs'
    `lr` stays the param, so a micro run (no `lr` series) and a converge run of one setting compare together."""
    from gradacc.tracking.results import tidy_runs

    raw = pd.DataFrame({"run_id": ["m", "c"], "params.lr": ["0.1", "0.1"], "metrics.lr": [float("nan"), 0.05],
                        "metrics.epoch": [float("nan"), 5.0]})
    runs = tidy_runs(raw)
    assert list(runs["lr"]) == [0.1, 0.1]
    assert runs["epoch"].iloc[1] == 5.0  # a series with no param of its name is still a column
