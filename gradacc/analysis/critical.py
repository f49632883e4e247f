"""The critical batch size from updates and images to a target (McCandlish et al. 2018, "An Empirical Model of
Large-Batch Training", eq. 2.11): (S/S_min - 1)(E/E_min - 1) = 1, with E = B*S. Solved for S it reads
S = S_min + E_min / B, a line in 1/B, so the fit is a linear least squares; B_crit = E_min / S_min.

The residuals are relative ((S_obs - S_fit) / S_obs): updates-to-target of K=1 and K=32 differ by an order of
magnitude and their run-to-run spread is roughly proportional to S, so absolute residuals would let the small
batches alone decide the fit.

Censored points (the target not reached before the epoch cap: S is only a lower bound) are not fitted: they are
checked against the fit afterwards, and one whose lower bound already exceeds the fitted S contradicts the fit and
is flagged (the sentence names it). A censored likelihood would need a noise model this study does not measure.

The 95% interval is a percentile bootstrap: over seeds where every K has at least two (each K's seeds resampled
with replacement, so every resample keeps every K), over the (K, S) pairs otherwise (then a resample may drop
K values; resamples with fewer than two distinct batch sizes are skipped). numpy only."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gradacc.analysis.uncertainty import half_width

BOOTSTRAP_RESAMPLES = 2000
PERFECT_SHARE = 0.2  # perfect scaling: E within 20% of E_min, i.e. B <= 0.2 B_crit on the fitted curve
PERFECT, DIMINISHING, NO_GAIN = "perfect scaling", "diminishing returns", "no gain"


@dataclass(frozen=True)
class Point:
    """One run: its effective batch B, its updates to target S (a lower bound when not reached), its seed."""
    batch: int
    updates: float
    reached: bool = True
    seed: int = 0


@dataclass
class Fit:
    s_min: float
    e_min: float
    interval: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (low, high), 95%
    resampled_over: str = ""  # "seeds" or "pairs"
    contradicting: list[Point] = field(default_factory=list)  # censored points whose bound exceeds the fit

    @property
    def b_crit(self) -> float:
        return self.e_min / self.s_min

    def updates_at(self, batch) -> np.ndarray:
        return self.s_min + self.e_min / np.asarray(batch, float)

    def images_at(self, batch) -> np.ndarray:
        return np.asarray(batch, float) * self.updates_at(batch)


def solve(batches, updates) -> tuple[float, float] | None:
    """(S_min, E_min) by least squares on relative residuals; None where either is not positive or the batches
    do not span two values (the line in 1/B is then undetermined)."""
    b, s = np.asarray(batches, float), np.asarray(updates, float)
    if len(np.unique(b)) < 2:
        return None
    design = np.column_stack([np.ones_like(b), 1.0 / b]) / s[:, None]
    (s_min, e_min), *_ = np.linalg.lstsq(design, np.ones_like(s), rcond=None)
    if not (s_min > 0 and e_min > 0):
        return None
    return float(s_min), float(e_min)


def _by_batch(points: list[Point]) -> dict[int, list[Point]]:
    groups: dict[int, list[Point]] = {}
    for p in points:
        groups.setdefault(p.batch, []).append(p)
    return groups


def fit(points: list[Point], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Fit | None:
    """The fit on the reached points, its 95% bootstrap intervals, the censored points that contradict it;
    None where the reached points do not determine a positive S_min and E_min."""
    reached = [p for p in points if p.reached]
    solved = solve([p.batch for p in reached], [p.updates for p in reached])
    if solved is None:
        return None
    result = Fit(*solved)
    result.contradicting = [p for p in points if not p.reached and p.updates > result.updates_at(p.batch)]
    groups = _by_batch(reached)
    over_seeds = all(len(g) >= 2 for g in groups.values())
    result.resampled_over = "seeds" if over_seeds else "pairs"
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        if over_seeds:
            sample = [g[i] for g in groups.values() for i in rng.integers(0, len(g), len(g))]
        else:
            sample = [reached[i] for i in rng.integers(0, len(reached), len(reached))]
        again = solve([p.batch for p in sample], [p.updates for p in sample])
        if again is not None:
            draws.append((again[0], again[1], again[1] / again[0]))
    if len(draws) >= 0.5 * resamples:  # most resamples determined a fit: otherwise an interval would flatter it
        values = np.array(draws)
        for column, name in enumerate(("s_min", "e_min", "b_crit")):
            low, high = np.percentile(values[:, column], [2.5, 97.5])
            result.interval[name] = (float(low), float(high))
    return result


def regime(batch: float, b_crit: float, share: float = PERFECT_SHARE) -> str:
    """Where B sits on the fitted curve: perfect scaling while E exceeds E_min by at most `share` (B <= share *
    B_crit), no gain once S is within `share` of S_min (B >= B_crit / share), diminishing returns between."""
    if batch <= share * b_crit:
        return PERFECT
    if batch >= b_crit / share:
        return NO_GAIN
    return DIMINISHING


def noise_interval(values: list[float]) -> tuple[float, float, float] | None:
    """B_noise as the mean of the runs' B_simple (K >= 2) with its 95% t interval; None without any."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return None
    mean, half = float(np.mean(values)), half_width(float(np.std(values, ddof=1)) if len(values) > 1 else
                                                   float("nan"), len(values))
    return mean, mean - half, mean + half


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


BEYOND = 10  # a fitted B_crit more than this many times the largest batch is no measurement of one


def sentence(result: Fit | None, batches_by_k: dict[int, int], noise: tuple[float, float, float] | None) -> str:
    """The report's sentence: B_crit with its interval beside B_noise (mean, low, high) and whether they agree
    within their intervals; which K are in the perfect-scaling regime; censored points that contradict the fit."""
    if result is None:
        return ("The critical batch size is not determined: the reached points do not give a positive S_min and "
                "E_min (fewer than two batch sizes reached the target, or S does not fall with B).")
    largest = max(batches_by_k.values(), default=0)
    if largest and result.b_crit > BEYOND * largest:  # S fell as 1/B at every batch: the bend lies past them all
        return (f"B_crit is beyond the batches measured (the fit puts it at {result.b_crit:.3g} images, more than "
                f"{BEYOND} times the largest, B={largest}): S fell as 1/B throughout, so no bend was seen and "
                f"B_noise{'' if noise is None else f' = {noise[0]:.0f}'} is not judged against it; every K is in "
                "the perfect-scaling regime.")
    b_crit = f"B_crit = {result.b_crit:.0f}"
    if "b_crit" in result.interval:
        low, high = result.interval["b_crit"]
        b_crit += f" (95% {low:.0f}-{high:.0f}, bootstrap over {result.resampled_over})"
    else:
        b_crit += " (no interval: too few resamples determined a fit)"
    words = [b_crit + "."]
    if noise is None:
        words.append("No B_noise was measured beside it.")
    else:
        mean, n_low, n_high = noise
        said = f"B_noise = {mean:.0f} (95% {n_low:.0f}-{n_high:.0f})"
        if "b_crit" not in result.interval or not np.isfinite([n_low, n_high]).all():
            words.append(f"{said}; without both intervals their agreement is not judged.")
        elif overlap(result.interval["b_crit"], (n_low, n_high)):
            words.append(f"{said}: the two agree within their 95% intervals.")
        else:
            words.append(f"{said}: the two disagree (their 95% intervals do not overlap).")
    perfect = [k for k, b in sorted(batches_by_k.items()) if regime(b, result.b_crit) == PERFECT]
    words.append(f"Perfect scaling (E within {PERFECT_SHARE:.0%} of E_min on the fit) at K = "
                 f"{', '.join(map(str, perfect))}." if perfect else "No K is in the perfect-scaling regime.")
    if result.contradicting:
        named = ", ".join(f"B={p.batch} (S > {p.updates:.0f})" for p in result.contradicting)
        words.append(f"Not reached yet above the fit, contradicting it: {named}.")
    return " ".join(words)
