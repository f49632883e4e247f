"""Runs left RUNNING by a process that no longer exists (SIGKILL, out of memory): every run says who writes it
(gradacc.host, gradacc.pid); a sweep that resumes their study ends them KILLED with gradacc.failure, leaves runs
of live processes and other hosts alone, and draws the plot a reused run never got; compare names them."""
from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from gradacc.names import FAILURE, HOST, PID, STUDY
from tests.support.e2e import all_runs, run_cli, smoke_store, subprocess_env

pytestmark = pytest.mark.reliability
UPDATE = ["--smoke", "--threads", "1", "--experiment", "orphans"]


@pytest.fixture()
def store(tmp_path):
    with smoke_store(tmp_path) as client:
        yield client


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def plot_of(client, run_id: str, part: str) -> Path:
    return Path(urlparse(client.get_run(run_id).info.artifact_uri).path) / "plots" / f"{part}.png"


def test_resumed_sweep_ends_orphans_and_draws_a_missing_plot(store):
    assert run_cli(["update", "--k", "1", *UPDATE]).code == 0
    (finished,) = all_runs(store)
    assert finished.data.tags[HOST] == platform.node() and finished.data.tags[PID] == str(os.getpid())
    plot_of(store, finished.info.run_id, "update").unlink()  # its sweep was killed before it drew the plots
    exp_id = finished.info.experiment_id
    store.set_tag(finished.info.run_id, f"{STUDY}.r2", "1")
    study = {f"{STUDY}.r2": "1"}
    orphan = store.create_run(exp_id, run_name="update-k2-smoke", tags={**study, HOST: platform.node(),
                                                                          PID: str(dead_pid())}).info.run_id
    alive = store.create_run(exp_id, run_name="alive", tags={**study, HOST: platform.node(),
                                                             PID: str(os.getpid())}).info.run_id
    elsewhere = store.create_run(exp_id, run_name="elsewhere", tags={**study, HOST: "another-host",
                                                                     PID: str(dead_pid())}).info.run_id
    untagged = store.create_run(exp_id, run_name="older", tags=study).info.run_id
    try:
        compared = run_cli(["compare", "--study", "r2", "--experiment", "orphans"])
        assert ("compare: leaving out 1 run(s) left RUNNING by a process that no longer exists: update-k2-smoke "
                f"({orphan})") in compared.err

        resumed = run_cli(["sweep", "--parts", "update", "--ks", "1", "--study", "r2", *UPDATE])
        assert resumed.code == 0, resumed.err
        assert ("sweep: study r2: ended KILLED 1 run(s) left RUNNING by a process that no longer exists: "
                "update-k2-smoke") in resumed.err
        assert "0 runs measured, 1 reused" in resumed.err
        ended = store.get_run(orphan)
        assert ended.info.status == "KILLED"
        assert ended.data.tags[FAILURE].startswith(f"left RUNNING by process {ended.data.tags[PID]} on "
                                                   f"{platform.node()}, which no longer exists")
        assert [store.get_run(r).info.status for r in (alive, elsewhere, untagged)] == ["RUNNING"] * 3
        assert plot_of(store, finished.info.run_id, "update").is_file()  # drawn from its logged series
        assert f"update-k1-smoke seed 42: drew the plot run {finished.info.run_id} lacked" in resumed.err
    finally:
        for run_id in (alive, elsewhere, untagged):
            store.set_terminated(run_id, "KILLED")


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume(store):
    """The probe: a sweep SIGKILLed while its second run trains; the same sweep again leaves nothing RUNNING, and
    the first run, reused, gets the plot its sweep never drew."""
    args = ["sweep", "--parts", "update", "--ks", "1,2", "--study", "r3", *UPDATE]
    proc = subprocess.Popen([sys.executable, "-m", "gradacc", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            training = [r for r in all_runs(store) if r.data.params.get("k") == "2" and r.info.status == "RUNNING"
                        and "total_updates" in r.data.params]
            if training:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = [r for r in all_runs(store) if r.info.status == "RUNNING"]
    assert {r.data.tags.get("gradacc.part") for r in left} >= {"sweep"}  # the parent at least, maybe k=2
    (first,) = [r for r in all_runs(store) if r.data.params.get("k") == "1" and r.info.status == "FINISHED"]
    assert not plot_of(store, first.info.run_id, "update").exists()  # plots are drawn at a sweep's end

    resumed = run_cli(args)
    assert resumed.code == 0, resumed.err
    assert f"ended KILLED {len(left)} run(s) left RUNNING" in resumed.err
    assert all(r.info.status != "RUNNING" for r in all_runs(store))
    for run in left:
        assert "which no longer exists" in store.get_run(run.info.run_id).data.tags[FAILURE]
    assert plot_of(store, first.info.run_id, "update").is_file()
    updates = [r for r in all_runs(store) if r.data.tags.get("gradacc.part") == "update"
               and r.info.status == "FINISHED"]
    assert sorted(r.data.params["k"] for r in updates) == ["1", "2"]
