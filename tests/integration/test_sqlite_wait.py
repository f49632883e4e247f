"""A sqlite write that finds another writer's lock waits gradacc's busy timeout, not MLflow's 20 s; one that
still times out goes on into a local copy, its reason one line."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from gradacc.core.errors import TrackingError
from gradacc.tracking import store
from gradacc.tracking.experiments import experiment_id
from gradacc.tracking.runs import tracked_run
from gradacc.tracking.store import describe

# Holds the write lock of the sqlite file argv[1] for argv[2] seconds (says "held" once it has it).
HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def hold_lock(db: str, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, db, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_mlflow_sessions_on_a_sqlite_store_wait_gradacc_s_busy_timeout(tracking_store):
    with tracked_run("waits", {"gradacc.part": "micro"}, experiment_id(None)) as run:
        sql_store = run.client._tracking_client.store
        with sql_store.ManagedSessionMaker() as session:  # the session MLflow's own writes use
            busy_ms = session.execute(text("PRAGMA busy_timeout")).scalar()
    assert busy_ms == store.SQLITE_BUSY_TIMEOUT_S * 1000 > 20_000


def test_a_write_past_the_busy_timeout_is_saved_locally_with_a_one_line_reason(tracking_store, tmp_path,
                                                                                monkeypatch):
    """The timeout made short to be reached in a test: the rewritten PRAGMA is the one sqlite applies (MLflow's
    20 s would outlast the lock and the write would succeed)."""
    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT_S", 0.5)
    monkeypatch.setenv("GRADACC_UNSENT_DIR", str(tmp_path / "unsent"))
    with pytest.raises(TrackingError, match="is saved in"):  # a run that would end FINISHED, saved locally
        with tracked_run("locked", {"gradacc.part": "micro"}, experiment_id(None)) as run:
            holder = hold_lock(store.sqlite_path(tracking_store), 3)
            start = time.monotonic()
            run.log_metrics({"loss": ([0, 1], [1.0, 0.5])}, {})
            waited = time.monotonic() - start
            holder.wait()
    assert waited > 0.4 and run.saved is not None  # under MLflow's 20 s the write would have waited 3 s and gone in
    assert run.saved.metrics and run.saved.status == "FINISHED"
    assert run.saved.reason == ("sqlite store stayed locked by another writer past the busy timeout "
                                "(database is locked)")
    assert describe(RuntimeError("(raised as a result of Query-invoked autoflush)\n(sqlite3.OperationalError) "
                                 "database is locked")) == run.saved.reason
