"""A new sqlite store made beside the command's imports. Creating one costs about 1.3 s (MLflow's sqlalchemy store,
alembic and some 60 schema migrations), on one core while the command imports torch and MLflow on the same core
and the other stays idle. A command that writes starts this module as a child process as soon as its options are
parsed (`start`); the child builds the store in a file of its own beside the database (`.<db>.<pid>.new`, never
the database's own path), and at its first access the command renames it into place under the store's lock
(`adopt`), where it would have created the store itself. So the database appears at the same moment as before,
whole: a command that fails earlier leaves no store behind (`finish` kills the child and removes its file), and
processes that open one new store at once still take turns under the lock. Where the child fails, is slower than
the command, or is not started (a server, PostgreSQL, an existing store), the command makes the store as before."""
from __future__ import annotations

import os
import subprocess
import sys

from gradacc.tracking.store import sqlite_path

CHILD: subprocess.Popen | None = None  # this process's child, while one is started and not finished
DB: str | None = None  # the absolute path of the database the child makes
WAIT_S = 60  # a child that has not made the store by then (it takes seconds) is stopped, and the command makes it


def _tracking_uri() -> str | None:
    """The tracking URI as MLflow will resolve it, without importing MLflow (a second or more): its variable, else
    its default, `sqlite:///mlflow.db` in the working directory (None: MLflow would keep a file store in an
    ./mlruns that holds experiments; nothing to make then). Asked only while MLflow is not imported (`start`)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if os.path.isdir("mlruns") and any(e.name.isdigit() and os.path.lexists(os.path.join(e.path, "meta.yaml"))
                                       for e in os.scandir("mlruns")):  # a file store's experiments, as MLflow checks
        return None
    return "sqlite:///mlflow.db"


def _imports_ahead() -> bool:
    """Whether the command has MLflow still to import: the child's own import of it (a second of its 2.6 s) hides
    behind the command's imports only then. A process that has it already (the bench's stopwatch imports the
    command's modules first; Python callers of `main`; --system-metrics true) is at its store before the child
    is, and would only stop it."""
    return "mlflow" not in sys.modules


def _new_file(db: str, pid: int) -> str:
    folder, name = os.path.split(db)
    return os.path.join(folder, f".{name}.{pid}.new")


def start() -> None:
    """Starts the child where the store in use is a sqlite file that does not exist yet, in a folder that does
    (MLflow would make the folder: then the command does it all, as before). Not in one of several torchrun ranks:
    there every rank would start one, and compete with the ranks for the cores."""
    global CHILD, DB
    if CHILD is not None or not _imports_ahead():
        return
    path = sqlite_path(_tracking_uri() or "")
    if not path or int(os.environ.get("WORLD_SIZE") or 1) > 1:
        return
    db = os.path.abspath(path)
    if os.path.exists(db) or not os.path.isdir(os.path.dirname(db)):
        return
    try:
        CHILD = subprocess.Popen([sys.executable, "-m", __name__, db], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        DB = db
    except OSError:  # no process to spare: the command makes the store itself
        CHILD = None


def adopt(uri: str) -> None:
    """At the command's first access to the store `uri`, under its lock (store_lock): the child's store renamed
    into place where the database is still missing. The command first imports what opening any sqlite store
    imports (half a second), while the child goes on; then a child that has begun making the store is waited
    for (what it has left is less than the whole), and one still importing is stopped: the command makes the
    store itself, as before, in no more time than without a child."""
    if CHILD is None or not sqlite_path(uri) or os.path.abspath(sqlite_path(uri)) != DB:
        return
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (MLflow's sqlalchemy store, alembic)
    new = _new_file(DB, CHILD.pid)
    if CHILD.poll() is None and not os.path.exists(new):
        CHILD.kill()
    try:
        made = CHILD.wait(timeout=WAIT_S) == 0 and os.path.isfile(new)
    except subprocess.TimeoutExpired:
        made = False
    if made and not os.path.exists(DB):
        try:
            os.replace(new, DB)
        except OSError:  # the command makes the store itself, as before, and says what stops it
            pass
    finish()


def finish() -> None:
    """The child stopped if it still runs, and its file removed where it was not renamed into place: at the
    command's end, whatever the end, so that the child never outlives the command nor leaves a file behind."""
    global CHILD, DB
    if CHILD is None:
        return
    if CHILD.poll() is None:
        CHILD.kill()
    CHILD.wait()
    new = _new_file(DB, CHILD.pid)
    for leftover in (new, new + "-journal"):
        if os.path.exists(leftover):
            os.remove(leftover)
    CHILD = DB = None


def _make(db: str) -> int:
    """The child: MLflow imported first (the bulk of the time, and what tells the tracking URI), then the store
    made in its own file; 0 once it is whole, 1 where the URI is not that of `db` or the parent has gone."""
    parent = os.getppid()
    import mlflow
    from mlflow import MlflowClient
    path = sqlite_path(mlflow.get_tracking_uri())
    if not path or os.path.abspath(path) != db or os.getppid() != parent:
        return 1
    new = _new_file(db, os.getpid())
    MlflowClient(tracking_uri=f"sqlite:///{new}").search_experiments(max_results=1)  # opening it makes it
    if os.getppid() != parent:  # the command is gone (killed outright): nobody will rename or remove the file
        os.remove(new)
        return 1
    return 0


if __name__ == "__main__":
    # Out without the interpreter's teardown, which walks every object MLflow's import made (about 0.9 s the
    # command would wait): the store is committed, and nothing else is left to flush.
    os._exit(_make(sys.argv[1]))
