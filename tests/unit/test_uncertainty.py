"""The intervals and the power calculation behind every 'resolved' and 'seeds needed' in the report."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gradacc.analysis.uncertainty import half_width, power_to_resolve, resolved, seeds_to_resolve, t_975
from gradacc.bench.noise import median_interval


@pytest.mark.parametrize("dof", [1, 2, 4, 29, 30, 31, 45, 200])
def test_t_quantiles_are_students_at_every_degree_of_freedom(dof):
    assert t_975(dof) == pytest.approx(stats.t.ppf(0.975, dof), rel=1e-9)
    assert t_975(31) > 2.03  # a table that switched to 1.96 above 30 was 3.9% too narrow here


def test_half_width_and_resolved():
    assert half_width(2.0, 4) == pytest.approx(stats.t.ppf(0.975, 3) * 2.0 / 2.0)
    assert math.isnan(half_width(2.0, 1)) and math.isnan(t_975(0))
    assert resolved(10.0, 1.0, 12.5, 1.0) is True and resolved(10.0, 1.0, 11.5, 1.0) is False
    assert resolved(10.0, float("nan"), 20.0, 1.0) is None


def test_power_of_non_overlap_matches_a_direct_simulation():
    # the figure: a true 6.4 points at sd 2, four seeds per K separate the intervals about 60% of the time
    assert power_to_resolve(6.4, 2.0, 4) == pytest.approx(0.60, abs=0.02)
    assert power_to_resolve(6.4, 2.0, 5) == pytest.approx(0.84, abs=0.02)
    # with no true difference two equal intervals still part about 0.5% of the time: the conservative test
    assert power_to_resolve(0.0, 2.0, 10) == pytest.approx(0.0055, abs=0.002)


def test_seeds_needed_reach_80_percent_power():
    assert seeds_to_resolve(6.4, 2.0) == 5  # the interval arithmetic alone (n=4: 6.36 < 6.4) said 4
    assert power_to_resolve(6.4, 2.0, seeds_to_resolve(6.4, 2.0)) >= 0.8
    assert power_to_resolve(6.4, 2.0, seeds_to_resolve(6.4, 2.0) - 1) < 0.8
    assert seeds_to_resolve(0.1, 5.0) is None and seeds_to_resolve(0.0, 2.0) is None
    assert seeds_to_resolve(1.0, 1.0) == seeds_to_resolve(-1.0, 1.0)


def test_the_median_interval_of_the_noise_line_uses_the_binomial_ranks():
    values = np.arange(1.0, 11.0)  # n=10: the 95% interval of a median runs from the 2nd to the 9th value
    assert median_interval(values) == (5.5, 2.0, 9.0)
    spiked = np.concatenate([np.full(30, 1.0), [600.0]])  # one load spike moves the mean, not the median
    assert median_interval(spiked)[:1] == (1.0,) and median_interval(spiked)[2] == 1.0
    assert np.isnan(median_interval(np.arange(5.0))[1])  # below six values no such interval exists
