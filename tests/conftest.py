"""Shared fixtures: a tiny CIFAR-format data root, the real data root (skip or fail), an isolated MLflow store."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gradacc.core.data import FOLDER
from tests.support.cifar import write_tiny_cifar

_REALDATA_PASSED: list[str] = []  # node ids of the realdata tests that passed


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory) -> Path:
    """A tiny CIFAR-10 data root (the folder holding `cifar-10-batches-py/`), written with
    tests.support.cifar.write_tiny_cifar; pass it as `--data-dir` / `GRADACC_DATA_DIR` or to `load_subset`.

    - `data_batch_1`..`data_batch_5`: 210 images each (1,050 training images); `test_batch`: 260 images.
    - Training image i (global index in the official order, 0..1049): R = i % 256 and G = i // 256 over
      the whole image, B = 8 * row; label i % 10.
    - Test image i (0..259): R = i % 256, G = 128 + i // 256, B = 8 * row; label (i + 3) % 10.
    Enough for `--smoke` (1,024 / 256 images). Session-scoped: do not write into it."""
    return write_tiny_cifar(tmp_path_factory.mktemp("tiny_cifar"))


def pytest_addoption(parser):
    parser.addoption("--require-real-data", action="store_true", default=False,
                     help="fail (not skip) tests that need the real CIFAR-10 when GRADACC_DATA_DIR does not "
                          "hold it, and fail the session if no test marked realdata passed")


@pytest.fixture
def real_data_root(request) -> Path:
    """GRADACC_DATA_DIR when it holds `cifar-10-batches-py/`; otherwise a skip (a failure under
    --require-real-data). Tests that use it are marked `@pytest.mark.realdata`."""
    value = os.environ.get("GRADACC_DATA_DIR", "")
    if value and (Path(value) / FOLDER).is_dir():
        return Path(value)
    why = (f"the real CIFAR-10 is not available: GRADACC_DATA_DIR={value!r} does not hold {FOLDER}/ "
           "(set GRADACC_DATA_DIR to the folder that holds it)")
    if request.config.getoption("--require-real-data"):
        pytest.fail(why + " and --require-real-data was given", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def tracking_store(tmp_path, monkeypatch) -> str:
    """An MLflow store of its own: sqlite db in tmp_path, cwd = tmp_path (./mlruns lands there), no inherited
    run or experiment from the environment. Returns the tracking URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return uri


FLOORS = ("unit", "integration", "e2e")  # tests/<floor>/: each test gets its folder's marker (`pytest -m unit`)


def pytest_collection_modifyitems(config, items):
    for item in items:
        floor = next((part for part in Path(str(item.fspath)).parts if part in FLOORS), None)
        if floor:
            item.add_marker(floor)
    if any(item.get_closest_marker("cuda") for item in items):
        import torch
        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs a CUDA GPU (marked cuda)")
            for item in items:
                if item.get_closest_marker("cuda"):
                    item.add_marker(skip)


def pytest_configure(config):
    _REALDATA_PASSED.clear()


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed and "realdata" in report.keywords:
        _REALDATA_PASSED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not config.getoption("--require-real-data") or _REALDATA_PASSED:
        return
    message = ("--require-real-data: no test marked realdata passed (the real CIFAR-10 was required; "
               "set GRADACC_DATA_DIR to the folder that holds cifar-10-batches-py/)")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n")
        reporter.write_line(message, red=True)
    else:
        print(message)
    if session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
