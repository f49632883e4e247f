"""Timers (perf_counter on CPU, CUDA events on GPU) and the middle-60% window of Part 2."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from gradacc.core import timing
from gradacc.core.timing import NO_TIMER, Timer, middle_window
from gradacc.parts.update import update_summaries


@pytest.mark.parametrize("n, start, stop", [(800, 160, 640), (400, 80, 320), (200, 40, 160), (100, 20, 80),
                                            (10, 2, 8), (5, 1, 4), (4, 0, 4), (1, 0, 1), (0, 0, 0)])
def test_middle_window_of_the_protocols_update_counts(n, start, stop):
    np.testing.assert_array_equal(middle_window(np.arange(n)), np.arange(start, stop))


def test_middle_window_is_n_over_5_for_every_n():
    for n in range(0, 2001):
        window = middle_window(list(range(n)))
        assert window.tolist() == list(range(n // 5, n - n // 5)), n


def test_update_summaries_use_the_middle_window():
    # 10 updates: the first two and last two (slow start, odd tail) stay out of the mean.
    update_s = np.array([9.0, 9.0, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 9.0, 9.0])
    summary = update_summaries(update_s, effective_batch=256)
    assert summary["update_time_s_mean"] == pytest.approx(4.0 / 6)
    assert summary["update_time_s_std"] == pytest.approx(np.std([0.5] * 4 + [1.0] * 2, ddof=1))
    assert summary["throughput_img_s"] == pytest.approx(256 / (4.0 / 6))


class FakeClock:
    def __init__(self, readings):
        self.readings = list(readings)

    def __call__(self):
        return self.readings.pop(0)


def test_cpu_timer_records_each_block_from_perf_counter(monkeypatch):
    monkeypatch.setattr(timing.time, "perf_counter", FakeClock([10.0, 10.25, 11.0, 13.5, 20.0, 20.0]))
    timer = Timer(torch.device("cpu"))
    for _ in range(3):
        with timer as entered:
            assert entered is timer
    assert timer.seconds() == [0.25, 2.5, 0.0]
    assert len(timer) == 3


def test_cpu_timer_measures_real_time():
    timer = Timer(torch.device("cpu"))
    with timer:
        time.sleep(0.02)
    with timer:
        pass
    spans = timer.seconds()
    assert len(spans) == 2
    assert spans[0] >= 0.02  # sleep lasts at least as long as asked
    assert 0.0 <= spans[1] < spans[0]


def test_timer_does_not_swallow_exceptions():
    timer = Timer(torch.device("cpu"))
    with pytest.raises(ZeroDivisionError):
        with timer:
            1 / 0
    with pytest.raises(ZeroDivisionError):
        with NO_TIMER:
            1 / 0


def test_seconds_is_a_copy():
    timer = Timer(torch.device("cpu"))
    with timer:
        pass
    timer.seconds().append(99.0)
    assert len(timer.seconds()) == 1


@pytest.mark.cuda
def test_cuda_timer_uses_events_and_covers_the_device_work():
    device = torch.device("cuda")
    a = torch.randn(2048, 2048, device=device)
    timer = Timer(device)
    with timer:
        for _ in range(20):
            a = a @ a / 2048
    with timer:
        pass
    heavy, empty = timer.seconds()
    assert heavy > empty >= 0.0
    assert len(timer._spans) == 2 and all(isinstance(s, torch.cuda.Event) for span in timer._spans for s in span)
