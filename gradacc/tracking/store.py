"""The tracking store's access rules that need no mlflow import: bounded HTTP retries, the lock that serialises
creating a sqlite store, and store errors described in one line."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager

# MLflow retries a failed HTTP request 7 times (backoff factor 2) and waits up to 120 s for each answer: a dead
# server would stall every write for minutes. These defaults, used where the user has not set their own, give
# up after about 10 s on a refused connection and under a minute on a server that hangs.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def bound_http_retries() -> None:
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def describe(err: Exception) -> str:
    """One line for a store error; a refused or timed-out connection as just that, not urllib3's long story."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    cause = re.search(r"\[Errno -?\d+\] [^'\")]+|Read timed out|Connection refused", text)
    if cause and "Max retries exceeded" in text:
        return f"no answer after {os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES')} retries ({cause.group(0)})"
    scheme = re.search(r"unsupported URI '([^']*)'.*Supported URI schemes are: (\[[^]]*\])", text)
    if scheme:  # MLflow words it as a model-registry problem; for gradacc it is the tracking URI that is wrong
        return f"unsupported URI {scheme.group(1)!r}; MLflow knows the schemes {scheme.group(2)}"
    return f"{type(err).__name__}: {text}"


def sqlite_path(uri: str) -> str | None:
    """The database file of a `sqlite:///` store URI (relative to the working directory or absolute)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else path


@contextmanager
def store_lock(uri: str):
    """Processes that open one new sqlite store at once race in its schema migrations and in creating the
    experiment (MLflow's busy timeout does not prevent it): an exclusive lock on `<db>.lock` makes them take
    turns. Other stores (a server, PostgreSQL) serialise this themselves."""
    path = sqlite_path(uri)
    try:
        import fcntl
        handle = os.open(path + ".lock", os.O_CREAT | os.O_RDWR, 0o644) if path else None
    except (ImportError, OSError):  # no fcntl (Windows), or a folder MLflow will report on itself
        handle = None
    if handle is None:
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock
