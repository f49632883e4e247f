"""--log-model: a converge run that trained every epoch logs its model (mlflow.pytorch) as torchvision's ResNet,
which loads back, with no gradacc installed too, and gives the trained model's outputs; without the option, no
model; the run still ends FINISHED with its metrics."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.e2e import all_runs, run_cli, smoke_store

CONVERGE = ["converge", "--k", "2", "--smoke", "--threads", "1", "--experiment", "models"]


@pytest.fixture()
def store(tmp_path):
    with smoke_store(tmp_path) as client:
        yield client


# A user's process: torchvision installed, gradacc not (importing it fails); the logged model loads and classifies
WITHOUT_GRADACC = """
import sys
sys.modules["gradacc"] = None
import mlflow.pytorch, torch, torchvision
model = mlflow.pytorch.load_model(sys.argv[1])
assert type(model) is torchvision.models.ResNet, type(model)
torch.save(model(torch.load(sys.argv[2])), sys.argv[3])
"""


def test_the_trained_model_is_logged_and_loads_back(store, monkeypatch, tmp_path):
    import mlflow.pytorch
    import torch
    import torchvision

    from gradacc.tracking.runs import TrackedRun
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    trained = []  # the trained model's outputs on x, in eval mode, as the run hands it to log_model
    log_model = TrackedRun.log_model

    def spy(self, model):
        trained.append(model.eval()(x).detach())
        log_model(self, model)
    monkeypatch.setattr(TrackedRun, "log_model", spy)
    assert run_cli(CONVERGE).code == 0
    kept = run_cli(CONVERGE + ["--log-model"])
    assert kept.code == 0, kept.err
    plain, with_model = sorted(all_runs(store), key=lambda r: r.info.start_time)
    assert with_model.info.status == "FINISHED" and "test_accuracy" in with_model.data.metrics
    assert with_model.data.params["log_model"] == "true" and plain.data.params["log_model"] == "false"
    uri = f"runs:/{with_model.info.run_id}/model"
    model = mlflow.pytorch.load_model(uri)
    assert type(model) is torchvision.models.ResNet and not model.training
    assert len(trained) == 1 and torch.equal(model(x), trained[0])  # the trained weights and BN statistics
    assert model(torch.zeros(7, 3, 32, 32)).shape == (7, 10)  # any batch size
    torch.save(x, tmp_path / "x.pt")
    subprocess.run([sys.executable, "-c", WITHOUT_GRADACC, uri, str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                   check=True)
    assert torch.equal(torch.load(tmp_path / "y.pt"), trained[0])
    with pytest.raises(Exception):
        mlflow.pytorch.load_model(f"runs:/{plain.info.run_id}/model")
