"""--log-model: a converge run that trained every epoch logs its model (mlflow.pytorch), which loads back and
classifies; without the option, no model; the run still ends FINISHED with its metrics."""
from __future__ import annotations

import pytest

from tests.support.e2e import all_runs, run_cli, smoke_store

CONVERGE = ["converge", "--k", "2", "--smoke", "--threads", "1", "--experiment", "models"]


@pytest.fixture()
def store(tmp_path):
    with smoke_store(tmp_path) as client:
        yield client


def test_the_trained_model_is_logged_and_loads_back(store):
    import mlflow.pytorch
    import torch
    assert run_cli(CONVERGE).code == 0
    kept = run_cli(CONVERGE + ["--log-model"])
    assert kept.code == 0, kept.err
    plain, with_model = sorted(all_runs(store), key=lambda r: r.info.start_time)
    assert with_model.info.status == "FINISHED" and "test_accuracy" in with_model.data.metrics
    assert with_model.data.params["log_model"] == "true" and plain.data.params["log_model"] == "false"
    model = mlflow.pytorch.load_model(f"runs:/{with_model.info.run_id}/model")
    assert model(torch.zeros(5, 3, 32, 32)).shape == (5, 10)  # any batch size
    with pytest.raises(Exception):
        mlflow.pytorch.load_model(f"runs:/{plain.info.run_id}/model")
