"""Real synchronous SGD: the converge protocol run by N DistributedDataParallel workers (one rank's view).

Each rank builds the same seeded stream as accumulation with K = N and keeps micro-batch `rank` of every N,
so the N workers together see exactly the micro-batches of one accumulated update. The update is THE update
(engine.run_update) with k = 1 on the DDP-wrapped model: DDP's all-reduce averages the N gradients, which is
accumulation's sum of loss/K. The all-reduce runs in a timed communication hook, so every update's time
splits into compute (forward + backward without the hook) and all-reduce."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from gradacc.core.config import Protocol
from gradacc.core.engine import evaluate, run_update
from gradacc.core.model import build_model, build_optimizer
from gradacc.core.timing import Timer, middle_window
from gradacc.parts.context import Context, Result, noop, series_from
from gradacc.parts.converge import EpochRecord
from gradacc.parts.update import update_summaries


class RankStream:
    """Micro-batch `rank` of every `world` consecutive micro-batches of the accumulation stream."""

    def __init__(self, stream, rank: int, world: int):
        self.stream, self.rank, self.world = stream, rank, world

    def next_batch(self):
        mine = None
        for index in range(self.world):  # the others' batches are drawn too: the generator must advance
            batch = self.stream.next_batch()
            if index == self.rank:
                mine = batch
        return mine

    def close(self) -> None:
        self.stream.close()


class TimedAllReduce:
    """A DDP communication hook: each bucket's all-reduce run synchronously and timed (seconds, bytes).

    Synchronous means no overlap with the rest of backward: the time is the all-reduce's whole cost,
    including the wait for the slowest rank (the barrier), which is what the split reports."""

    def __init__(self, device: torch.device, world: int):
        self.cuda = device.type == "cuda"
        self.world = world
        self.seconds: list[float] = []
        self.bytes: list[int] = []

    def hook(self, state, bucket):
        buffer = bucket.buffer()
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        dist.all_reduce(buffer)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - start)
        self.bytes.append(buffer.numel() * buffer.element_size())
        buffer.div_(self.world)
        future = torch.futures.Future()
        future.set_result(buffer)
        return future


def wrap(model: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """DDP with its defaults (25 MB buckets, rank 0's buffers broadcast each forward)."""
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def bandwidth_summaries(allreduce_s: np.ndarray, bytes_per_update: float, world: int) -> dict[str, float]:
    """algbw = bytes / time and busbw = algbw * 2(n-1)/n, as NCCL-tests define them for all-reduce."""
    mean_s = float(middle_window(allreduce_s).mean()) if len(allreduce_s) else float("nan")
    algbw = bytes_per_update / mean_s / 1e9 if mean_s > 0 else float("nan")
    return {"allreduce_ms_mean": mean_s * 1e3, "allreduce_bytes": float(bytes_per_update),
            "algbw_gb_s": algbw, "busbw_gb_s": algbw * 2 * (world - 1) / world}


def run_ddp(protocol: Protocol, ctx: Context, result: Result, progress=noop, rank: int = 0,
            world: int = 1) -> None:
    """Fills `result` (on every rank; rank 0's is logged): epoch losses averaged over the ranks, test accuracy
    of rank 0's model, per-update time, compute and all-reduce."""
    device = ctx.runtime.device
    model = build_model(protocol.seed, device)
    ddp = wrap(model, device)
    hook = TimedAllReduce(device, world)
    ddp.register_comm_hook(None, hook.hook)  # DDP wants a function with a __name__
    optimizer = build_optimizer(model, protocol)
    stream = RankStream(ctx.stream(protocol), rank, world)
    test_images, test_labels = ctx.test_set(protocol)
    update_timer, backward_timer, step_timer = Timer(device), Timer(device), Timer(device)
    record, allreduce_s, buckets = EpochRecord(), [], []
    bytes_per_update = 0
    ddp.train()
    try:
        for epoch in range(1, protocol.epochs + 1):
            sums = []
            for _ in range(protocol.updates_per_epoch):
                mark = len(hook.seconds)
                with update_timer:
                    sums.append(run_update(ddp, optimizer, stream, 1, backward_timer, step_timer))
                allreduce_s.append(sum(hook.seconds[mark:]))
                buckets.append(len(hook.seconds) - mark)
                bytes_per_update = sum(hook.bytes[mark:])
                progress(1)
            losses = torch.stack(sums)
            dist.all_reduce(losses)  # one collective per epoch: the mean over ranks = accumulation's loss
            record.end_epoch(epoch, losses, world)
            if rank == 0:
                record.epoch_acc.append(evaluate(model, test_images, test_labels, protocol.eval_batch))
    finally:
        stream.close()
        update_s = np.array(update_timer.seconds())
        comm_s = np.array(allreduce_s)
        compute_ms = (np.array(backward_timer.seconds())[:len(comm_s)] - comm_s) * 1e3
        result.series.update(record.series(), update_time_s=series_from(update_s), compute_ms=series_from(compute_ms),
                             allreduce_ms=series_from(comm_s * 1e3),
                             opt_step_ms=series_from(np.array(step_timer.seconds()) * 1e3))
    result.summaries.update(update_summaries(update_s, protocol.effective_batch))
    result.summaries.update(bandwidth_summaries(comm_s, bytes_per_update, world))
    result.summaries.update(compute_ms_mean=float(middle_window(compute_ms).mean()),
                            opt_step_ms_mean=float(np.mean(step_timer.seconds())) * 1e3,
                            allreduce_buckets=float(buckets[-1]),
                            final_train_loss=record.epoch_loss[-1])
    if rank == 0:
        result.summaries["test_accuracy"] = record.epoch_acc[-1]
