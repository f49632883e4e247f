"""The folders the study commands write their tables and plots to: checked before any work (a sweep measures for
hours before its comparison is written), and a write that fails said in one line."""
from __future__ import annotations

import os
from pathlib import Path


def cannot_write(what: str, folder: Path, err: OSError) -> str:
    """'cannot write the comparison to out: Permission denied (out/table.md)'."""
    return (f"cannot write {what} to {folder}: {err.strerror or type(err).__name__}"
            f"{' (' + str(err.filename) + ')' if err.filename else ''}")


def check_writable(folder: Path, what: str, error: type[Exception]) -> None:
    """Creates the folder and writes a probe file in it; raises `error` with the one-line reason if it cannot."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # one probe per process: the ranks of a spread sweep check the same folder at once, and one rank's unlink
        # of a shared probe made another's fail (No such file or directory)
        probe = folder / f".gradacc-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise error(cannot_write(what, folder, err)) from None
