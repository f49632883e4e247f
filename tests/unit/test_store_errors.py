"""tracking/store.py's one-line wording of a server that refuses the credentials or the permission, or hangs."""
from __future__ import annotations

import pytest

from gradacc.tracking.store import describe

# As MLflow's REST client words them (mlflow/utils/rest_utils.py), and requests for proxied artifacts.
REST_401 = ("API request to endpoint /api/2.0/mlflow/experiments/get-by-name failed with error code 401 != 200. "
            "Response body: 'You are not authenticated. Please see https://www.mlflow.org/docs/latest/auth/'")
REST_403 = ("API request to endpoint /api/2.0/mlflow/runs/create failed with error code 403 != 200. "
            "Response body: 'Permission denied'")
ARTIFACT_401 = "401 Client Error: UNAUTHORIZED for url: http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/x"
HUNG = ("API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded with url: /api/2.0/mlflow/runs/"
        "log-batch (Caused by ReadTimeoutError(\"HTTPConnectionPool(host='127.0.0.1', port=5000): Read timed out. "
        "(read timeout=10)\"))")


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch, tmp_path):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def test_refused_credentials(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    want = ("tracking server refused the credentials (HTTP 401): check MLFLOW_TRACKING_USERNAME / "
            "MLFLOW_TRACKING_PASSWORD")
    assert describe(Exception(REST_401)) == want
    assert describe(Exception(ARTIFACT_401)) == want


def test_no_credentials_given_or_from_the_credentials_file(tmp_path):
    assert describe(Exception(REST_401)) == ("tracking server asks for credentials (HTTP 401): set "
                                             "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD")
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text("[mlflow]\nmlflow_tracking_username = bob\n")
    assert describe(Exception(REST_401)).startswith("tracking server refused the credentials (HTTP 401)")
    assert describe(Exception(REST_403)).startswith("tracking server denied user 'bob' permission "
                                                    "(HTTP 403 on /api/2.0/mlflow/runs/create): ")


def test_hanging_server():
    assert describe(Exception(HUNG)) == "no answer after 3 retries (Read timed out after 10 s)"
