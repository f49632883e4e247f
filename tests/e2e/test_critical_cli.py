"""End to end: `gradacc critical --smoke` on tiny data: a parent with the fit's sentence, table and two plots, a
child per K with updates and images to target (reached, or a lower bound), reuse, and bad input refused."""
from __future__ import annotations

import pytest

from gradacc.names import CRITICAL, PART, SERIES
from tests.support.e2e import all_runs, artifact, assert_one_error_line, history, module_store, run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with module_store(tmp_path_factory, "critical") as made:
        yield made


def critical_runs(store) -> list:
    return [r for r in all_runs(store["client"]) if r.data.tags.get(PART) == CRITICAL]


@pytest.fixture(scope="module")
def first(store):
    # a target any model meets (the first evaluation stops the run; early eval-mode losses of the tiny data
    # reach 1e4: BatchNorm's running statistics lag), one the cap (one smoke epoch) stops first
    for target in ("1e9", "0.01"):
        result = run_cli(["critical", "--smoke", "--threads", "1", "--target", target, "--ks", "1,2"])
        assert result.code == 0, result.err
    return critical_runs(store)


def by_target(runs, target: str):
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.data.params["target"] == target)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


def test_children_log_updates_and_images_to_target(first, store):
    parent, children = by_target(first, "0.01")
    assert sorted(int(c.data.params["k"]) for c in children) == [1, 2]
    for child in children:
        m = child.data.metrics
        assert m["target_reached"] == 0  # the cap (one smoke epoch) stops it: S is the updates run, a bound
        updates = 1024 // (64 * int(child.data.params["k"]))
        assert m["updates_to_target"] == updates and m["images_to_target"] == updates * 64 * int(
            child.data.params["k"])
        steps, losses = history(store["client"], child.info.run_id, "target_loss")
        assert steps[-1] == updates and all(loss > 0.01 for loss in losses)
        assert set(child.data.metrics) - set(SERIES[CRITICAL]) >= {"updates_to_target", "images_to_target"}
    k2 = next(c for c in children if c.data.params["k"] == "2")
    assert k2.data.metrics["noise_scale_simple_to_target"] == k2.data.metrics["noise_scale_simple_to_target"]


def test_a_reached_target_stops_at_the_evaluation_that_meets_it(first, store):
    _, children = by_target(first, "1000000000.0")
    for child in children:
        k, m = int(child.data.params["k"]), child.data.metrics
        steps, losses = history(store["client"], child.info.run_id, "target_loss")
        assert m["target_reached"] == 1 and steps == [m["eval_every_updates"]] == [1024 // (64 * k)]
        assert m["updates_to_target"] == steps[-1] and m["images_to_target"] == 1024 and losses[0] <= 1e9


def test_parent_carries_sentence_table_and_plots(first, store, tmp_path):
    parent, _ = by_target(first, "0.01")
    assert "not determined" in parent.data.tags["mlflow.note.content"]  # no K reached: no fit, said so
    table = artifact(store["client"], parent.info.run_id, "critical.md", tmp_path).read_text()
    assert "| 1 | 64 | 42 | no | >= 16 |" in table
    for png in ("critical_updates.png", "critical_tradeoff.png"):
        path = artifact(store["client"], parent.info.run_id, f"plots/{png}", tmp_path)
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_a_second_study_reuses_the_finished_children(first, store):
    result = run_cli(["critical", "--smoke", "--threads", "1", "--target", "0.01", "--ks", "1,2"])
    assert result.code == 0, result.err
    assert result.err.count("reusing finished run") == 2
    assert len(critical_runs(store)) == len(first) + 1  # a new parent only


@pytest.mark.parametrize("argv, contains", [
    (["--target", "-1"], "--target"),
    (["--target", "nan"], "--target"),
    (["--ks", "1,1"], "more than once"),
    (["--ks", "32"], "k=32 needs 2048 images"),
])
def test_bad_input_is_one_line(store, argv, contains):
    assert_one_error_line(run_cli(["critical", "--smoke", *argv]), contains)


@pytest.mark.slow
def test_mlflow_run_s_default_ks_fit_the_smoke_subset(store):
    """`mlflow run -e critical -P smoke=true` passes every parameter, ks too: its default, auto, is the smoke
    subset's K (1, 2, 4) there, not the full form's 1..32 (K=32 has no whole update in 1,024 images)."""
    from tests.support.e2e import mlflow_run
    proc = mlflow_run(CRITICAL, {"smoke": "true", "threads": "1", "target": "1e9"}, "critical-mlflow-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    exp = store["client"].get_experiment_by_name("critical-mlflow-run")
    runs = store["client"].search_runs([exp.experiment_id])
    parent, = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.params["ks"] == "auto" and parent.info.status == "FINISHED"
    assert sorted(r.data.params["k"] for r in runs if r is not parent) == ["1", "2", "4"]
