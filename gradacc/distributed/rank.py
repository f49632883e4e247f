"""Real synchronous SGD: the converge protocol run by N DistributedDataParallel workers (one rank's view). The training
is Part 3's own (parts/converge.py's Training, its epochs, evaluation and records), with `DataParallel` as its switch.

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
from gradacc.core.timing import Timer, middle_window
from gradacc.parts.context import Context, Result, noop, series_from
from gradacc.parts.converge import run_converge


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


class DataParallel:
    """What makes parts/converge.py's Training a DDP rank (the switch `Training(..., parallel=...)`): the model
    wrapped in DDP with the timed all-reduce hook, this rank's micro-batch of every update, the epoch's losses
    summed over the ranks and every rank's timings gathered once per epoch (outside the timed regions), the test
    accuracy on rank 0 alone; the DDP series and summaries at the end. The epochs, the evaluation and the records
    are Training's own, as for accumulation."""

    def __init__(self, device: torch.device, rank: int, world: int, straggle_ms: float, seed: int):
        self.device, self.rank, self.world, self.straggle_ms = device, rank, world, straggle_ms
        self.evaluates = rank == 0  # rank 0 logs the run
        self.straggler = Straggler(straggle_ms if rank == straggler_rank(world) else 0.0, seed)
        self.hook = TimedAllReduce(device, world)
        self.backward_timer, self.step_timer = Timer(device), Timer(device)  # make_update's micro and step timers
        self.allreduce_s: list[float] = []  # per update: this rank's hook time (wait + collective)
        self.buckets: list[int] = []  # per update: how many buckets DDP all-reduced
        self.bytes_per_update = 0
        self.gathered: list[np.ndarray] = []  # per epoch: (world, 3 + buckets, updates) from every rank
        self.mark = 0

    def wrap(self, model: torch.nn.Module) -> DistributedDataParallel:
        model.register_forward_pre_hook(self.straggler.hook)  # inside DDP's forward, after its buffer broadcast
        ddp = wrap(model, self.device)
        ddp.register_comm_hook(None, self.hook.hook)  # DDP wants a function with a __name__
        return ddp

    def rank_stream(self, stream) -> RankStream:
        return RankStream(stream, self.rank, self.world)

    def micro_steps(self, k: int) -> int:
        """This rank's micro-steps of an update of K micro-batches: one, since a DDP job's K is its worker count."""
        return k // self.world

    def updated(self) -> None:
        """After an update (outside its timer): its hook times and bytes."""
        seconds = self.hook.seconds[self.mark:]
        self.allreduce_s.append(sum(seconds))
        self.buckets.append(len(seconds))
        self.bytes_per_update = sum(self.hook.bytes[self.mark:])
        self.mark = len(self.hook.seconds)

    def end_epoch(self, losses: torch.Tensor, updates: int) -> torch.Tensor:
        """Every rank's timings of the epoch's `updates` gathered (one all_gather), then the epoch's loss sums
        summed over the ranks (one all_reduce): accumulation's sums over K = N micro-batches."""
        done = len(self.allreduce_s) - updates  # this epoch's updates: [done, len)
        computed = np.array(self.backward_timer.seconds()[done:]) - np.array(self.allreduce_s[done:])
        slept = np.zeros(len(computed))
        slept[:len(self.straggler.slept[done:])] = self.straggler.slept[done:]
        per_bucket = bucket_rows(self.hook.seconds[sum(self.buckets[:done]):], self.buckets[done:])
        self.gathered.append(gather_ranks(self.device, self.world, computed, self.allreduce_s[done:], slept,
                                          *per_bucket))
        dist.all_reduce(losses)
        return losses

    def close(self, result: Result) -> None:
        """The DDP series of what was measured, also after a failure or an interrupt."""
        comm_s = np.array(self.allreduce_s)
        self.compute_ms = (np.array(self.backward_timer.seconds())[:len(comm_s)] - comm_s) * 1e3
        widest = max((g.shape[1] for g in self.gathered), default=3)  # epochs may differ in their bucket count
        self.ranks = np.concatenate([np.pad(g, ((0, 0), (0, widest - g.shape[1]), (0, 0))) for g in self.gathered],
                                    axis=2) if self.gathered else np.zeros((self.world, 3, 0))
        self.collective = collective_of(self.ranks[:, 3:])
        result.series.update(compute_ms=series_from(self.compute_ms), allreduce_ms=series_from(comm_s * 1e3),
                             opt_step_ms=series_from(np.array(self.step_timer.seconds()) * 1e3),
                             rank_compute_ms=per_rank_series(self.ranks[:, 0].T * 1e3),
                             rank_allreduce_ms=per_rank_series(self.ranks[:, 1].T * 1e3),
                             collective_ms=series_from(self.collective * 1e3))

    def summarize(self, result: Result) -> None:
        """The DDP summaries of a job that ran every epoch (after `close`)."""
        ranks = self.ranks
        result.summaries.update(bandwidth_summaries(np.array(self.allreduce_s), self.bytes_per_update, self.world))
        result.summaries.update(compute_ms_mean=float(middle_window(self.compute_ms).mean()),
                                opt_step_ms_mean=float(np.mean(self.step_timer.seconds())) * 1e3,
                                allreduce_buckets=float(self.buckets[-1]), straggle_ms_set=float(self.straggle_ms),
                                cpu_cores=float(os.cpu_count() or 1))  # the model's core sharing: N x threads / this
        result.summaries.update(rank_summaries(ranks[:, 0].T, ranks[:, 1].T, self.collective, ranks[:, 2].T))


def run_ddp(protocol: Protocol, ctx: Context, result: Result, progress=noop, rank: int = 0,
            world: int = 1, straggle_ms: float = 0.0) -> None:
    """Fills `result` (on every rank; rank 0's is logged): Part 3's training as this rank of N (epoch losses
    averaged over the ranks, test accuracy of rank 0's model, each update timed whole), with per-update compute
    and all-reduce, and every rank's compute and hook time."""
    run_converge(protocol, ctx, result, progress, DataParallel(ctx.runtime.device, rank, world, straggle_ms,
                                                               protocol.seed))
