"""`gradacc bench`'s `noise` line: Part 2's update time from a converge run that measures the gradient noise
scale (its snapshot time subtracted, parts/converge.py) against one that does not, the same configuration run
side by side in this process, A B B A, so that one pass per K can give both honestly."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from gradacc.analysis.uncertainty import half_width
from gradacc.bench.lines import Line
from gradacc.core.config import Protocol
from gradacc.parts.context import Context, Result
from gradacc.parts.converge import run_converge


def converge_update_s(ctx: Context, protocol: Protocol) -> tuple[float, float]:
    """(update_time_s_mean, noise_snapshot_s_mean or 0) of one converge run of a fresh model."""
    result = Result("converge")
    run_converge(protocol, ctx, result)
    return result.summaries["update_time_s_mean"], result.summaries.get("noise_snapshot_s_mean", 0.0)


def difference_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a - b over paired repeats and the half-width of its 95% t interval."""
    diff = a - b
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")
    return float(diff.mean()), half_width(sd, len(diff))


def within_spread(diff: float, half: float) -> str:
    """Whether a paired difference lies inside its 95% interval: the verdict a side-by-side line prints."""
    return "n/a (one pair)" if np.isnan(half) else ("yes" if abs(diff) <= half else "NO")


def bench_noise_timing(ctx: Context, protocol: Protocol, k: int, updates: int, pairs: int) -> Line:
    """`pairs` pairs of converge runs of `updates` updates at K=k, one with the noise scale and one without, in
    A B B A order; the line compares their mean update times and says whether they agree within the spread."""
    updates = min(updates, protocol.train_size // (protocol.micro_batch * k))  # the data there is (smoke: 1,024)
    train_size = updates * protocol.micro_batch * k
    base = replace(protocol, k=k, epochs=1, train_size=train_size, lr_scaling="none", warmup_epochs=0,
                   cuda_graphs=False)
    on, off = replace(base, noise_scale="on").validate(), replace(base, noise_scale="off").validate()
    with_noise, without, snapshot = [], [], []
    converge_update_s(ctx, on)  # not recorded: the process's first run pays for warming up (allocator, caches)
    for pair in range(pairs):
        order = (on, off) if pair % 2 == 0 else (off, on)
        for chosen in order:
            update_s, snapshot_s = converge_update_s(ctx, chosen)
            if chosen is on:
                with_noise.append(update_s)
                snapshot.append(snapshot_s)
            else:
                without.append(update_s)
    a, b = np.array(with_noise), np.array(without)
    diff, half = difference_interval(a, b)
    agree = within_spread(diff, half)
    note = (f"K={k}, {updates} updates per run, one warm-up run, then {pairs} pairs A B B A; difference "
            f"{diff * 1e3:+.2f} ms ± {half * 1e3:.2f} ms (95% t interval of the paired differences); "
            f"within the spread: {agree}. "
            f"Snapshot time taken out: {np.mean(snapshot) * 1e3:.1f} ms per update "
            f"({np.mean(snapshot) / (np.mean(a) + np.mean(snapshot)) * 100:.0f}% of the update with it).")
    return Line("Part 2 from a noise-scale run", "with noise scale", float(a.mean()), "without", float(b.mean()),
                "s", note=note)
