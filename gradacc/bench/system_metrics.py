"""`gradacc bench`'s `system-metrics` line: Part 2's update time with MLflow's system-metrics monitor sampling on its
thread (tracking/system_metrics.py, as `--system-metrics true` runs it) against without, side by side in this
process, A B B A (off, on, on, off, ...), each side a fresh model in a run of its own in the bench's store."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from gradacc.bench.lines import Line
from gradacc.bench.measure import update_time_s
from gradacc.bench.noise import difference_interval, within_spread
from gradacc.core.config import Protocol
from gradacc.names import part_tags
from gradacc.parts.context import Context
from gradacc.tracking.experiments import experiment_id
from gradacc.tracking.runs import tracked_run
from gradacc.tracking.system_metrics import missing_package, monitoring, sample_cpu_s, sampling

WARMUP_UPDATES = 5  # the first side pays for warming up (allocator, caches) and gives the update time to size sides
MIN_UPDATES = 5  # the middle 60% of fewer would be one or two updates
EXPERIMENT = "gradacc-bench"


def side_update_s(ctx: Context, protocol: Protocol, updates: int, monitored: bool) -> tuple[float, float | None]:
    """Part 2's figure (middle 60%) over `updates` updates of a fresh model, in a run of its own that carries the
    system metrics where `monitored`: the run and the monitor start before the first update and stop after the
    last, so only the sampling itself falls inside the timed window. Monitored, also the CPU seconds of one
    sampling round, measured after the updates."""
    name = "bench-system-metrics-" + ("on" if monitored else "off")
    with tracked_run(name, part_tags("bench", protocol.smoke), experiment_id(EXPERIMENT)) as run:
        with monitoring(run.run_id, monitored):
            update_s = update_time_s(ctx, protocol, updates)
        return update_s, sample_cpu_s(run.run_id) if monitored else None


def bench_system_metrics(ctx: Context, protocol: Protocol, side_s: float, pairs: int) -> Line | str:
    """`pairs` pairs of K=1 update runs, one with the monitor and one without, in A B B A order, each side about
    `side_s` seconds long; the line compares their mean update times with the 95% t interval of the paired
    differences. Without psutil, the reason it was skipped."""
    missing = missing_package()
    if missing:
        return f"system metrics cost: skipped (needs {missing}: pip install -e '.[system-metrics]')"
    base = replace(protocol, k=1, cuda_graphs=False)
    warm_s, _ = side_update_s(ctx, base, WARMUP_UPDATES, False)  # not recorded
    updates = max(MIN_UPDATES, math.ceil(side_s / warm_s))
    on, off, round_cpu_s = [], [], []
    for pair in range(pairs):
        for monitored in ((False, True) if pair % 2 == 0 else (True, False)):
            update_s, cpu_s = side_update_s(ctx, base, updates, monitored)
            (on if monitored else off).append(update_s)
            if monitored:
                round_cpu_s.append(cpu_s)
    a, b = np.array(on), np.array(off)
    diff, half = difference_interval(a, b)
    within = within_spread(diff, half)
    interval, samples = sampling()
    round_ms = float(np.mean(round_cpu_s)) * 1e3
    note = (f"K=1, {updates} updates per side (about {updates * warm_s:.0f} s), one warm-up side, then {pairs} "
            f"pair(s) A B B A; a sample every {interval:g} s, {samples} per logged point; difference "
            f"{diff * 1e3:+.2f} ms ± {half * 1e3:.2f} ms per update (95% t interval of the paired differences, "
            f"{diff / b.mean() * 100:+.1f}%); within the spread: {within}. The sampling thread's own work: "
            f"{round_ms:.1f} ms of CPU per sample, {round_ms / 1e3 / interval * 100:.2f}% of one core.")
    return Line("system metrics cost", "monitor on", float(a.mean()), "off", float(b.mean()), "s", note=note)
