"""`gradacc ddp` and `gradacc verify` (Part 4's real synchronous SGD through torchrun), and the options of a worker
that torchrun starts by hand on several nodes (`torchrun ... -m gradacc.cli.ddp_node OPTIONS`)."""
from __future__ import annotations

import click

from gradacc.cli.options import common_options, system_metrics_option
from gradacc.cli.request import build_request
from gradacc.cli.types import WholeNumber


def straggle_option(func):
    """ddp (and its node form): one rank made a straggler, to test the model's straggler term."""
    return click.option("--straggle-ms", type=WholeNumber(0), default=0, show_default=True,
                        help="An injected straggler: the last rank sleeps, before each forward, a time drawn from an "
                             "exponential of this mean in ms (seeded by --seed); 0 = none.")(func)


@click.command("ddp")
@click.option("--workers", type=WholeNumber(1), default=2, show_default=True,
              help="DDP workers (processes) on this machine: one GPU each with NCCL, else CPU workers (gloo).")
@straggle_option
@common_options
@system_metrics_option
def ddp(**options):
    """Part 4, real synchronous SGD: the converge protocol as N DistributedDataParallel workers (torchrun),
    the same data as accumulation with K=N; per-update compute vs all-reduce time, algbw/busbw. On a CPU,
    --threads is per worker (auto = 1)."""
    from gradacc.distributed.launch import run_ddp_job
    run_ddp_job(build_request(options, [options["workers"]]), options["straggle_ms"])


@click.command("verify")
# 4 by default: with 2 the sums are exact (halving is exact and two summands have one order), so neither the
# tolerance nor the reversed-order control would see any rounding; with 3 the 1/N scale rounds differently
# before backward (accumulation) and after it (DDP), a difference the control does not contain.
@click.option("--workers", type=WholeNumber(1), default=4, show_default=True,
              help="DDP workers, compared with accumulation of K=workers (a power of two from 4: rounding is "
                   "visible and the 1/N scale exact, so the reversed-order control is the yardstick).")
@click.option("--updates", type=WholeNumber(1), default=5, show_default=True,
              help="Updates compared (the first and the last).")
@common_options
def verify(**options):
    """Accumulation (K=N) against DDP (N workers) from the same weights and micro-batches: relative differences
    of gradients, weights and BatchNorm statistics; exits non-zero if the first update's gradients differ by
    1e-5 or more."""
    from gradacc.distributed.launch import run_verify_job
    run_verify_job(build_request(options, [options["workers"]]), options["updates"])


@click.command("gradacc.cli.ddp_node")
@straggle_option
@common_options
@system_metrics_option
def node_options(**options):
    """The options of a worker started by torchrun directly (multi-node): the job is built on each rank."""
    return options
