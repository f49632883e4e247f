"""Ctrl-C under `mlflow run` (a terminal sends it to the whole job: the launcher and gradacc): the run ends KILLED
and the launcher exits 130, as `gradacc converge` does by itself (gradacc/tracking/launcher.py). Run with the
`mlflow` console script and with `python -m mlflow`, the two ways the docs and the tests start it."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.e2e.test_interrupts import finish, wait_for
from tests.support.e2e import REPO_ROOT, VENV_BIN, launched_run_id, smoke_store, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

LAUNCHERS = {"console script": [str(VENV_BIN / "mlflow")], "python -m": [sys.executable, "-m", "mlflow"]}


@pytest.fixture()
def store(tmp_path):
    with smoke_store(tmp_path) as client:
        yield client


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_ctrl_c_under_mlflow_run_ends_killed_with_exit_130(store, launcher):
    args = LAUNCHERS[launcher] + ["run", str(REPO_ROOT), "--env-manager", "local", "-e", "converge",
                                  "--experiment-name", "ctrl-c", "-P", "k=4", "-P", "smoke=true", "-P", "threads=1"]
    # a job of its own, as a shell starts it in the foreground: SIGINT at its default action, even where this test
    # runs in a background job (a non-interactive shell's `&` starts it with SIGINT ignored, and a Python started
    # so keeps ignoring it: neither MLflow nor the hook would then see a Ctrl-C)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(proc, store, "ctrl-c", lambda runs: runs and "total_updates" in runs[0].data.params)  # training
    err = finish(proc, signal.SIGINT, group=True)  # the terminal's Ctrl-C: every process of the job gets it
    assert "gradacc: interrupted; what was measured is logged, the run ends KILLED" in err, err
    assert proc.returncode == 130, err
    run = store.get_run(launched_run_id(err))
    assert run.info.status == "KILLED", err  # already when the launcher has exited: nothing sets it afterwards
    assert "Traceback (most recent call last)" not in err, err
