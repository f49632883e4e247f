"""`gradacc allreduce`: the all-reduce benchmark (nccl-tests style) whose fitted link Part 4's model takes."""
from __future__ import annotations

import click

from gradacc.cli.types import Threads, WholeNumber
from gradacc.core.config import DEVICES


@click.command("allreduce")
@click.option("--workers", type=WholeNumber(2), default=2, show_default=True,
              help="Processes (ranks) on this machine: one GPU each with NCCL, else CPU processes (gloo).")
@click.option("--min-kib", type=WholeNumber(1), default=4, show_default=True, help="Smallest message, KiB.")
@click.option("--max-mib", type=WholeNumber(1), default=64, show_default=True,
              help="Largest message, MiB (sizes double from --min-kib up to it).")
@click.option("--warmup", type=WholeNumber(0), default=5, show_default=True,
              help="Untimed all-reduces per size before the timed ones.")
@click.option("--iters", type=WholeNumber(2), default=20, show_default=True,
              help="Timed all-reduces per size, each started from a barrier.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="auto = CUDA when present (NCCL), else CPU (gloo).")
@click.option("--threads", type=Threads(), default="auto", show_default=True,
              help="torch CPU threads per rank (auto = 1, as for DDP workers).")
@click.option("--experiment", default=None, show_default="$MLFLOW_EXPERIMENT_NAME, else MLflow's Default",
              help="MLflow experiment (ignored under `mlflow run`, which chooses it).")
def allreduce(workers, min_kib, max_mib, warmup, iters, device, threads, experiment):
    """Part 4's link, measured: all-reduce time, algbw and busbw per message size between N ranks, and the ring
    model's alpha (latency per step) and B (bandwidth) fitted with 95% intervals, as an `allreduce-wN` run."""
    from gradacc.distributed.allreduce import run_allreduce_job
    run_allreduce_job(workers, device, threads, min_kib, max_mib, warmup, iters, experiment)
