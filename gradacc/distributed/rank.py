"""Real synchronous SGD: the converge protocol run by N DistributedDataParallel workers (one rank's view).

Each rank builds the same seeded stream as accumulation with K = N and keeps micro-batch `rank` of every N,
so the N workers together see exactly the micro-batches of one accumulated update. The update is THE update
(engine.run_update) with k = 1 on the DDP-wrapped model: DDP's all-reduce averages the N gradients, which is
accumulation's sum of loss/K. The all-reduce runs in a timed communication hook, so every update's time
splits into compute (forward + backward without the hook) and all-reduce (the wait for the slowest rank, then the
collective). Once per epoch, outside the timed regions, rank 0 gathers every rank's per-update compute and hook
time: the slowest rank's hook time is the collective alone, rank 0's minus it the wait (docs/part4.md).
`straggle_ms` makes the last rank sleep an exponential time of that mean (seeded) before each forward."""
from __future__ import annotations

import os
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


STRAGGLE_STREAM = 0x57A6  # the straggler's generator: seeded by (seed, this), apart from the data's


class Straggler:
    """An injected straggler: before each training forward, this rank sleeps a time drawn from an exponential of
    mean `mean_ms` (0: never), from a generator seeded by the protocol's seed. Inside the compute timer, before
    the collective: to the others it is a slow worker."""

    def __init__(self, mean_ms: float, seed: int):
        self.mean_s = mean_ms / 1e3
        self.rng = np.random.default_rng([seed, STRAGGLE_STREAM])
        self.slept: list[float] = []

    def hook(self, module, args):
        if module.training and self.mean_s > 0:  # not during rank 0's evaluation
            pause = float(self.rng.exponential(self.mean_s))
            time.sleep(pause)
            self.slept.append(pause)


def straggler_rank(world: int) -> int:
    """The last rank straggles: rank 0, which logs the run, then measures the wait."""
    return world - 1


def gather_ranks(device: torch.device, world: int, *columns) -> np.ndarray:
    """Every rank's per-update columns (equal lengths on every rank), as (world, columns, updates) on each rank:
    one all_gather, called between epochs (never inside a timed region)."""
    mine = torch.tensor(np.stack([np.asarray(c, dtype=float) for c in columns]), dtype=torch.float64, device=device)
    out = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(out, mine)
    return np.stack([t.cpu().numpy() for t in out])


def per_rank_series(values: np.ndarray) -> tuple[list[int], list[float]]:
    """(updates, world) -> one series with step = update * world + rank (MLflow series have one step axis)."""
    return series_from(np.asarray(values, dtype=float).reshape(-1))


def collective_of(bucket_s: np.ndarray) -> np.ndarray:
    """Per update, the collective alone: for each bucket the fastest rank's time (the last to arrive waits for
    nobody), summed over the buckets; (world, buckets, updates) in, (updates,) out."""
    return bucket_s.min(axis=0).sum(axis=0) if bucket_s.size else np.zeros(bucket_s.shape[-1])


def bucket_rows(seconds: list[float], counts: list[int]) -> np.ndarray:
    """This rank's per-bucket hook times of some updates as (buckets, updates), zero where an update had fewer
    buckets (DDP rebuilds its buckets after the first update; every rank has the same counts)."""
    out = np.zeros((max(counts, default=0), len(counts)))
    start = 0
    for u, count in enumerate(counts):
        out[:count, u] = seconds[start:start + count]
        start += count
    return out


def rank_summaries(compute_s: np.ndarray, hook_s: np.ndarray, collective_s: np.ndarray,
                   slept_s: np.ndarray) -> dict[str, float]:
    """From (updates, world) arrays and the per-update collective, middle 60% of updates: the collective alone,
    rank 0's wait (its hook time minus the collective), the slowest rank's compute, the straggler's sleeps."""
    if not len(compute_s):
        return {}
    return {"collective_ms_mean": float(middle_window(collective_s).mean()) * 1e3,
            "wait_ms_mean": float(middle_window(hook_s[:, 0] - collective_s).mean()) * 1e3,
            "max_compute_ms_mean": float(middle_window(compute_s.max(axis=1)).mean()) * 1e3,
            "straggle_ms_drawn_mean": float(slept_s.max(axis=1).mean()) * 1e3}


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
            world: int = 1, straggle_ms: float = 0.0) -> None:
    """Fills `result` (on every rank; rank 0's is logged): epoch losses averaged over the ranks, test accuracy
    of rank 0's model, per-update time, compute and all-reduce, and every rank's compute and hook time."""
    device = ctx.runtime.device
    model = build_model(protocol.seed, device)
    straggler = Straggler(straggle_ms if rank == straggler_rank(world) else 0.0, protocol.seed)
    model.register_forward_pre_hook(straggler.hook)  # inside DDP's forward, after its buffer broadcast
    ddp = wrap(model, device)
    hook = TimedAllReduce(device, world)
    ddp.register_comm_hook(None, hook.hook)  # DDP wants a function with a __name__
    optimizer = build_optimizer(model, protocol)
    stream = RankStream(ctx.stream(protocol), rank, world)
    test_images, test_labels = ctx.test_set(protocol)
    update_timer, backward_timer, step_timer = Timer(device), Timer(device), Timer(device)
    record, allreduce_s, buckets, gathered = EpochRecord(), [], [], []
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
            done = len(allreduce_s) - protocol.updates_per_epoch  # this epoch's updates: [done, len)
            computed = np.array(backward_timer.seconds()[done:]) - np.array(allreduce_s[done:])
            slept = np.zeros(len(computed))
            slept[:len(straggler.slept[done:])] = straggler.slept[done:]
            per_bucket = bucket_rows(hook.seconds[sum(buckets[:done]):], buckets[done:])
            gathered.append(gather_ranks(device, world, computed, allreduce_s[done:], slept, *per_bucket))
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
        widest = max((g.shape[1] for g in gathered), default=3)  # epochs may differ in their bucket count
        ranks = np.concatenate([np.pad(g, ((0, 0), (0, widest - g.shape[1]), (0, 0))) for g in gathered], axis=2) \
            if gathered else np.zeros((world, 3, 0))  # (world, 3 + buckets, updates)
        collective = collective_of(ranks[:, 3:])
        result.series.update(record.series(), update_time_s=series_from(update_s), compute_ms=series_from(compute_ms),
                             allreduce_ms=series_from(comm_s * 1e3),
                             opt_step_ms=series_from(np.array(step_timer.seconds()) * 1e3),
                             rank_compute_ms=per_rank_series(ranks[:, 0].T * 1e3),
                             rank_allreduce_ms=per_rank_series(ranks[:, 1].T * 1e3),
                             collective_ms=series_from(collective * 1e3))
    result.summaries.update(update_summaries(update_s, protocol.effective_batch))
    result.summaries.update(bandwidth_summaries(comm_s, bytes_per_update, world))
    result.summaries.update(compute_ms_mean=float(middle_window(compute_ms).mean()),
                            opt_step_ms_mean=float(np.mean(step_timer.seconds())) * 1e3,
                            allreduce_buckets=float(buckets[-1]),
                            final_train_loss=record.epoch_loss[-1], straggle_ms_set=float(straggle_ms),
                            cpu_cores=float(os.cpu_count() or 1))  # the model's core sharing: N x threads / this
    result.summaries.update(rank_summaries(ranks[:, 0].T, ranks[:, 1].T, collective, ranks[:, 2].T))
    if rank == 0:
        result.summaries["test_accuracy"] = record.epoch_acc[-1]
