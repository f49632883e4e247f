"""Signals held while a complete measurement is being written: a Ctrl-C or SIGTERM that arrives once a run has
measured everything waits until its metrics, files and description are logged and the run has ended FINISHED,
then takes effect (the command stops, exit 130 / 143). The wait is bounded by the store's own bounds: HTTP
retries (tracking/store.py, under a minute with no server) and sqlite's busy timeout; SIGKILL still ends it."""
from __future__ import annotations

import contextlib
import signal
import threading

HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held():
    """SIGINT and SIGTERM that arrive in the block are held and the first is delivered after it (a later one is
    dropped, as the CLI drops a second signal). Python handles signals in the main thread only: elsewhere, as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum, _frame):
        if not held:
            held.append(signum)

    previous = {sig: signal.getsignal(sig) for sig in HELD}
    for sig in HELD:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    if held:  # the block ended normally: now the signal does what it would have done
        signal.raise_signal(held[0])
