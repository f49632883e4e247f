"""A password inside the tracking URI (`http://alice:PASSWORD@host`) is never printed or saved: a canary password
is looked for in every line of output and in every file a run, a saved run and an upload write; saved runs are
private (0700 folders, 0600 files); a wrong password in the URI says that the URI's credentials were refused."""
from __future__ import annotations

import secrets
import stat
import sys
from pathlib import Path

import pytest
from mlflow.server import get_app_client

import gradacc.study.run
from tests.support.cifar import write_data_root
from tests.support.e2e import assert_one_error_line, error_lines, isolated_store, run_cli, run_process
from tests.support.server import BasicAuth, MlflowServer

pytestmark = [pytest.mark.slow, pytest.mark.reliability]
ADMIN = ("admin", secrets.token_hex(8))
CANARY = "canary" + secrets.token_hex(8)  # alice's password: it must appear nowhere gradacc writes
MICRO = ["micro", "--k", "2", "--smoke", "--threads", "1"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("auth_server")
    made = MlflowServer(folder, auth=BasicAuth(admin_password=ADMIN[1], database_uri=f"sqlite:///{folder / 'auth.db'}",
                                               default_permission="EDIT"))
    try:
        made.start()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
            mp.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
            get_app_client("basic-auth", tracking_uri=made.uri).create_user("alice", CANARY)
        yield made
    finally:
        made.kill()


def with_password(server, password: str) -> str:
    return server.uri.replace("http://", f"http://alice:{password}@")


def files_holding(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_canary_password_never_printed_or_saved(server, tmp_path, monkeypatch):
    uri, shown = with_password(server, CANARY), with_password(server, "***")
    work = tmp_path / "work"
    work.mkdir()
    data = write_data_root(tmp_path / "data")
    outputs = []
    with isolated_store(work, data):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.delenv(name, raising=False)
        # a run that ends as usual, in a process of its own (MLflow's "View run" lines go to its stdout)
        done = run_process([sys.executable, "-m", "gradacc", *MICRO, "--experiment", "canary"])
        outputs += [done.stdout, done.stderr]
        assert done.returncode == 0, done.stderr
        assert f"runs: {shown}/#/experiments/" in done.stderr

        # the server dies between measurement and logging: the run is saved locally, then uploaded
        real = gradacc.study.run.RUNNERS["micro"]

        def measure_then_die(protocol, ctx, result, advance):
            real(protocol, ctx, result, advance)
            server.kill()
        monkeypatch.setitem(gradacc.study.run.RUNNERS, "micro", measure_then_die)
        lost = run_cli(MICRO + ["--experiment", "canary"])
        outputs += [lost.out, lost.err]
        assert lost.code == 1
        (folder,) = (work / "gradacc-unsent").iterdir()
        line = [line for line in error_lines(lost.err) if line.startswith("gradacc:")]
        assert line == [f"gradacc: error: tracking store {shown} failed (no answer after 3 retries ([Errno 111] "
                        f"Connection refused)); run {folder.name} (FINISHED) is saved in {folder}: upload it "
                        f"with `gradacc upload {folder}`"], lost.err
        for path in [folder, *folder.rglob("*")]:  # private to its owner
            assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
        server.start()
        uploaded = run_cli(["upload", str(work / "gradacc-unsent")])
        outputs += [uploaded.out, uploaded.err]
        assert uploaded.code == 0, uploaded.err
        assert f"files uploaded to {shown}; status FINISHED" in uploaded.err

        # a wrong password in the URI: one line, the URI's credentials named, the password not shown
        monkeypatch.setenv("MLFLOW_TRACKING_URI", with_password(server, CANARY + "x"))
        refused = run_cli(MICRO + ["--experiment", "canary"])
        outputs += [refused.out, refused.err]
        assert refused.code == 1
        assert_one_error_line(refused, "tracking server refused the credentials in the tracking URI (HTTP 401): "
                                       f"check user 'alice' and the password written in {shown}")
    for text in outputs:
        assert CANARY not in text, text
    assert files_holding(tmp_path, CANARY) == []  # the saved run, its .uploaded copy, mlruns, data: nowhere

