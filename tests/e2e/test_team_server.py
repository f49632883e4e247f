"""Against a team's tracking server (docs/team-setup.md): `mlflow server` on a real PostgreSQL (a cluster of its
own in a temporary folder), proxied artifacts and MLflow's basic authentication. A user's sweep and compare over
HTTP; four writers at once, every metric point kept; a wrong password: one line and no run; a server that hangs,
from the start (one line, nothing measured) or mid-run (the local copy, then `gradacc upload`), in bounded time."""
from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time

import pytest
import torch
from mlflow import MlflowClient
from mlflow.server import get_app_client

import gradacc.study.run
from tests.support.cifar import write_data_root
from tests.support.e2e import (
    all_runs,
    assert_one_error_line,
    error_lines,
    history,
    isolated_store,
    run_cli,
    run_process,
    subprocess_env,
)
from tests.support.postgres import postgres_cluster
from tests.support.server import BasicAuth, HangingServer, MlflowServer

pytestmark = pytest.mark.slow
# MLflow asks for 12 characters at least; fresh ones per session, as a team's would be secrets.
ADMIN = ("admin", secrets.token_urlsafe(12))
ALICE = ("alice", secrets.token_urlsafe(12))
# One torch thread: on a busy 2-core machine, oversubscribed threads make a smoke run ten times slower.
MICRO = ["micro", "--k", "2", "--smoke", "--threads", "1"]
HUNG = "no answer after 3 retries (Read timed out after 10 s)"  # gradacc's HTTP bounds (tracking/store.py)
HANG_BOUND_S = 150  # 4 tries of 10 s and the backoff come to about 46 s; generous for a shared machine


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """The server as docs/team-setup.md runs it, with a user `alice` created by the admin."""
    with postgres_cluster(("mlflow", "mlflow_auth")) as pg:
        server = MlflowServer(tmp_path_factory.mktemp("team_server"), backend_uri=pg.uri("mlflow"),
                              auth=BasicAuth(admin_password=ADMIN[1], database_uri=pg.uri("mlflow_auth"),
                                             auth_cache_ttl_seconds=60))
        try:
            server.start()
            with as_user(*ADMIN):
                get_app_client("basic-auth", tracking_uri=server.uri).create_user(*ALICE)
            yield server
        finally:
            server.kill()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data_root(tmp_path_factory.mktemp("team_data"))


@pytest.fixture(autouse=True)
def keep_thread_count():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # --threads 1 in this process must not slow the tests that follow


@contextlib.contextmanager
def as_user(name: str, password: str):
    """MLflow's clients send these credentials (read at each request) for this block."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_USERNAME", name)
        mp.setenv("MLFLOW_TRACKING_PASSWORD", password)
        yield


def admin_runs(server, experiment: str | None = None) -> list:
    """What the store holds, seen by the admin: the runs of one experiment, or of all."""
    with as_user(*ADMIN):
        client = MlflowClient(server.uri)
        if experiment is None:
            return all_runs(client)
        exp = client.get_experiment_by_name(experiment)
        return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def test_sweep_and_compare_over_http_as_a_user(team, data, tmp_path):
    with isolated_store(tmp_path, data), as_user(*ALICE), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", team.uri)
        swept = run_cli(["sweep", "--ks", "1,2", "--parts", "micro,converge", "--smoke", "--threads", "1",
                         "--experiment", "team-sweep", "--output", "sweep-out"])
        assert swept.code == 0, swept.err
        compared = run_cli(["compare", "--experiment", "team-sweep", "--include-smoke", "true", "--output", "cmp"])
        assert compared.code == 0, compared.err
    assert any((tmp_path / "sweep-out").rglob("table.csv")) and any((tmp_path / "cmp").rglob("table.csv"))
    runs = admin_runs(team, "team-sweep")
    parts = sorted(r.data.tags["gradacc.part"] for r in runs)  # the sweep's own compare, and the second one
    assert parts == ["compare", "compare", "converge", "converge", "micro", "micro", "sweep"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    with as_user(*ADMIN):
        client = MlflowClient(team.uri)
        for run in runs:
            # proxied: the files went through the server into its --artifacts-destination, not to ./mlruns
            assert run.info.artifact_uri.startswith("mlflow-artifacts:")
            if run.data.tags["gradacc.part"] == "converge":
                assert "series" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert any((team.folder / "artifacts").rglob("train_loss_update.csv"))
    assert not (tmp_path / "mlruns").exists()


# One process of four: it waits for the others so that all four find the experiment missing and create it at
# once, then logs POINTS values of one series in calls of 500, as a run's writer batches them.
WRITER = """
import pathlib, sys, time
from gradacc.names import PART
from gradacc.tracking.experiments import experiment_id
from gradacc.tracking.runs import tracked_run
index, points, folder = int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3])
(folder / f"ready-{index}").touch()
deadline = time.monotonic() + 120
while len(list(folder.glob("ready-*"))) < 4 and time.monotonic() < deadline:
    time.sleep(0.02)
with tracked_run(f"writer-{index}", {PART: "writer"}, experiment_id("team-writers")) as run:
    for first in range(0, points, 500):
        steps = list(range(first, min(first + 500, points)))
        run.log_metrics({"value": (steps, [index * 1e6 + s for s in steps])}, {})
print(run.run_id)
"""
POINTS = 3000


def test_four_writers_at_once_keep_every_point(team, tmp_path):
    env = subprocess_env(MLFLOW_TRACKING_URI=team.uri, MLFLOW_TRACKING_USERNAME=ALICE[0],
                         MLFLOW_TRACKING_PASSWORD=ALICE[1])
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(i), str(POINTS), str(tmp_path)], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    try:
        done = [proc.communicate(timeout=240) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (out, err) in zip(procs, done):
        assert proc.returncode == 0, err
    runs = {r.info.run_name: r for r in admin_runs(team, "team-writers")}
    assert sorted(runs) == [f"writer-{i}" for i in range(4)]
    with as_user(*ADMIN):
        client = MlflowClient(team.uri)
        for i in range(4):
            run = runs[f"writer-{i}"]
            assert run.info.status == "FINISHED"
            steps, values = history(client, run.info.run_id, "value")
            assert steps == list(range(POINTS)), f"writer-{i}: {len(steps)} points of {POINTS}"
            assert values == [i * 1e6 + s for s in range(POINTS)]


def test_wrong_password_is_one_line_and_no_run(team, data, tmp_path):
    before = len(admin_runs(team))
    with isolated_store(tmp_path, data):
        done = run_process([sys.executable, "-m", "gradacc", *MICRO, "--experiment", "team-denied"],
                           MLFLOW_TRACKING_URI=team.uri, MLFLOW_TRACKING_USERNAME=ALICE[0],
                           MLFLOW_TRACKING_PASSWORD=ALICE[1] + "-wrong")
    assert done.returncode == 1
    line = assert_one_error_line(done)
    assert line == (f"gradacc: error: tracking store {team.uri} is not usable: tracking server refused the "
                    "credentials (HTTP 401): check MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD")
    assert len(admin_runs(team)) == before and admin_runs(team, "team-denied") == []
    assert not (tmp_path / "gradacc-unsent").exists()


def test_server_that_hangs_from_the_start(data, tmp_path):
    """Connections accepted, never answered: the run cannot begin (the server gives its id), so nothing is measured
    and nothing is saved; one line within the bounded retries."""
    with HangingServer() as hung, isolated_store(tmp_path, data):
        start = time.monotonic()
        done = run_process([sys.executable, "-m", "gradacc", *MICRO], MLFLOW_TRACKING_URI=hung.uri)
        elapsed = time.monotonic() - start
        assert hung.sockets, "the client never reached the hanging server"
    assert done.returncode == 1
    assert assert_one_error_line(done) == f"gradacc: error: tracking store {hung.uri} is not usable: {HUNG}"
    assert elapsed < HANG_BOUND_S, f"a hanging server took {elapsed:.0f} s to give up on"
    assert not (tmp_path / "gradacc-unsent").exists()


def test_server_that_hangs_mid_run_then_upload(team, data, tmp_path, monkeypatch):
    """The server (behind a relay that stops answering) hangs between measurement and logging: the run is saved
    locally within the bounded retries, exit 1; `gradacc upload` then completes it in the real server."""
    real, hung_at = gradacc.study.run.RUNNERS["micro"], []
    unsent = tmp_path / "unsent"
    with HangingServer(upstream=team.port) as relay:
        def measure_then_hang(protocol, ctx, result, advance):
            real(protocol, ctx, result, advance)
            relay.hang()
            hung_at.append(time.monotonic())

        monkeypatch.setitem(gradacc.study.run.RUNNERS, "micro", measure_then_hang)
        with isolated_store(tmp_path, data), as_user(*ALICE), pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", relay.uri)
            mp.setenv("GRADACC_UNSENT_DIR", str(unsent))
            result = run_cli(MICRO + ["--experiment", "team-hangs"])
            elapsed = time.monotonic() - hung_at[0]
            assert result.code == 1 and "Traceback" not in result.err
            (folder,) = unsent.iterdir()
            lines = [line for line in error_lines(result.err) if line.startswith("gradacc:")]
            assert lines == [f"gradacc: error: tracking store {relay.uri} failed ({HUNG}); run {folder.name} "
                             f"(FINISHED) is saved in {folder}: upload it with `gradacc upload {folder}`"]
            assert elapsed < HANG_BOUND_S, f"a server that hung mid-run took {elapsed:.0f} s to give up on"
            saved = json.loads((folder / "run.json").read_text())
            assert saved["status"] == "FINISHED"
            uploaded = run_cli(["upload", str(folder), "--tracking-uri", team.uri])  # the server, not the relay
            assert uploaded.code == 0, uploaded.err
    with as_user(*ADMIN):
        client = MlflowClient(team.uri)
        run = client.get_run(folder.name)
        assert run.info.status == "FINISHED" and run.data.params["k"] == "2"  # params: logged before the hang
        for key in {point[0] for point in saved["metrics"]}:  # every saved point is in the store, once
            points = sorted((p[3], p[1]) for p in saved["metrics"] if p[0] == key)
            assert list(zip(*history(client, run.info.run_id, key))) == points, key
        assert {"series", "environment.txt"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
