"""Metrics written while a run trains: a part hands finished points (key, value, wall-clock ms, step) to a LiveWriter,
whose own thread writes them to the run, so the UI shows the epochs done so far and a run killed outright keeps
them. The training thread only appends to a queue (microseconds); the store's latency stays on the writer thread.

A thread of gradacc's rather than MLflow's `log_batch(..., synchronous=False)`: the run's writes must keep going
through TrackedRun (its fall-back into a local copy when the store stops answering), and the end of the run must
know which points were written, so that it does not write them a second time (MLflow would keep both)."""
from __future__ import annotations

import queue
import threading

from mlflow.entities import Metric

from gradacc.tracking.runs import TrackedRun

Point = tuple[str, float, int, int]  # key, value, timestamp in ms since the epoch, step
_DONE = None


class LiveWriter:
    """Call it with a list of points (one call: one batch, written whole); `close()` waits until all are written
    and re-raises the first error the writer met (the run's own end then says what was lost)."""

    def __init__(self, run: TrackedRun):
        self.run = run
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._write_all, name=f"gradacc-live-{run.run_id[:8]}", daemon=True)
        self._thread.start()

    def __call__(self, points: list[Point]) -> None:
        if points:
            self._queue.put(points)

    def _write_all(self) -> None:
        while (points := self._queue.get()) is not _DONE:
            if self.error is None:
                try:
                    self.run.log_points([Metric(key, float(value), int(ms), int(step))
                                         for key, value, ms, step in points])
                except BaseException as err:  # noqa: BLE001 - handed to the training thread at close()
                    self.error = err

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._queue.put(_DONE)
        self._thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error
