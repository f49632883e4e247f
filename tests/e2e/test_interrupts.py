"""Interrupts under `mlflow run`: the run is not left RUNNING, what was measured is logged, and a sweep stopped
this way resumes with the next command without measuring again what had finished."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.e2e import REPO_ROOT, all_runs, history, launched_run_id, run_cli, smoke_store, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


@pytest.fixture()
def store(tmp_path):
    with smoke_store(tmp_path) as client:
        yield client


def launch(entry_point: str, params: dict[str, str], experiment: str) -> subprocess.Popen:
    """`mlflow run` in a process group of its own, as a shell starts a foreground job."""
    args = [sys.executable, "-m", "mlflow", "run", str(REPO_ROOT), "-e", entry_point, "--env-manager", "local",
            "--experiment-name", experiment, "-P", "smoke=true", "-P", "threads=1"]
    for key, value in params.items():
        args += ["-P", f"{key}={value}"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(), start_new_session=True)


def wait_for(proc: subprocess.Popen, client, experiment: str, ready, timeout: float = 300) -> list:
    """Polls the experiment's runs until ready(runs) holds; fails if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if ready(runs):
            return runs
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60) if proc.poll() is not None else ("", "")
    pytest.fail(f"the runs never got ready (exit {proc.returncode}):\n{err[-3000:]}")


def finish(proc: subprocess.Popen, sig: int, group: bool) -> str:
    try:
        if group:
            os.killpg(proc.pid, sig)  # Ctrl-C in a terminal: the launcher and the command both get it
        else:
            proc.send_signal(sig)  # the launcher only; it forwards a SIGTERM to the command
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return err


def test_ctrl_c_under_mlflow_run_keeps_the_partial_series(store):
    proc = launch("converge", {"k": "1"}, "interrupt-converge")
    runs = wait_for(proc, store, "interrupt-converge",
                    lambda runs: runs and "total_updates" in runs[0].data.params)  # training has begun
    err = finish(proc, signal.SIGINT, group=True)
    assert proc.returncode != 0
    run = store.get_run(launched_run_id(err))
    assert run.info.run_id == runs[0].info.run_id
    assert run.info.status in ("KILLED", "FAILED"), err  # the launcher marks it FAILED; never left RUNNING
    assert "wall_time_s" in run.data.metrics and "peak_memory_mb" in run.data.metrics, err
    steps, _ = history(store, run.info.run_id, "train_loss_update")
    assert steps == list(range(len(steps))) and len(steps) < 16  # the updates done before Ctrl-C, logged
    assert "gradacc: interrupted; what was measured is logged" in err or \
        "gradacc: terminated; what was measured is logged" in err
    assert "Traceback (most recent call last)" not in err.split("=== Run")[0]  # gradacc's own part is clean


def test_sweep_stopped_under_mlflow_run_resumes(store):
    """The launcher alone is interrupted once one child run has finished; `gradacc sweep` then measures only
    what was not finished. Whenever the signal lands (mid-run, while a finished run is logged, which then ends
    FINISHED, or after the last run, on a loaded machine), the same holds: nothing is left RUNNING, and the resumed
    sweep reuses every FINISHED run and measures the rest, so the test does not depend on timing."""
    ks = "1,2,4"
    proc = launch("main", {"ks": ks, "parts": "update"}, "interrupt-sweep")
    wait_for(proc, store, "interrupt-sweep", lambda runs: any(
        r.info.status == "FINISHED" and r.data.tags.get("gradacc.part") == "update" for r in runs))
    err = finish(proc, signal.SIGINT, group=False)
    updates = [r for r in all_runs(store) if r.data.tags.get("gradacc.part") == "update"]
    finished = {r.data.params["k"]: r.info.run_id for r in updates if r.info.status == "FINISHED"}
    assert finished, err
    assert len(finished) == 3 or proc.returncode != 0, err  # stopped before the end: not a success
    assert all(r.info.status != "RUNNING" for r in all_runs(store)), err

    resumed = run_cli(["sweep", "--smoke", "--threads", "1", "--parts", "update", "--ks", ks,
                       "--experiment", "interrupt-sweep"])
    assert resumed.code == 0, resumed.err
    assert f"{3 - len(finished)} runs measured, {len(finished)} reused" in resumed.err
    after = [r for r in all_runs(store) if r.data.tags.get("gradacc.part") == "update"
             and r.info.status == "FINISHED"]
    assert sorted(r.data.params["k"] for r in after) == ["1", "2", "4"]  # each configuration finished once
    assert {k: run_id for k, run_id in ((r.data.params["k"], r.info.run_id) for r in after)
            if k in finished} == finished  # the finished ones were reused, not measured again
