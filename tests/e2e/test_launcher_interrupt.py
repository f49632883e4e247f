"""Ctrl-C under `mlflow run` (the launcher and gradacc both get it): the run ends KILLED, as under the CLI, though
MLflow 3.17's launcher marks it FAILED as it exits (gradacc/tracking/launcher.py sets it back); gradacc exits 130,
the launcher with its own code."""
from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.test_interrupts import finish, launch, wait_for
from tests.support.e2e import launched_run_id, smoke_store

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


@pytest.fixture()
def store(tmp_path):
    with smoke_store(tmp_path) as client:
        yield client


def test_ctrl_c_under_mlflow_run_ends_the_run_killed(store):
    proc = launch("converge", {"k": "1"}, "interrupt-killed")
    wait_for(proc, store, "interrupt-killed", lambda runs: runs and "total_updates" in runs[0].data.params)
    err = finish(proc, signal.SIGINT, group=True)
    assert "gradacc: interrupted; what was measured is logged, the run ends KILLED" in err, err
    run_id = launched_run_id(err)
    deadline = time.monotonic() + 30
    while store.get_run(run_id).info.status != "KILLED" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.get_run(run_id).info.status == "KILLED", err
