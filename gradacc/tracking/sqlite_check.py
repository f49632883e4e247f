"""A sqlite store checked before MLflow opens it: MLflow creates its tables in any sqlite file it is given (a file
that is not its store comes out altered, then fails), and on a read-only file or folder its first write fails deep
in SQLAlchemy with a 90-line traceback. Both are refused here in one line, the file left untouched."""
from __future__ import annotations

import os
import sqlite3

from gradacc.core.errors import TrackingError

HEADER = b"SQLite format 3\x00"
MLFLOW_TABLES = {"alembic_version", "experiments", "runs"}  # what every MLflow sqlite store holds


def check_sqlite_store(uri: str, path: str, writes: bool) -> None:
    """Refuses `path` (the store of `uri`) when it is not an MLflow store, or when it cannot be written and the
    command `writes`. A missing or empty file is a new store: MLflow makes it."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(HEADER))
    except OSError as err:
        raise TrackingError(f"tracking store {uri} cannot be read: {err.strerror or err}") from None
    if header != HEADER:
        raise TrackingError(f"tracking store {uri}: {path} is not a sqlite database; give the path of an MLflow "
                            "sqlite store, or of a new file") from None
    tables = _tables(uri, path)
    if tables and not MLFLOW_TABLES <= tables:
        listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise TrackingError(f"tracking store {uri}: {path} is a sqlite database but not an MLflow store (its tables: "
                            f"{listed}); MLflow would add its own tables to it, so it is left untouched")
    if writes:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.access(path, os.W_OK) or not os.access(folder, os.W_OK | os.X_OK):
            what = path if not os.access(path, os.W_OK) else f"its folder {folder}"
            raise TrackingError(f"tracking store {uri} is read-only: {what} cannot be written (sqlite also writes a "
                                "journal beside the database); copy the store somewhere writable (load_runs can "
                                "read it where it is)")


def _tables(uri: str, path: str) -> set[str]:
    """The tables of the database, read without writing anything (a read-only connection)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as err:
        raise TrackingError(f"tracking store {uri}: {path} cannot be read as a sqlite database ({err})") from None
