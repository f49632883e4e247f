"""Synchronised timers (CUDA events on a GPU, perf_counter on a CPU) and the middle-window mean."""
from __future__ import annotations

import time

import numpy as np
import torch


def _mark(cuda: bool):
    """A point in time: a CUDA event recorded on the current stream, else perf_counter."""
    if cuda:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


def _span_s(cuda: bool, start, end) -> float:
    return start.elapsed_time(end) / 1000.0 if cuda else end - start


class Timer:
    """Context manager that records the duration of each `with` block in seconds.

    On CUDA the device is synchronised before the block starts (no earlier work leaks in) and after it ends;
    the duration comes from CUDA events and is read only in `seconds()`, after the measurements."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._spans: list = []

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
        self._start = _mark(self.cuda)
        return self

    def __exit__(self, *exc):
        end = _mark(self.cuda)
        if self.cuda:
            torch.cuda.synchronize()
        self._spans.append((self._start, end))
        return False

    def seconds(self) -> list[float]:
        return [_span_s(self.cuda, start, end) for start, end in self._spans]

    def __len__(self) -> int:
        return len(self._spans)


class SpanTotals:
    """The time spent inside `with` blocks, summed per update (`end_update()` closes one), without synchronising.

    What an update spends on work that is not the update (the noise scale's snapshots) is subtracted from its
    timed whole. On a CPU that work runs in the host's order, so perf_counter around it is its time. On CUDA
    a pair of events around it measures the stream's time between them: the snapshot kernels, plus any time the
    device waited for the host to launch them, which is what the snapshots add to the update either way; no
    synchronisation, so the update's own overlap of host and device is not disturbed."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._open: list = []  # spans of the update in progress
        self._updates: list[list] = []

    def __enter__(self):
        self._start = _mark(self.cuda)
        return self

    def __exit__(self, *exc):
        self._open.append((self._start, _mark(self.cuda)))
        return False

    def end_update(self) -> None:
        self._updates.append(self._open)
        self._open = []

    def seconds(self) -> list[float]:
        """Per update: the summed seconds of its spans (read after the device has finished them)."""
        if self.cuda:
            torch.cuda.synchronize()
        return [float(sum(_span_s(self.cuda, s, e) for s, e in spans)) for spans in self._updates]


class NoTimer:
    """Stands in for a Timer or SpanTotals where nothing is measured: no event recorded, no clock read."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def end_update(self) -> None:
        pass


NO_TIMER = NoTimer()


def middle_bounds(n: int, fraction: float = 0.2) -> tuple[int, int]:
    """[n//5, n - n//5): the indices of the middle 60%, dropping start-up and tail effects."""
    cut = int(n * fraction)
    return cut, n - cut


def middle_window(values, fraction: float = 0.2) -> np.ndarray:
    """values[n//5 : n - n//5]: the middle 60% that update_time_s_mean averages."""
    values = np.asarray(values, dtype=float)
    start, stop = middle_bounds(len(values), fraction)
    return values[start:stop]
