"""One DDP worker process, started by torchrun (`torchrun ... -m gradacc.ddp_worker JOB.json`).

The job file (written by `gradacc ddp` / `gradacc verify`) holds the resolved protocol and options. Rank 0
alone writes to MLflow (one run per job) or the verify figures; every rank writes a failure's one-line
message to the job's error folder, so the launcher can show it without torchrun's traceback."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import click
import torch
import torch.distributed as dist

from .config import Protocol
from .errors import Diverged, GradaccError


class Terminated(KeyboardInterrupt):
    """SIGTERM (torchrun stopping the job): the run ends KILLED with what was measured."""


def _on_sigterm(signum, frame):
    raise Terminated()


def run_name(workers: int, smoke: bool) -> str:
    return f"ddp-w{workers}" + ("-smoke" if smoke else "")


def setup(job: dict, local_rank: int):
    """The process group (NCCL on GPUs, gloo on CPU), the runtime (one device per rank) and the data."""
    from .parts import Context
    from .runtime import resolve_runtime
    cuda = job["device"] == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    runtime = resolve_runtime(job["device"], job["threads"])
    return Context.prepare(runtime, Path(job["data_root"]), job["protocol"]["train_size"],
                           job["protocol"]["test_size"])


def train(job: dict, protocol: Protocol, ctx, rank: int, world: int) -> None:
    """The converge protocol as DDP; rank 0 logs the one MLflow run of the job."""
    from .parts import Result
    from .parts.ddp import run_ddp
    if rank != 0:
        run_ddp(protocol, ctx, Result("ddp"), rank=rank, world=world)
        return
    from .runner import config_key, progress_bar, write_result
    from .tracking import print_link, tracked_run
    name = run_name(world, protocol.smoke)
    tags = {"gradacc.part": "ddp", "gradacc.smoke": str(protocol.smoke).lower(),
            "gradacc.config": config_key(f"ddp{world}", protocol, ctx), "gradacc.backend": dist.get_backend()}
    with tracked_run(name, tags, job["experiment"]) as run:
        run.log_params(job["given"], {**protocol.as_params(), **ctx.params(), "workers": str(world),
                                      "backend": dist.get_backend()})
        click.echo(f"{name}: DDP of {world} workers ({dist.get_backend()}) on {ctx.runtime.device_name}, "
                   f"{ctx.runtime.torch_threads} thread(s) each, effective batch {protocol.effective_batch}, "
                   f"{protocol.total_updates} updates", err=True)
        result = Result("ddp")
        start = time.perf_counter()
        try:
            with progress_bar(protocol.total_updates, name) as advance:
                run_ddp(protocol, ctx, result, advance, rank, world)
        except Diverged as err:
            run.set_tags({"gradacc.failure": str(err)})
            raise
        finally:
            result.summaries.update(wall_time_s=time.perf_counter() - start, peak_memory_mb=ctx.peak_memory_mb())
            write_result(run, result, protocol, ctx, name)
        click.echo(f"{name}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.summaries.items()), err=True)
    print_link(run.experiment_id, run.run_id)


def verify(job: dict, protocol: Protocol, ctx, rank: int, world: int) -> None:
    from .verify import run_verify
    figures = run_verify(protocol, ctx, rank, world, job["updates"])
    if rank == 0:
        Path(job["result_path"]).write_text(json.dumps(figures, indent=1))


def report(error_file: Path | None, line: str) -> None:
    """The failure's one line: into the launcher's error folder, else (torchrun by hand) on stderr."""
    if error_file is not None:
        error_file.write_text(line)
    else:
        click.echo(f"gradacc: error: {line}", err=True)


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    args = sys.argv[1:] if argv is None else argv
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    error_file = None
    try:
        if args and args[0].endswith(".json"):  # written by `gradacc ddp` / `gradacc verify`
            job = json.loads(Path(args[0]).read_text())
        else:  # torchrun started by hand (several nodes): the same options as `gradacc ddp`
            from . import cli  # noqa: F401 - first: ddp_cli borrows cli's options and cli registers ddp_cli
            from .ddp_cli import job_from_options
            job = job_from_options(args)
        error_file = Path(job["error_dir"]) / f"rank{rank}.txt" if job.get("error_dir") else None
        ctx = setup(job, int(os.environ.get("LOCAL_RANK", 0)))
        protocol = Protocol(**job["protocol"])
        (train if job["mode"] == "train" else verify)(job, protocol, ctx, rank, world)
    except KeyboardInterrupt:
        report(error_file, "interrupted")
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - every failure: one line for the launcher
        message = str(err) if isinstance(err, GradaccError) else (
            err.format_message() if isinstance(err, click.ClickException) else f"{type(err).__name__}: {err}")
        report(error_file, message.splitlines()[0] if message else type(err).__name__)
        if not isinstance(err, (GradaccError, click.ClickException)):
            raise  # torchrun's log keeps the traceback of an unexpected failure
        sys.exit(1)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
