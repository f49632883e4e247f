"""tracking/new_store.py: a new sqlite store made by a child process while the command imports, renamed into place
at the command's first access; a command that ends before that access leaves nothing behind, and the child never
outlives it."""
from __future__ import annotations

import os
import sys

import pytest

from gradacc.tracking import new_store
from gradacc.tracking.experiments import resolve_experiments
from gradacc.tracking.store import sqlite_path
from tests.support.e2e import isolated_store, run_cli


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A folder with no store yet, MLFLOW_TRACKING_URI a new sqlite file in it, cwd there; this process taken
    for a command that has MLflow still to import (as `python -m gradacc` has when its options are parsed)."""
    monkeypatch.setattr(new_store, "_imports_ahead", lambda: True)
    with isolated_store(tmp_path):
        yield tmp_path
        new_store.finish()  # a failed assertion leaves no child running into the next test


def test_the_commands_store_is_the_one_its_child_made(fresh):
    new_store.start()
    child = new_store.CHILD
    assert child is not None and child.wait(timeout=120) == 0
    made = fresh / f".mlflow.db.{child.pid}.new"
    assert made.is_file() and not (fresh / "mlflow.db").exists()  # made aside: the store does not exist yet
    with open(made, "rb") as held:  # held open: were it removed, a new file could not take its inode
        (exp_id, name), = resolve_experiments(create=True)  # the command's first access
        # the child's file, renamed: not a store made again
        assert os.path.samestat(os.fstat(held.fileno()), (fresh / "mlflow.db").stat())
    assert (exp_id, name) == ("0", "Default")
    assert new_store.CHILD is None
    assert sorted(p.name for p in fresh.iterdir()) == ["mlflow.db", "mlflow.db.lock"]


@pytest.mark.parametrize("when", ["starting", "done"])
def test_a_command_that_ends_before_its_first_access_leaves_nothing(fresh, when):
    new_store.start()
    child = new_store.CHILD
    assert child is not None
    if when == "done":
        assert child.wait(timeout=120) == 0 and any(fresh.iterdir())
    new_store.finish()  # cli/__init__.py main, whatever the end
    assert child.poll() is not None and new_store.CHILD is None
    assert list(fresh.iterdir()) == []


def test_an_existing_store_a_server_or_mlflow_imported_starts_no_child(fresh, monkeypatch):
    (fresh / "mlflow.db").touch()
    new_store.start()
    assert new_store.CHILD is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    new_store.start()
    assert new_store.CHILD is None
    monkeypatch.undo()  # this process as it is, MLflow imported: the child would only be stopped
    (fresh / "mlflow.db").unlink()
    new_store.start()
    assert new_store.CHILD is None


@pytest.mark.parametrize("argv", [["converge", "--help"], ["converge", "--k", "0"], ["sweep", "--ks", "x"]])
def test_help_and_bad_input_start_no_child(fresh, monkeypatch, argv):
    started = []
    monkeypatch.setattr(new_store, "start", lambda: started.append(True))
    result = run_cli(argv)
    assert result.code == (0 if "--help" in argv else 2)
    assert started == [] and list(fresh.iterdir()) == []


@pytest.mark.parametrize("mlruns", ["none", "artifacts only", "a file store"])
def test_the_uri_guessed_without_mlflow_is_mlflows(fresh, monkeypatch, mlruns):
    """The default store as MLflow resolves it (no MLFLOW_TRACKING_URI): ./mlflow.db, unless ./mlruns holds a file
    store's experiments (a sqlite store's artifacts in ./mlruns/0 do not count)."""
    import mlflow
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    if mlruns != "none":
        (fresh / "mlruns" / "0").mkdir(parents=True)
    if mlruns == "a file store":
        (fresh / "mlruns" / "0" / "meta.yaml").write_text("name: Default\n")
    theirs = sqlite_path(mlflow.get_tracking_uri())
    monkeypatch.delitem(sys.modules, "mlflow")  # as the command has it when its options are parsed
    ours = sqlite_path(new_store._tracking_uri() or "")
    expected = None if mlruns == "a file store" else str(fresh / "mlflow.db")
    assert (ours and os.path.abspath(ours)) == theirs == expected
