"""`gradacc bench`'s measurements in this process: each line is two figures taken side by side, and their ratio.

Absolute times on shared machines swing; a ratio of two things measured in the same minutes does not."""
from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gradacc.bench.lines import Line
from gradacc.bench.noise import difference_interval
from gradacc.core.config import Protocol
from gradacc.core.graphs import capture
from gradacc.core.model import build_model, build_optimizer
from gradacc.core.request import Request
from gradacc.core.runtime import code_version
from gradacc.core.timing import NO_TIMER, Timer
from gradacc.parts.context import Context, Result
from gradacc.parts.update import run_update_part
from gradacc.study.run import RUNNERS, environment_text, execute
from gradacc.tracking.experiments import experiment_id
from gradacc.tracking.runs import time_metric_writes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def stream_rate(ctx: Context, protocol: Protocol, batches: int, warmup: int = 10) -> float:
    """Augmented micro-batches per second that a stream delivers to the device (worker start-up excluded)."""
    stream = ctx.stream(protocol)
    try:
        for _ in range(warmup):
            stream.next_batch()
        _sync(ctx.runtime.device)
        start = time.perf_counter()
        for _ in range(batches):
            images, _labels = stream.next_batch()
        _sync(ctx.runtime.device)
        return batches / (time.perf_counter() - start)
    finally:
        stream.close()


def update_time_s(ctx: Context, protocol: Protocol, updates: int) -> float:
    """Part 2's figure over `updates` updates of a fresh model, through Part 2's own loop: the middle 60%, in s."""
    result = Result("update")
    run_update_part(protocol, ctx, result, updates=updates)
    return result.summaries["update_time_s_mean"]


def bench_streams(ctx: Context, protocol: Protocol, batches: int, updates: int) -> list[Line]:
    """Line 1: the on-device stream against the seeds' DataLoader (2 workers, pinned memory)."""
    device_p, loader_p = replace(protocol, loader="device", k=1), replace(protocol, loader="torchvision", k=1)
    rates = [stream_rate(ctx, p, batches) for p in (device_p, loader_p)]
    times = [update_time_s(ctx, p, updates) for p in (device_p, loader_p)]
    return [Line("data stream, delivery", "device", rates[0], "torchvision", rates[1], "micro-batches/s",
                 note=f"{batches} augmented micro-batches of 64 on {ctx.runtime.device.type}, after 10 warm-up"),
            Line("data stream, K=1 update", "device", times[0], "torchvision", times[1], "s",
                 note=f"middle 60% of {updates} updates of a fresh model with each stream")]


def bench_tracking(ctx: Context, request: Request, part: str, blocks: int) -> Line:
    """Line 2: a run as the CLI makes it (tracked: params, metrics, artifacts, plot) against the same part's
    loop bare, in `blocks` blocks of A B B A so that drift cancels; each block gives one paired difference (its
    tracked runs' mean less its bare runs'), and the note their 95% t interval: the bare runs alone spread by a
    few % from run to run, more than the 1% this line is held to. Runs into the current tracking store."""
    # What a process pays once (a new store's schema, imports, the package list, the code version) is not
    # the cost of tracking a run: paid here, before the clock starts.
    request = request.in_experiment(experiment_id("gradacc-bench"))
    protocol = request.protocol
    environment_text(ctx.runtime)
    code_version()
    import matplotlib.pyplot
    assert matplotlib.pyplot
    bare, tracked, outside = [], [], []

    def run_bare():
        start = time.perf_counter()
        RUNNERS[part](protocol, ctx, Result(part))
        bare.append(time.perf_counter() - start)

    def run_tracked():
        start = time.perf_counter()
        result = execute(part, protocol, ctx, request)
        tracked.append(time.perf_counter() - start)
        outside.append(tracked[-1] - result.summaries["wall_time_s"])  # the run's own wall: its loop

    for _ in range(blocks):
        for run in (run_bare, run_tracked, run_tracked, run_bare):
            run()
    extra, half = difference_interval(np.reshape(tracked, (blocks, 2)).mean(1), np.reshape(bare, (blocks, 2)).mean(1))
    bare_s = float(np.mean(bare))
    spread = "" if np.isnan(half) else f" ± {half:.2f}"
    share = "" if np.isnan(half) else f" ± {100 * half / bare_s:.1f}"
    return Line("tracking overhead", "tracked run", float(np.mean(tracked)), "bare loop", bare_s, "s", goal="<= 1.01",
                note=f"{part} run, k={protocol.k}, {protocol.epochs} epoch(s), {blocks} block(s) of A B B A; the "
                     f"fixed cost of tracking is {extra:.2f}{spread} s per run, {100 * extra / bare_s:.1f}{share}% of "
                     f"the bare run (95% t interval over the blocks; bare runs {min(bare):.2f}-{max(bare):.2f} s). "
                     f"Outside its loop a tracked run took {np.mean(outside):.3f} s "
                     f"({min(outside):.3f}-{max(outside):.3f}; opening, params, inputs, then metrics, files, its PNG, "
                     f"the end), {100 * np.mean(outside) / bare_s:.2f}% of the bare run: the part of the cost that "
                     "drift does not blur")


def bench_logging(values: int = 800) -> Line:
    """Line 3: `values` per-update timings written to a fresh sqlite store, batched against one call each."""
    with tempfile.TemporaryDirectory(prefix="gradacc-bench-") as tmp:
        batched_s, each_s = time_metric_writes(f"sqlite:///{Path(tmp) / 'mlflow.db'}", values)
    line = Line("logging cost", "batched", batched_s, "one call per value", each_s, "s",
                note=f"{values} values of update_time_s to a fresh sqlite store; goal: batched <= 0.2 s "
                     f"({'met' if batched_s <= 0.2 else 'MISSED'})")
    return line


def bench_graph_floor(ctx: Context, protocol: Protocol, iters: int) -> Line:
    """Line 5 (CUDA only): Part 1's eager micro-iteration against a CUDA-graph replay of the same forward and
    backward on a static batch: the floor with no kernel launches from Python."""
    device = ctx.runtime.device
    model = build_model(protocol.seed, device)
    optimizer = build_optimizer(model, protocol)
    stream = ctx.stream(protocol)
    model.train()
    eager = Timer(device)
    for i in range(20 + iters):  # the first 20 warm up, as in Part 1
        images, labels = stream.next_batch()
        optimizer.zero_grad(set_to_none=True)
        with (eager if i >= 20 else NO_TIMER):
            F.cross_entropy(model(images), labels).backward()
    static_images, static_labels = (t.clone() for t in stream.next_batch())

    def micro_step(_warming_up: bool) -> None:  # gradients set to None first: the captured backward allocates them
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(static_images), static_labels).backward()

    graph = capture(micro_step)
    replay = Timer(device)
    for _ in range(iters):
        images, labels = stream.next_batch()
        static_images.copy_(images)
        static_labels.copy_(labels)
        with replay:
            graph.replay()
    eager_ms = float(np.mean(eager.seconds())) * 1e3
    graph_ms = float(np.mean(replay.seconds())) * 1e3
    return Line("micro-iteration vs CUDA-graph floor", "eager", eager_ms, "graph replay", graph_ms, "ms",
                goal="<= 1.5", note=f"{iters} timed micro-iterations each, synchronised at both ends")

