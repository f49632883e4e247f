"""The study's fixed costs by kind (gradacc/bench/costs.py, e2e.fixed_costs): each second charged once, to the
innermost step; the steps it times still exist."""
from __future__ import annotations

import importlib

import pytest

from gradacc.bench.costs import KINDS, STEPS, Stopwatch
from gradacc.bench.e2e import fixed_costs


def test_each_second_goes_to_the_innermost_step():
    now = [0.0]
    watch = Stopwatch(clock=lambda: now[0])

    def store():
        now[0] += 2.0  # the store itself
        watch.timed("imports", lambda: now.__setitem__(0, now[0] + 3.0))  # an import while it opens

    now[0] += 1.0
    watch.timed("store", store)
    now[0] += 0.5
    assert watch.totals() == {"other": 1.5, "store": 2.0, "imports": 3.0}


def test_fixed_costs_add_up_to_the_overhead():
    costs = {"seconds": {"imports": 3.0, "store": 1.0, "data": 0.2, "runs": 50.0, "per-run PNGs": 1.5,
                         "compare": 1.2, "other": 0.1}, "started_at": 100.05, "returned_at": 160.0}
    parts = fixed_costs(costs, measured_s=49.0, started=100.0, ended=160.3, wall_s=60.3)
    assert tuple(parts) == KINDS
    assert parts["runs' tracking"] == pytest.approx(1.0) and parts["exit"] == pytest.approx(0.3)
    assert parts["start"] == pytest.approx(0.05)
    assert sum(parts.values()) == pytest.approx(60.3 - 49.0)


@pytest.mark.parametrize("module, name, kind", STEPS)
def test_every_timed_step_exists(module, name, kind):
    assert callable(getattr(importlib.import_module(module), name)), f"{module}.{name} ({kind}) is gone"
