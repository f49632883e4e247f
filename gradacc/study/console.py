"""What a run says on the terminal: one-line messages and a progress bar, both on stderr (stdout carries tables)."""
from __future__ import annotations

import contextlib
import sys
import time

BAR_WIDTH = 30
REDRAW_S = 0.2  # at most five redraws a second: a K=1 CPU update is shorter than a redraw on a slow terminal


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress_bar(length: int, label: str):
    """A one-line bar with count and time left, on a terminal only; yields a callback `advance(n=1)`."""
    if not sys.stderr.isatty():
        yield lambda n=1: None
        return
    start = last = time.monotonic()
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last < REDRAW_S and done < length:
            return
        last = now
        share = done / length if length else 1.0
        left_s = int((now - start) / done * (length - done)) if done else 0
        sys.stderr.write(f"\r{label}  [{'#' * int(BAR_WIDTH * share):<{BAR_WIDTH}}]  {share:4.0%}  {done}/{length}"
                         f"  {left_s // 60}:{left_s % 60:02d} left ")
        sys.stderr.flush()

    try:
        yield advance
    finally:
        sys.stderr.write("\n")
        sys.stderr.flush()
