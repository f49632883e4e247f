"""How far the repeats let a comparison go: 95% t intervals of a mean over seeds (Student's t from scipy), whether
two K values' difference is resolved (their intervals do not overlap), and, by a power calculation, how many seeds
would resolve it."""
from __future__ import annotations

import math

import numpy as np
from scipy import special  # stdtrit: t's quantile; scipy.stats, 0.4 s more to import, gives the same values

# The seed-to-seed std of the final test accuracy where a setting has one seed: the middle of the stds of
# 1.1-2.9 points between two seeds on an H100 (docs/results.md). Used only to say how many seeds a difference
# would need, with that assumption stated beside the number.
TYPICAL_ACCURACY_SD = 2.0
MAX_SEEDS = 50
POWER = 0.8  # the share of studies in which "seeds needed" resolves a true difference
POWER_TRIALS = 20_000  # simulated studies per seed count (the power's own error is about 0.3 points of 80%)


def t_975(dof: int) -> float:
    """Student's t 0.975 quantile (two-sided 95%), NaN below one degree of freedom."""
    return float(special.stdtrit(dof, 0.975)) if dof >= 1 else float("nan")


def half_width(sd: float, n: int) -> float:
    """The 95% t interval's half-width of a mean of n values with std sd (NaN below two values)."""
    if n < 2 or sd != sd:
        return float("nan")
    return t_975(n - 1) * sd / math.sqrt(n)


def resolved(mean_a: float, half_a: float, mean_b: float, half_b: float) -> bool | None:
    """True where the two 95% intervals do not overlap, False where they do, None without intervals."""
    if half_a != half_a or half_b != half_b:
        return None
    return abs(mean_a - mean_b) > half_a + half_b


def power_to_resolve(difference: float, sd: float, n: int, trials: int = POWER_TRIALS) -> float:
    """The share of studies with n seeds per K whose two 95% t intervals do not overlap, when the true means differ
    by `difference` and each K's seeds are normal with std `sd`. Simulated from the sufficient statistics (each
    mean normal, each variance sd^2 chi^2(n-1)/(n-1)), with a fixed generator so that a report is reproducible."""
    if n < 2 or sd != sd or sd <= 0:
        return float("nan")
    rng = np.random.default_rng(n)
    gap = difference + rng.normal(0.0, sd * math.sqrt(2.0 / n), trials)  # mean_b - mean_a
    sds = sd * np.sqrt(rng.chisquare(n - 1, (2, trials)) / (n - 1))
    return float(np.mean(np.abs(gap) > t_975(n - 1) * sds.sum(axis=0) / math.sqrt(n)))


def seeds_to_resolve(difference: float, sd: float, power: float = POWER) -> int | None:
    """The fewest seeds per K with which two 95% intervals would not overlap in `power` of studies at this true
    difference and seed-to-seed std (power_to_resolve); None above MAX_SEEDS or with nothing to resolve."""
    if not difference or sd != sd or sd <= 0:
        return None
    for n in range(2, MAX_SEEDS + 1):
        if power_to_resolve(abs(difference), sd, n) >= power:
            return n
    return None
