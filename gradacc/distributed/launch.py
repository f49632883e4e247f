"""`gradacc ddp` and `gradacc verify`'s work: launch N DDP workers through torchrun on this machine.

It checks what it can before starting any process (worker count, protocol, data folder), writes the job to a
file, runs `torchrun --standalone --nproc-per-node N -m gradacc.distributed.worker JOB` and shows the workers'
own lines; a failing worker becomes one `gradacc: error:` line (torchrun's log is kept in a file)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from gradacc.core.data import ensure_dataset, resolve_data_dir
from gradacc.core.errors import ConfigError, GradaccError
from gradacc.core.request import Request
from gradacc.core.runtime import wants_cuda
from gradacc.distributed.verify import table_lines
from gradacc.names import VERIFY, part_tags, workers_run_name
from gradacc.study.console import say
from gradacc.tracking.experiments import with_experiment_id
from gradacc.tracking.orphans import end_runs_left_running
from gradacc.tracking.runs import print_link, tracked_run

CORES_PER_WORKER_LIMIT = 4  # at most this many CPU workers per core: beyond, gloo jobs only thrash
SHOWN_PREFIXES = ("ddp-w", "runs:")  # worker lines passed through; the rest goes to the log
WORKER = "gradacc.distributed.worker"  # the module each worker runs
RUNS_FILE = "runs.txt"  # in the job's folder: the run ids rank 0 opened, for the launcher to end if rank 0 is killed
CHILD_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)")  # torchrun's log line for a worker


def ended_by_signal(line: str) -> str | None:
    """'local rank 1 ended by signal 9 (SIGKILL)' from torchrun's line for a worker a signal ended, else None."""
    found = CHILD_FAILED.search(line)
    if not found or int(found.group(1)) >= 0:
        return None
    number = -int(found.group(1))
    try:
        name = f" ({signal.Signals(number).name})"
    except ValueError:
        name = ""
    return f"local rank {found.group(2)} ended by signal {number}{name}"


class WorkerFailed(GradaccError, RuntimeError):
    """A DDP worker (or torchrun) failed; the message names the first error and where the full log is."""


class VerifyFailed(GradaccError, RuntimeError):
    """Accumulation and DDP gradients differ beyond the tolerance."""


def check_processes(count: int, device: str, noun: str) -> str:
    """The device that `count` local processes of torchrun (DDP workers, a spread sweep's ranks) will use ('cuda'
    or 'cpu'); ConfigError where this machine cannot run them: one GPU each, or on a CPU a few per core."""
    cuda = wants_cuda(device)
    if cuda and count > torch.cuda.device_count():
        raise ConfigError(f"{count} {noun} need {count} GPUs (one each), but this machine has "
                          f"{torch.cuda.device_count()}")
    cores = os.cpu_count() or 1
    if not cuda and count > CORES_PER_WORKER_LIMIT * cores:
        raise ConfigError(f"{count} CPU {noun} on {cores} cores is more than this machine can run "
                          f"(at most {CORES_PER_WORKER_LIMIT * cores}: {CORES_PER_WORKER_LIMIT} per core)")
    return "cuda" if cuda else "cpu"


def check_workers(workers: int, device: str) -> str:
    """check_processes for DDP workers, whose count comes from --workers."""
    if workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers}")
    return check_processes(workers, device, "workers")


def worker_env() -> dict[str, str]:
    """This environment, with this package's folder first on PYTHONPATH so the workers run the same code."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds gradacc/
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def end_killed_runs(who: str, how: str, study: str | None = None, run_ids: list[str] | None = None) -> None:
    """After torchrun has exited no worker is left to end its runs: those of `study` (or `run_ids`) still RUNNING
    (their process killed outright, or by torchrun after a hung collective) are ended KILLED, with one line. A store
    that cannot do it is one line too, the job's own error still to come."""
    try:
        names = end_runs_left_running(study, f"killed: its process ended before it could end the run ({how})",
                                      run_ids)
    except GradaccError as err:
        say(f"{who}: {err}")
        return
    if names:
        where = f" of study {study}" if study else ""
        say(f"{who}: {len(names)} run(s){where} left RUNNING by a killed process, ended KILLED: {', '.join(names)}")


def opened_runs(folder: Path) -> list[str]:
    runs = folder / RUNS_FILE
    return runs.read_text().split() if runs.is_file() else []


def launch(job: dict, workers: int) -> Path:
    """torchrun with N local workers; their own lines shown, everything kept in a log file."""
    folder = Path(tempfile.mkdtemp(prefix="gradacc-ddp-"))
    job = dict(job, error_dir=str(folder), result_path=str(folder / "result.json"))
    (folder / "job.json").write_text(json.dumps(job, indent=1))
    log = folder / "torchrun.log"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={workers}",
            "-m", WORKER, str(folder / "job.json")]
    with log.open("w") as log_file:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=worker_env())
        died: list[str] = []
        try:
            for line in process.stdout:
                log_file.write(line)
                if why := ended_by_signal(line):
                    died.append(why)
                shown = line.split("]:", 1)[1] if line.startswith("[rank") and "]:" in line else line
                if shown.lstrip().startswith(SHOWN_PREFIXES):
                    say(shown.rstrip("\n"))
            code = process.wait()
        except KeyboardInterrupt:
            process.terminate()  # torchrun stops the workers with SIGTERM: rank 0's run ends KILLED
            process.wait(timeout=60)
            end_killed_runs("ddp", "interrupted", run_ids=opened_runs(folder))  # unless torchrun killed it
            raise
    if code != 0:
        end_killed_runs("ddp", f"torchrun exited with code {code}", run_ids=opened_runs(folder))
        if died:  # killed outright (the OOM killer, say): the other workers' errors only follow from it
            raise WorkerFailed(f"DDP worker {', '.join(died)}, and torchrun stopped the others (full log: {log})")
        # The rank that failed first, not the ones torchrun then stopped ('interrupted').
        errors = sorted(folder.glob("rank*.txt"), key=lambda p: (p.read_text().strip() == "interrupted", p.name))
        if not errors:
            raise WorkerFailed(f"torchrun exited with code {code} (full log: {log})")
        raise WorkerFailed(f"{errors[0].read_text().strip()} (DDP worker {errors[0].stem}; full log: {log})")
    return folder


def make_job(mode: str, request: Request, local_workers: int | None = None, **extra) -> dict:
    """The job every worker reads, from a request whose protocol is the accumulation the job equals (K = N workers);
    `local_workers`: the workers of this node where the job spans several."""
    protocol = request.protocol
    if protocol.cuda_graphs:  # DDP's all-reduce hook runs in Python between the kernels: nothing to capture whole
        raise ConfigError("--cuda-graphs is not supported by ddp and verify (DDP runs eagerly)")
    resolved_device = check_workers(local_workers or protocol.k, request.settings.device)
    root = resolve_data_dir(request.settings.data_dir)
    ensure_dataset(root)  # found (or downloaded) once here, not by N workers at the same time
    # the request whole, and what this machine resolved for the workers: their device, the data's folder
    return {"mode": mode, "request": request.as_json(), "device": resolved_device, "data_root": str(root.resolve()),
            **extra}


def log_verify(figures: dict, request: Request, table: str) -> None:
    """The verify figures as a run of their own (`verify-wN`): the options as given and the resolved protocol and
    environment as params, metrics, and the table as verify.txt."""
    smoke = request.smoke
    name = workers_run_name(VERIFY, figures["workers"], smoke)
    metrics = {f"{kind}_rel_diff_{when}": figures[key][f"{kind}_rel_diff"]
               for key, when in (("first", "first"), ("last", "last"), ("control_first", "control_first"),
                                 ("control_last", "control_last"))
               for kind in ("grad", "weight", "running")}
    metrics.update({f"test_accuracy_{k}": v for k, v in figures["accuracy"].items()})
    with tracked_run(name, part_tags(VERIFY, smoke), with_experiment_id(request).experiment_id) as run:
        run.log_params(request.given_params(), {**figures.get("params", {}), "updates": str(figures["updates"]),
                                      "workers": str(figures["workers"])})
        run.log_metrics({}, metrics)
        run.log_files({"verify.txt": table})
    print_link(run.experiment_id, run.run_id)


def run_ddp_job(request: Request, straggle_ms: int = 0) -> None:
    """`gradacc ddp`: the converge protocol as N DDP workers (N = the request's K); rank 0 logs the run."""
    launch(make_job("train", request, straggle_ms=straggle_ms), request.protocol.k)


def run_verify_job(request: Request, updates: int) -> dict:
    """`gradacc verify`: accumulation against DDP; prints and logs the table, raises VerifyFailed past the bar."""
    job = make_job("verify", request, updates=updates)
    folder = launch(job, request.protocol.k)
    figures = json.loads((folder / "result.json").read_text())
    table = "\n".join(table_lines(figures))
    print(table)
    log_verify(figures, request, table + "\n")
    if figures["first"]["grad_rel_diff"] >= figures["tolerance"]:
        raise VerifyFailed(f"first-update gradients differ by {figures['first']['grad_rel_diff']:.2e} "
                           f">= {figures['tolerance']:.0e}")
    return figures
