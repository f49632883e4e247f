"""Synchronised timers (CUDA events on a GPU, perf_counter on a CPU) and the middle-window mean."""
from __future__ import annotations

import time

import numpy as np
import torch


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
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            torch.cuda.synchronize()
            self._spans.append((self._start, end))
        else:
            self._spans.append(time.perf_counter() - self._start)
        return False

    def seconds(self) -> list[float]:
        if self.cuda:
            return [start.elapsed_time(end) / 1000.0 for start, end in self._spans]
        return list(self._spans)

    def __len__(self) -> int:
        return len(self._spans)


class NoTimer:
    """Stands in for a Timer where nothing is measured."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


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
