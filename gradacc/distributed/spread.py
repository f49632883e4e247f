"""A study spread over several processes, one GPU each: `torchrun --nproc-per-node G -m gradacc sweep ...` (or
`gradacc sweep --gpus G`, which launches that command on this node: gradacc/distributed/spread_launch.py).

Rank 0 runs the one sweep (`study.sweep.run_sweep`) with the other ranks as its `OtherRanks`: it opens the parent run,
finds the configurations already measured, splits the rest with `study.sweep.assign` and broadcasts the study id,
the parent run and every rank's share. Each rank loads the data itself and runs its
share alone on its device (cuda:LOCAL_RANK; the CPU on a machine without CUDA), so each run's timings are its own
GPU's. A final gather brings every rank's Outcome to rank 0, which closes the parent, runs compare over the whole
study and fails with one line naming any configuration that failed.

The coordination is a gloo group whatever the compute device: only a few small objects cross it, at the start
and at the end, so it needs no GPU of its own and no NCCL. Its timeout bounds every wait (see GROUP_TIMEOUT)."""
from __future__ import annotations

import os
import pickle
import time
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist

from gradacc.core.errors import ConfigError, GradaccError
from gradacc.core.request import Request
from gradacc.names import RANK, WORLD_SIZE
from gradacc.parts.context import prepare
from gradacc.study.console import say
from gradacc.study.plan import trains_together
from gradacc.study.sweep import Outcome, reason, run_share, run_sweep
from gradacc.tracking.experiments import with_experiment_id

# The gloo group's timeout, on every collective: the start (all ranks have loaded their data) and the final gather,
# where rank 0 waits for the slowest rank's share. `assign` keeps the shares within about one configuration of each
# other, so that wait is short, but it must still outlast the longest configuration, hence hours. A rank that dies
# (even SIGKILL) closes its sockets, and the others' next collective usually fails at once (not always: see
# `finished`); torchrun also stops the node's other ranks, and `finished` lets them handle that SIGTERM. The timeout
# is for a rank that hangs, or a node that vanishes without closing its connections.
GROUP_TIMEOUT = timedelta(hours=6)


class SpreadFailed(GradaccError, RuntimeError):
    """A spread sweep where a configuration failed, a rank could not start, or a rank was lost."""


def torchrun_world() -> tuple[int, int, int] | None:
    """(rank, local rank, world size) when this process is one of several that torchrun started, else None."""
    env = os.environ
    if not all(key in env for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        return None
    world = int(env["WORLD_SIZE"])
    return (int(env["RANK"]), int(env["LOCAL_RANK"]), world) if world > 1 else None


def use_rank_gpu(device: str, local_rank: int) -> None:
    """cuda:LOCAL_RANK where the sweep runs on CUDA (the runtime takes the current device); nothing on a CPU."""
    if device == "cpu" or not torch.cuda.is_available():
        return  # --device cuda without CUDA: the runtime's own error says so
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(f"local rank {local_rank} has no GPU of its own: this node has {count} (start at most "
                          f"{count} processes per node, one GPU each)")
    torch.cuda.set_device(local_rank)


def setup(request: Request, local_rank: int):
    """This rank's device and data: (Context, None), or (None, why) — kept for the final report, not raised, so that
    the other ranks are not left waiting."""
    try:
        use_rank_gpu(request.settings.device, local_rank)
        return prepare(request.protocols, request.settings), None
    except Exception as err:
        if not isinstance(err, GradaccError):
            traceback.print_exc()
        return None, reason(err)


class RanksLost(SpreadFailed):
    """A collective failed: a peer closed its connection (it died) or GROUP_TIMEOUT passed."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


def collective(what: str, call, rank: int | None = None):
    try:
        return call()
    except (RuntimeError, ValueError) as err:  # gloo's and the rendezvous' own errors, with the peer's address
        rank = dist.get_rank() if rank is None else rank
        cause = reason(err).split(". This is typically caused", 1)[0]  # gloo's advice to read the peer's log
        raise RanksLost(f"spread sweep: rank {rank} lost the other ranks at {what} ({cause}); the runs that "
                        "finished are kept", cause) from None


def finished(work) -> None:
    """Waits for an asynchronous collective from Python, a short sleep at a time, so that torchrun's SIGTERM (sent
    when another rank died) is handled at once and the run ends KILLED here. A blocking collective waits in C++,
    where Python cannot run its signal handler, and gloo does not always notice a peer killed outright (seen in CI:
    rank 0 sat in the final gather until torchrun's SIGKILL 30 s later, its parent run left RUNNING)."""
    while not work.is_completed():
        time.sleep(0.05)
    work.wait()  # raises gloo's error, if the collective failed


def padded(data: bytes, size: int) -> torch.Tensor:
    box = torch.zeros(size, dtype=torch.uint8)
    if data:  # (frombuffer refuses an empty buffer)
        box[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return box


def unpickled(box: torch.Tensor, size: int):
    return pickle.loads(box[:size].numpy().tobytes())


def broadcast(plan: dict | None) -> dict | None:
    """Rank 0's plan to every rank (the object collectives cannot be waited on from Python: see `finished`)."""
    data = pickle.dumps(plan) if dist.get_rank() == 0 else b""  # this sweep's own processes: pickle, as torch's does
    size = torch.tensor([len(data)])
    collective("the start", lambda: finished(dist.broadcast(size, src=0, async_op=True)))
    box = padded(data, int(size))
    collective("the start", lambda: finished(dist.broadcast(box, src=0, async_op=True)))
    return unpickled(box, int(size))


def gather(outcome: Outcome, world: int) -> list[Outcome] | None:
    """Every rank's Outcome, on rank 0 (None on the others)."""
    data = pickle.dumps(outcome)
    size = torch.tensor([len(data)])
    sizes = [torch.zeros_like(size) for _ in range(world)]
    collective("the final gather", lambda: finished(dist.all_gather(sizes, size, async_op=True)))
    box = padded(data, int(max(sizes)))
    boxes = [torch.zeros_like(box) for _ in range(world)] if outcome.rank == 0 else None
    collective("the final gather", lambda: finished(dist.gather(box, boxes, dst=0, async_op=True)))
    return [unpickled(b, int(n)) for b, n in zip(boxes, sizes)] if boxes is not None else None


def failure_line(outcomes: list[Outcome], lost: str | None) -> str | None:
    """One line naming what failed on which rank, or None when every share was run."""
    failed = [o.failure() for o in outcomes if o.failure()]
    if lost:
        failed.append(f"not every rank reported back ({lost}): a rank died, or hung longer than {GROUP_TIMEOUT}")
    if not failed:
        return None
    return ("spread sweep: " + "; ".join(failed) + "; the other runs are kept (run the sweep again: what finished "
            "is reused)")


def run_spread_sweep(request: Request, after, together: str = "false") -> str | None:
    """This rank's side of a spread sweep of the request (torchrun's environment names the rank); returns the study
    id. Rank 0 resolves the experiment and the study, and hands them to the others with their shares."""
    rank, local_rank, world = torchrun_world()
    collective("the start", lambda: dist.init_process_group("gloo", timeout=GROUP_TIMEOUT), rank)
    interrupted = False
    try:
        if local_rank == 0:  # first, alone on its node: it downloads the data where it is missing
            ctx, error = setup(request, local_rank)
        collective("the start", lambda: finished(dist.barrier(async_op=True)))
        if local_rank != 0:
            ctx, error = setup(request, local_rank)
        if rank == 0:
            if error:
                broadcast(None)
                raise SpreadFailed(f"spread sweep: rank 0 could not start ({error}); nothing was run")
            return run_sweep(with_experiment_id(request), ctx, after,
                             trains_together(together, ctx, list(request.protocols)), OtherRanks(world))
        return follow(ctx, error, rank, world)
    except KeyboardInterrupt:  # SIGTERM too: the process is about to exit, and a collective may still be pending,
        interrupted = True     # which destroying the group would wait for (seen: until torchrun's SIGKILL, 30 s)
        raise
    finally:
        if dist.is_initialized() and not interrupted:
            dist.destroy_process_group()


class OtherRanks:
    """A spread sweep's other ranks, as rank 0's `run_sweep` (gradacc/study/sweep.py) sees them: the plan broadcast,
    every outcome gathered, a failure kept and named in one line at the end."""

    Failed = SpreadFailed

    def __init__(self, world: int):
        self.world = world

    def send(self, plan: dict) -> None:
        broadcast(plan)

    def gather(self, outcome: Outcome) -> tuple[list[Outcome], str | None]:
        try:
            return gather(outcome, self.world), None
        except RanksLost as err:  # still close the parent and compare what finished
            return [outcome], err.cause

    def tags(self, rank: int) -> dict[str, str]:
        return rank_tags(rank, self.world)

    def failure_line(self, outcomes: list[Outcome], lost: str | None) -> str | None:
        return failure_line(outcomes, lost)


def follow(ctx, error, rank: int, world: int) -> str | None:
    """Ranks above 0: the plan from rank 0, this rank's share, its outcome back to rank 0. Exits 0 even when a run
    failed: rank 0 reports it, and under torchrun a rank that exits non-zero has every other rank stopped."""
    plan = broadcast(None)
    if plan is None:
        say(f"sweep: rank {rank}: rank 0 could not start; nothing run here")
        return None
    configs = plan["shares"][rank]  # the configurations themselves: rank 0 already left out what it reused
    outcome = Outcome(rank)
    if error:
        outcome.why, outcome.not_run = error, [c.label for c in configs]
        say(f"sweep: {outcome.failure()}")
    else:
        run_share(configs, ctx, plan["request"], plan["parent"], outcome, rank_tags(rank, world), keep_failure=True)
    gather(outcome, world)
    return plan["request"].study


def rank_tags(rank: int, world: int) -> dict[str, str]:
    return {RANK: str(rank), WORLD_SIZE: str(world)}
