"""Part 1: micro-iteration time. Warm-up, then forward + loss + backward of single micro-batches timed alone."""
from __future__ import annotations

import numpy as np

from gradacc.core.config import Protocol
from gradacc.core.engine import run_update
from gradacc.core.model import build_model, build_optimizer
from gradacc.core.timing import NO_TIMER, Timer
from gradacc.parts.context import Context, Result, noop, series_from


def run_phase(model, optimizer, stream, k: int, micro_iters: int, micro_timer=NO_TIMER,
              step_timer=NO_TIMER, progress=noop) -> int:
    """`micro_iters` micro-iterations as whole updates (a step every k), then any remainder unstepped.

    Returns the number of optimizer steps taken, counted from the start of the phase."""
    updates, rest = divmod(micro_iters, k)
    for _ in range(updates):
        run_update(model, optimizer, stream, k, micro_timer, step_timer)
        progress(k)
    if rest:
        run_update(model, optimizer, stream, k, micro_timer, step_timer, micro_steps=rest, step=False)
        progress(rest)
    return updates


def run_micro(protocol: Protocol, ctx: Context, result: Result, progress=noop) -> None:
    device = ctx.runtime.device
    model = build_model(protocol.seed, device)
    optimizer = build_optimizer(model, protocol)
    stream = ctx.stream(protocol)
    micro_timer, step_timer = Timer(device), Timer(device)
    model.train()
    try:
        run_phase(model, optimizer, stream, protocol.k, protocol.warmup_micro_iters, progress=progress)
        run_phase(model, optimizer, stream, protocol.k, protocol.timed_micro_iters, micro_timer, step_timer,
                  progress=progress)
    finally:
        stream.close()
        micro_ms = np.array(micro_timer.seconds()) * 1e3
        step_ms = np.array(step_timer.seconds()) * 1e3
        result.series.update(micro_iter_ms=series_from(micro_ms), opt_step_ms=series_from(step_ms))
    result.summaries.update(
        micro_iter_ms_mean=float(micro_ms.mean()),
        micro_iter_ms_std=float(micro_ms.std(ddof=1)) if len(micro_ms) > 1 else 0.0,
        micro_iter_ms_p90=float(np.percentile(micro_ms, 90)),
        opt_step_ms_mean=float(step_ms.mean()) if len(step_ms) else float("nan"))
