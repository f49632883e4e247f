"""The tracking store's access rules that need no mlflow import: bounded HTTP retries, the lock that serialises
creating a sqlite store, how long a sqlite write waits for another writer, and store errors described in one
line."""
from __future__ import annotations

import configparser
import os
import re
from contextlib import contextmanager

from filelock import FileLock

from gradacc.core.errors import TrackingError
from gradacc.tracking.redact import redact, uri_user

# MLflow retries a failed HTTP request 7 times (backoff factor 2) and waits up to 120 s for each answer: a dead
# server would stall every write for minutes. These defaults, used where the user has not set their own, give
# up after about 10 s on a refused connection and under a minute on a server that hangs.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def bound_http_retries() -> None:
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


# MLflow 3.17 starts every sqlite session with `PRAGMA busy_timeout = 20000` (mlflow/store/db/utils.py) and has no
# setting for it: a write that finds the file locked by another writer fails after 20 s. The processes of a spread
# sweep write one sqlite file at once, and on a loaded machine one of them held the lock past that (the failed
# write's run then went on into a local copy, and MLflow logged a traceback). Writes hold the lock for
# milliseconds, so waiting longer costs nothing unless something is wrong; the PRAGMA is rewritten to this.
SQLITE_BUSY_TIMEOUT_S = 120
BUSY_PRAGMA = re.compile(r"\s*PRAGMA busy_timeout\s*=\s*\d+\s*;?\s*$", re.IGNORECASE)


def _longer_busy_timeout(conn, cursor, statement, parameters, context, executemany):
    if conn.dialect.name == "sqlite" and BUSY_PRAGMA.match(statement):
        statement = f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}"
    return statement, parameters


def wait_on_sqlite_locks() -> None:
    """Makes this process's sqlite writes wait up to SQLITE_BUSY_TIMEOUT_S for another writer's lock (every
    SQLAlchemy engine, those already made too). SQLAlchemy is imported only here: a server store never needs it."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    if not event.contains(Engine, "before_cursor_execute", _longer_busy_timeout):
        event.listen(Engine, "before_cursor_execute", _longer_busy_timeout, retval=True)


# MLflow's wording of a refused request: "API request to endpoint /api/2.0/... failed with error code 401 != 200"
# (REST calls), or requests' "401 Client Error: ... for url: ..." (proxied artifact transfers).
REFUSED = re.compile(r"endpoint (\S+) failed with error code (40[13]) != 200|^(40[13]) Client Error")
CREDENTIALS = "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"


def describe(err: Exception, uri: str | None = None) -> str:
    """One line for a store error of the store at `uri` (default $MLFLOW_TRACKING_URI); a refused or timed-out
    connection as just that, not urllib3's long story; a server that refuses the credentials or the permission
    (basic authentication) as what to check. A password inside a URI is never in the line (redact)."""
    return redact(_described(err, uri or os.environ.get("MLFLOW_TRACKING_URI")))


def _described(err: Exception, uri: str | None) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "database is locked" in str(err):  # its first line is often SQLAlchemy's note on autoflush
        return "sqlite store stayed locked by another writer past the busy timeout (database is locked)"
    if "readonly database" in str(err):  # its first line is SQLAlchemy's, the cause is further down
        return ("sqlite store is read-only (attempt to write a readonly database): the file or its folder cannot be "
                "written")
    cause = re.search(r"\[Errno -?\d+\] [^'\")]+|Read timed out|Connection refused", text)
    if cause and "Max retries exceeded" in text:
        hung = cause.group(0) == "Read timed out"  # connected, then no answer: say how long each try waited
        waited = f" after {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT')} s" if hung else ""
        return f"no answer after {os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES')} retries ({cause.group(0)}{waited})"
    refused = REFUSED.search(text)
    if refused:
        return _refusal(refused.group(2) or refused.group(3), refused.group(1), uri)
    scheme = re.search(r"unsupported URI '([^']*)'.*Supported URI schemes are: (\[[^]]*\])", text)
    if scheme:  # MLflow words it as a model-registry problem; for gradacc it is the tracking URI that is wrong
        return f"unsupported URI {scheme.group(1)!r}; MLflow knows the schemes {scheme.group(2)}"
    return f"{type(err).__name__}: {text}"


def _given_user() -> str | None:
    """The user MLflow's client sends: $MLFLOW_TRACKING_USERNAME, else ~/.mlflow/credentials' (its other source)."""
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        return os.environ["MLFLOW_TRACKING_USERNAME"]
    config = configparser.ConfigParser()
    try:
        config.read(os.path.expanduser("~/.mlflow/credentials"))
    except (configparser.Error, UnicodeDecodeError):
        return None
    return config.get("mlflow", "mlflow_tracking_username", fallback=None)


def _refusal(status: str, endpoint: str | None, uri: str | None = None) -> str:
    in_uri = uri_user(uri)
    if status == "401" and in_uri:  # requests sends a URI's user and password over MLflow's variables
        return (f"tracking server refused the credentials in the tracking URI (HTTP 401): check user {in_uri!r} "
                f"and the password written in {redact(uri)}")
    user = in_uri or _given_user()
    if status == "401" and not user:
        return f"tracking server asks for credentials (HTTP 401): set {CREDENTIALS}"
    if status == "401":
        return f"tracking server refused the credentials (HTTP 401): check {CREDENTIALS}"
    where = f" on {endpoint}" if endpoint else ""
    # Under MLflow's default_permission (READ) a user writes only to experiments it created or was granted
    return (f"tracking server denied user {user!r} permission (HTTP 403{where}): a user writes to experiments it "
            "created or was granted EDIT on by the server's admin (--experiment chooses another)")


def sqlite_path(uri: str) -> str | None:
    """The database file of a `sqlite:///` store URI (relative to the working directory or absolute)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else path


def missing_local_store() -> str | None:
    """The database file of the sqlite store in use when it does not exist yet (a command that only reads would
    create it, 1 MB and a lock file, in a folder where nothing was measured); None otherwise."""
    import mlflow  # the tracking URI as MLflow resolves it (its environment variable, its default)
    path = sqlite_path(mlflow.get_tracking_uri())
    return path if path and not os.path.exists(path) else None


@contextmanager
def store_lock(uri: str):
    """Processes that open one new sqlite store at once race in its schema migrations and in creating the
    experiment (MLflow's busy timeout does not prevent it): an exclusive lock on `<db>.lock` makes them take
    turns. Other stores (a server, PostgreSQL) migrate once, and a lost race to create the experiment is taken
    as finding it (tracking/experiments.py). Every process that opens a store comes here first: for a sqlite
    one, its later writes are also made to wait longer for each other (wait_on_sqlite_locks)."""
    path = sqlite_path(uri)
    if not path:
        yield
        return
    wait_on_sqlite_locks()
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)  # MLflow makes a new store's folder too
        lock = FileLock(path + ".lock")  # flock on POSIX, msvcrt on Windows
        lock.acquire()
    except OSError as err:
        if not os.path.exists(path):  # MLflow would retry creating it for two minutes before it says so
            where = f" ({err.filename})" if err.filename and str(err.filename) != path + ".lock" else ""
            raise TrackingError(f"tracking store {uri} is not usable: cannot create {path}: "
                                f"{err.strerror or type(err).__name__}{where}") from None
        yield  # an existing store in a folder this process cannot write: reading may still work
        return
    try:
        yield
    finally:
        lock.release()
