"""The printed links lead to this store's UI: a server's own address; for a local store the `mlflow ui` command and
the run's path, or whole links to $GRADACC_UI_URL; never a guessed port."""
from __future__ import annotations

import pytest

import gradacc.tracking.runs as runs


@pytest.fixture()
def uri(monkeypatch):
    monkeypatch.delenv(runs.UI_ENV, raising=False)
    return lambda value: monkeypatch.setattr(runs.mlflow, "get_tracking_uri", lambda: value)


def printed(capsys) -> str:
    runs.print_link("7", "abc")
    return capsys.readouterr().err.strip()


def test_a_server_links_to_itself_with_no_password(uri, capsys):
    uri("https://user:secret@mlflow.example.org:8443/")
    line = printed(capsys)
    assert line.startswith("runs: https://user:***@mlflow.example.org:8443/#/experiments/7/runs  (this run: ")
    assert line.endswith("https://user:***@mlflow.example.org:8443/#/experiments/7/runs/abc)")
    assert "secret" not in line


def test_a_local_store_says_how_to_open_its_ui(uri, capsys):
    uri("sqlite:///mlflow.db")
    line = printed(capsys)
    assert line.startswith("runs: /#/experiments/7/runs/abc in this store's UI")
    assert "`mlflow ui --backend-store-uri sqlite:///mlflow.db`" in line and "127.0.0.1" not in line


def test_the_ui_address_of_a_local_store_can_be_set(uri, capsys, monkeypatch):
    uri("sqlite:///mlflow.db")
    monkeypatch.setenv(runs.UI_ENV, "http://127.0.0.1:5123/")
    assert printed(capsys) == ("runs: http://127.0.0.1:5123/#/experiments/7/runs  "
                               "(this run: http://127.0.0.1:5123/#/experiments/7/runs/abc)")
