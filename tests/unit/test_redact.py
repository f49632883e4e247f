"""Passwords inside URIs: redacted wherever gradacc shows or saves a URI; a saved run's URI goes back to the store it
came from; saved runs are private; a 401 with credentials in the URI says so."""
from __future__ import annotations

import stat

import pytest

from gradacc.tracking.offline import SavedRun
from gradacc.tracking.redact import redact, restored, uri_user
from gradacc.tracking.store import describe

pytestmark = pytest.mark.reliability
REST_401 = ("API request to endpoint /api/2.0/mlflow/experiments/get-by-name failed with error code 401 != 200. "
            "Response body: 'You are not authenticated.'")


@pytest.mark.parametrize("text, shown", [
    ("http://alice:s3cr:et@127.0.0.1:5000/x", "http://alice:***@127.0.0.1:5000/x"),
    ("store http://a:p@h:1 failed (API request to http://a:p@h:1/api/2.0 failed)",
     "store http://a:***@h:1 failed (API request to http://a:***@h:1/api/2.0 failed)"),
    ("postgresql+psycopg2://mlflow:pw@127.0.0.1:5432/mlflow", "postgresql+psycopg2://mlflow:***@127.0.0.1:5432/mlflow"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("http://bob@host", "http://bob@host"),  # a user alone is no secret
    ("sqlite:///a:b@c.db", "sqlite:///a:b@c.db"),  # a path, not credentials
])
def test_redact(text, shown):
    assert redact(text) == shown


def test_saved_uri_goes_back_to_its_store():
    saved = "http://alice:***@h:1/p"
    assert restored(saved, "http://alice:pw@h:1/p") == "http://alice:pw@h:1/p"  # the same store: its password
    assert restored(saved, "http://bob:pw@other:2") == "http://h:1/p"  # another: credentials from the variables
    assert restored("http://h:1", None) == "http://h:1"
    assert uri_user("http://alice:pw@h") == "alice" and uri_user("http://alice@h") is None


def test_401_with_credentials_in_the_uri(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")  # requests sends the URI's over these
    line = describe(Exception(REST_401), "http://alice:CANARY@h:5000")
    assert line == ("tracking server refused the credentials in the tracking URI (HTTP 401): check user 'alice' "
                    "and the password written in http://alice:***@h:5000")


def test_store_error_text_is_redacted():
    err = Exception("API request to http://alice:CANARY@h:1/api/2.0/mlflow/runs/create failed with exception boom")
    assert "CANARY" not in describe(err, "http://alice:CANARY@h:1")


def test_saved_runs_are_private(tmp_path):
    art = tmp_path / "made"
    (art / "series").mkdir(parents=True)
    (art / "series" / "a.csv").write_text("step,value\n")
    saved = SavedRun.create("r1", "0", "http://a:***@h", "why", root=tmp_path / "unsent")
    saved.add_artifacts(art)
    saved.add_tags({"x": "y"})
    assert stat.S_IMODE((tmp_path / "unsent").stat().st_mode) == 0o700  # made here: private too
    for path in [saved.folder, *saved.folder.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
