"""One DDP worker process, started by torchrun (`torchrun ... -m gradacc.distributed.worker JOB.json`).

The job file (written by `gradacc ddp` / `gradacc verify`) holds the resolved protocol and options. Rank 0
alone writes to MLflow (one run per job) or the verify figures; every rank writes a failure's one-line
message to the job's error folder, so the launcher can show it without torchrun's traceback."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from gradacc.core.errors import GradaccError, Terminated
from gradacc.core.request import Request
from gradacc.core.runtime import resolve_runtime
from gradacc.distributed.launch import RUNS_FILE
from gradacc.distributed.rank import run_ddp, straggler_rank
from gradacc.distributed.verify import run_verify
from gradacc.names import ALLREDUCE, BACKEND, CONFIG, DDP, part_tags, workers_run_name
from gradacc.parts.context import Context, Result
from gradacc.study.run import Planned, config_key, measure_tracked
from gradacc.tracking.experiments import with_experiment_id


def stop_on_sigterm(signum, frame):
    raise Terminated()


def setup(job: dict, request: Request, local_rank: int) -> Context:
    """The process group (NCCL on GPUs, gloo on CPU), the runtime (one device per rank) and the data."""
    cuda = job["device"] == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    runtime = resolve_runtime(job["device"], request.settings.worker_threads, request.settings.tf32)
    return Context.prepare(runtime, Path(job["data_root"]), request.protocol.train_size, request.protocol.test_size)


def train(job: dict, request: Request, ctx: Context, rank: int, world: int) -> None:
    """The converge protocol as DDP; rank 0 logs the one MLflow run of the job."""
    protocol = request.protocol
    if rank != 0:
        run_ddp(protocol, ctx, Result(DDP), rank=rank, world=world, straggle_ms=job.get("straggle_ms", 0))
        return
    backend = dist.get_backend()
    name = workers_run_name(DDP, world, protocol.smoke)
    tags = {**part_tags(DDP, protocol.smoke), CONFIG: config_key(f"ddp{world}", protocol, ctx), BACKEND: backend}
    resolved = {**protocol.as_params(), **ctx.params(), "workers": str(world), "backend": backend,
                "straggle_rank": str(straggler_rank(world))}
    what = (f"DDP of {world} workers ({backend}) on {ctx.runtime.device_name}, "
            f"{ctx.runtime.torch_threads} thread(s) each, effective batch {protocol.effective_batch}, "
            f"{protocol.total_updates} updates"
            + (f", rank {straggler_rank(world)} straggling ({job['straggle_ms']} ms mean)" if job.get("straggle_ms")
               else ""))
    folder = Path(job["error_dir"]) if job.get("error_dir") else None

    def started(run_ids: list[str]) -> None:  # if this process is killed outright, the launcher ends the run
        if folder is not None:  # whole or not at all, whenever this process is killed
            partial = folder / (RUNS_FILE + ".part")
            partial.write_text("\n".join(run_ids))
            os.replace(partial, folder / RUNS_FILE)

    measure_tracked(Planned(name, DDP, tags, request.given_params(), resolved, protocol, what), ctx,
                    lambda result, advance: run_ddp(protocol, ctx, result, advance, rank, world,
                                                    job.get("straggle_ms", 0)),
                    protocol.total_updates, with_experiment_id(request).experiment_id, started=started)


NOT_TRAINED_BY_VERIFY = ("epochs", "updates_per_epoch", "total_updates", "images_per_epoch", "warmup_epochs",
                         "noise_scale", "eval_every_epoch", "warmup_micro_iters", "timed_micro_iters")


def verify(job: dict, request: Request, ctx: Context, rank: int, world: int) -> None:
    protocol = request.protocol
    figures = run_verify(protocol, ctx, rank, world, job["updates"])
    if rank == 0:  # the verify run's params: what was compared, on what (not the epochs it never trained)
        compared = {key: value for key, value in protocol.as_params().items() if key not in NOT_TRAINED_BY_VERIFY}
        figures["params"] = {**compared, **ctx.params(), "backend": dist.get_backend()}
        Path(job["result_path"]).write_text(json.dumps(figures, indent=1))


def report(error_file: Path | None, line: str) -> None:
    """The failure's one line: into the launcher's error folder, else (torchrun by hand) on stderr."""
    if error_file is not None:
        error_file.write_text(line)
    else:
        print(f"gradacc: error: {line}", file=sys.stderr, flush=True)


def serve(job: dict) -> None:
    """Runs the job on this rank; every failure becomes one line for the launcher, and a non-zero exit."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    error_file = Path(job["error_dir"]) / f"rank{rank}.txt" if job.get("error_dir") else None
    try:
        if job["mode"] == ALLREDUCE:  # no model, no data: the collective alone
            from gradacc.distributed.allreduce import bench_rank
            bench_rank(job, int(os.environ.get("LOCAL_RANK", 0)), rank, world)
            return
        request = Request.from_json(job["request"])
        ctx = setup(job, request, int(os.environ.get("LOCAL_RANK", 0)))
        (train if job["mode"] == "train" else verify)(job, request, ctx, rank, world)
    except KeyboardInterrupt:
        report(error_file, "interrupted")
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - every failure: one line for the launcher
        message = str(err) if isinstance(err, GradaccError) else f"{type(err).__name__}: {err}"
        report(error_file, message.splitlines()[0] if message else type(err).__name__)
        if not isinstance(err, GradaccError):
            raise  # torchrun's log keeps the traceback of an unexpected failure
        sys.exit(1)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    args = sys.argv[1:] if argv is None else argv
    serve(json.loads(Path(args[0]).read_text()))


if __name__ == "__main__":
    main()
