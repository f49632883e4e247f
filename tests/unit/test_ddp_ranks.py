"""A DDP rank's bookkeeping apart from torchrun: the injected straggler (seeded, training forwards only), the
per-bucket hook times laid out per update, and the collective as the fastest rank's time per bucket."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gradacc.distributed.rank import Straggler, bucket_rows, collective_of, per_rank_series, rank_summaries


def test_the_straggler_sleeps_a_seeded_exponential_in_training_only(monkeypatch):
    slept = []
    monkeypatch.setattr("gradacc.distributed.rank.time.sleep", slept.append)
    model = torch.nn.Linear(2, 2)
    first, second = Straggler(50.0, seed=42), Straggler(50.0, seed=42)
    for straggler in (first, second):
        for _ in range(400):
            straggler.hook(model, ())
    assert first.slept == second.slept == slept[:400]  # the same draws from the same seed
    assert np.mean(first.slept) == pytest.approx(0.05, rel=0.15) and min(first.slept) >= 0
    model.eval()
    first.hook(model, ())
    assert len(first.slept) == 400  # rank 0's evaluation is not slowed
    none = Straggler(0.0, seed=42)
    none.hook(model.train(), ())
    assert none.slept == []


def test_bucket_times_per_update_and_the_collective():
    rows = bucket_rows([1.0, 2.0, 3.0, 4.0, 5.0], [3, 2])  # update 0: three buckets, update 1: two (rebuilt)
    assert rows.tolist() == [[1.0, 4.0], [2.0, 5.0], [3.0, 0.0]]
    # two ranks, two buckets, one update: per bucket the fastest rank's time (it arrived last), summed
    ranks = np.array([[[0.5], [0.1]], [[0.2], [0.3]]])
    assert collective_of(ranks).tolist() == [pytest.approx(0.2 + 0.1)]
    assert per_rank_series(np.array([[1.0, 2.0], [3.0, 4.0]])) == ([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])


def test_rank_summaries_split_the_hook_into_wait_and_collective():
    compute = np.array([[0.2, 0.3]] * 5)
    hooks = np.array([[0.15, 0.05]] * 5)
    out = rank_summaries(compute, hooks, np.full(5, 0.05), np.array([[0.0, 0.1]] * 5))
    assert out["collective_ms_mean"] == pytest.approx(50.0) and out["wait_ms_mean"] == pytest.approx(100.0)
    assert out["max_compute_ms_mean"] == pytest.approx(300.0) and out["straggle_ms_drawn_mean"] == pytest.approx(100.0)
