"""`gradacc bench`'s `noise` line: Part 2's update time from a converge run that measures the gradient noise
scale (its snapshot time subtracted, parts/converge.py) against one that does not, the same configuration trained
side by side in this process and interleaved update by update (A B B A), so that one pass per K can give both
honestly. Interleaving pairs each update with one made a second apart: on a shared CPU the speed drifts by 10-15%
between runs a few seconds apart (separate runs A B B A measured a +-66 ms interval on a 430 ms update), far more
than between neighbouring updates."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import stats

from gradacc.analysis.uncertainty import half_width
from gradacc.bench.lines import Line
from gradacc.core.config import Protocol
from gradacc.core.timing import middle_window
from gradacc.parts.context import Context, Result
from gradacc.parts.converge import Training

PRECISION_PCT = 2.0  # the interval's half-width the line must reach, in % of the update time: it exists to rule
# out a bias of 2-4%


def difference_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a - b over paired repeats and the half-width of its 95% t interval."""
    diff = a - b
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")
    return float(diff.mean()), half_width(sd, len(diff))


def within_spread(diff: float, half: float) -> str:
    """Whether a paired difference lies inside its 95% interval: the verdict a side-by-side line prints."""
    return "n/a (one pair)" if np.isnan(half) else ("yes" if abs(diff) <= half else "NO")


def median_interval(diff: np.ndarray) -> tuple[float, float, float]:
    """The median of paired differences and its distribution-free 95% interval (order statistics whose ranks come
    from the binomial(n, 1/2)): a bias moves every update, a load spike on a shared machine one, and the median
    follows the first and not the second. NaN bounds below six values (no such interval exists)."""
    values = np.sort(diff)
    n = len(values)
    low = int(stats.binom.ppf(0.025, n, 0.5))  # the 0-based rank: P(fewer than low+1 below the median) <= 2.5%
    if low < 1:
        return float(np.median(values)), float("nan"), float("nan")
    return float(np.median(values)), float(values[low - 1]), float(values[n - low])


def interleaved(ctx: Context, protocol: Protocol, updates: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two trainings of one configuration, noise scale on and off, stepped in turn (A B, then B A, ...): the update
    times of each over the middle 60% (snapshot time taken out of the first) and the first's snapshot times."""
    on, off = (Training(replace(protocol, noise_scale=mode).validate(), ctx) for mode in ("on", "off"))
    results = {id(on): Result("converge"), id(off): Result("converge")}
    try:
        for update in range(updates):
            for training in ((on, off) if update % 2 == 0 else (off, on)):
                training.step()
        for training in (on, off):
            training.end_epoch(1)
    finally:
        for training in (on, off):
            training.close(results[id(training)])
    times = [middle_window(results[id(t)].series["update_time_s"][1]) for t in (on, off)]
    return times[0], times[1], middle_window(results[id(on)].series["noise_snapshot_s"][1])


def bench_noise_timing(ctx: Context, protocol: Protocol, k: int, updates: int, pairs: int) -> Line:
    """`pairs` fresh pairs of trainings of `updates` updates at K=k, one with the noise scale and one without,
    interleaved update by update; the line compares their update times, paired update by update."""
    updates = min(updates, protocol.train_size // (protocol.micro_batch * k))  # the data there is (smoke: 1,024)
    train_size = updates * protocol.micro_batch * k
    base = replace(protocol, k=k, epochs=1, train_size=train_size, lr_scaling="none", warmup_epochs=0,
                   cuda_graphs=False)
    interleaved(ctx, base, min(updates, 5))  # not recorded: the process's first updates pay for warming up
    with_noise, without, snapshot = (np.concatenate(parts) for parts in zip(
        *(interleaved(ctx, base, updates) for _ in range(pairs))))
    paired = with_noise - without
    mean_diff, half = difference_interval(with_noise, without)
    median, low, high = median_interval(paired)
    share = half / float(without.mean()) * 100
    precise = "n/a (one paired update)" if np.isnan(share) else ("met" if share < PRECISION_PCT else "MISSED")
    note = (f"K={k}, {pairs} pair(s) of trainings of {updates} updates, interleaved update by update (A B B A) after "
            f"a warm-up; {len(paired)} paired updates (the middle 60% of each). Difference {mean_diff * 1e3:+.2f} ms "
            f"± {half * 1e3:.2f} ms (95% t interval of the paired differences), a half-width of {share:.1f}% of the "
            f"update time (goal < {PRECISION_PCT:g}%: {precise}); within the spread: {within_spread(mean_diff, half)}. "
            f"Median difference {median * 1e3:+.2f} ms, 95% interval [{low * 1e3:+.2f}, {high * 1e3:+.2f}] ms "
            "(distribution-free, unmoved by a load spike). "
            f"Snapshot time taken out: {snapshot.mean() * 1e3:.1f} ms per update "
            f"({snapshot.mean() / (with_noise.mean() + snapshot.mean()) * 100:.0f}% of the update with it).")
    return Line("Part 2 from a noise-scale run", "with noise scale", float(with_noise.mean()), "without",
                float(without.mean()), "s", note=note)
