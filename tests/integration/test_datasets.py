"""Dataset inputs (`mlflow.data`) on the runs that train or evaluate: contexts training / evaluation, names a
person reads, digests equal for the same subset. The parts are replaced by fakes that measure nothing, so what
is checked is the tracking, in well under a second per run."""
from __future__ import annotations

import json

import pytest

import gradacc.study.run
from gradacc.core.data import class_counts, load_subset, subset_digest
from tests.support.e2e import module_store, run_cli

EXPERIMENT = "datasets"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with module_store(tmp_path_factory, "datasets") as made:
        yield made


@pytest.fixture
def fake_parts(monkeypatch):
    def part(protocol, ctx, result, progress):
        result.summaries["test_accuracy"] = 10.0
    for name in ("micro", "converge"):
        monkeypatch.setitem(gradacc.study.run.RUNNERS, name, part)


def inputs_of(client, run_id: str) -> dict[str, object]:
    """{context: Dataset} of one run."""
    found = {}
    for i in client.get_run(run_id).inputs.dataset_inputs:
        tags = {t.key: t.value for t in i.tags}
        found[tags["mlflow.data.context"]] = i.dataset
    return found


def runs_named(client, name: str) -> list[str]:
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{name}'",
                              order_by=["attributes.start_time ASC"])
    return [r.info.run_id for r in runs]


def test_converge_runs_carry_the_training_and_test_subsets_with_equal_digests(store, fake_parts):
    for _ in range(2):
        assert run_cli(["converge", "--k", "2", "--smoke", "--experiment", EXPERIMENT]).code == 0
    client = store["client"]
    first, second = (inputs_of(client, run_id) for run_id in runs_named(client, "converge-k2-smoke"))
    assert set(first) == {"training", "evaluation"}
    assert first["training"].name == "cifar10-train-1024" and first["evaluation"].name == "cifar10-test-256"
    assert {c: d.digest for c, d in first.items()} == {c: d.digest for c, d in second.items()}

    subset = load_subset(store["data"], 1024, 256, download=False)  # the digest is of exactly these arrays
    assert first["training"].digest == subset_digest(subset.train_images, subset.train_labels)
    assert first["evaluation"].digest == subset_digest(subset.test_images, subset.test_labels)
    assert first["training"].digest != first["evaluation"].digest
    train = first["training"]
    assert train.source_type == "local"
    assert json.loads(train.source)["uri"] == str((store["data"] / "cifar-10-batches-py").resolve())
    profile = json.loads(train.profile)
    assert profile["images"] == 1024 and list(profile["class_counts"].values()) == class_counts(subset.train_labels)
    features = json.loads(json.loads(train.schema)["mlflow_tensorspec"]["features"])
    assert features[0]["tensor-spec"] == {"dtype": "uint8", "shape": [-1, 32, 32, 3]}


def test_a_micro_run_trains_only(store, fake_parts):
    assert run_cli(["micro", "--k", "1", "--smoke", "--experiment", EXPERIMENT]).code == 0
    client = store["client"]
    (run_id,) = runs_named(client, "micro-k1-smoke")
    (converge_id, *_) = runs_named(client, "converge-k2-smoke")
    assert set(inputs_of(client, run_id)) == {"training"}
    assert inputs_of(client, run_id)["training"].digest == inputs_of(client, converge_id)["training"].digest

