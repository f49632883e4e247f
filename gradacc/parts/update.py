"""Part 2: update time and throughput. Every update timed whole; the mean over the middle 60% of updates."""
from __future__ import annotations

import numpy as np

from gradacc.core.config import Protocol
from gradacc.core.engine import make_update
from gradacc.core.model import build_model, build_optimizer
from gradacc.core.timing import Timer, middle_window
from gradacc.parts.context import Context, Result, noop, series_from


def update_summaries(update_s: np.ndarray, effective_batch: int) -> dict[str, float]:
    window = middle_window(update_s)
    mean = float(window.mean())
    return {"update_time_s_mean": mean,
            "update_time_s_std": float(window.std(ddof=1)) if len(window) > 1 else 0.0,
            "throughput_img_s": effective_batch / mean}


def run_update_part(protocol: Protocol, ctx: Context, result: Result, progress=noop,
                    updates: int | None = None) -> None:
    """Times the protocol's U updates (or `updates` of them: the bench's shorter runs) of a fresh model."""
    model = build_model(protocol.seed, ctx.runtime.device)
    optimizer = build_optimizer(model, protocol)
    stream = ctx.stream(protocol)
    timer = Timer(ctx.runtime.device)
    model.train()
    update = make_update(model, optimizer, stream, protocol.k, protocol.micro_batch, protocol.cuda_graphs)
    try:
        for _ in range(protocol.total_updates if updates is None else updates):
            # Synchronised at both ends: the K fetches, forwards, backwards and the step.
            with timer:
                update()
            progress(1)
    finally:
        stream.close()
        update_s = np.array(timer.seconds())
        result.series["update_time_s"] = series_from(update_s)
    result.summaries.update(update_summaries(update_s, protocol.effective_batch))
