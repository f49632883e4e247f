"""`gradacc sweep --gpus G`: the spread sweep on this node, launched as the torchrun command a user would type,
`torchrun --standalone --nproc-per-node G -m gradacc sweep OPTIONS` (the same options, less --gpus).

The ranks' own lines pass through (stdout untouched, so compare's table stays on stdout); torchrun's own log
lines and its failure report (a Python traceback) go only to a log file, so that a failure reads as the one
`gradacc: error:` line rank 0 prints, or, when no rank could print one (a rank killed), one line from here.

A new study's id is chosen here, not by rank 0: after a failed torchrun every rank is gone, and the runs of that
study still RUNNING (those of a rank killed outright, which never ended them) are ended KILLED from here."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gradacc.core.data import ensure_dataset, resolve_data_dir
from gradacc.core.errors import ConfigError
from gradacc.core.request import Request
from gradacc.distributed.launch import check_processes, end_killed_runs, ended_by_signal, worker_env
from gradacc.distributed.spread import SpreadFailed
from gradacc.study.console import say
from gradacc.study.sweep import new_study_id

# torchrun's logging: "E1128 19:41:13.867000 19271 torch/distributed/elastic/multiprocessing/api.py:1002] ..."
TORCHRUN_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")
ENTRY = "gradacc"  # the module each rank runs (`python -m gradacc`): the CLI, which finds torchrun's environment


def check_gpus(gpus: int, device: str) -> None:
    """ConfigError, naming --gpus, for a process count this machine cannot run (launch.check_processes' rule)."""
    try:
        check_processes(gpus, device, "processes")
    except ConfigError as err:
        raise ConfigError(f"--gpus {gpus}: {err}") from None


class TorchrunOutput:
    """Decides which of torchrun's stderr lines to show: the ranks' lines, not torchrun's own."""

    def __init__(self):
        self.report = False  # torchrun's failure report has begun: everything after it is torchrun's
        self.interrupted = False  # torchrun was told to stop: it ends with a traceback of its own
        self.error_shown = False
        self.died: list[str] = []

    def shown(self, line: str) -> bool:
        if TORCHRUN_LOG.match(line):
            if line.startswith("E"):  # "failed (exitcode: ...)": the workers are gone, the report follows
                self.report = True
                if why := ended_by_signal(line):
                    self.died.append(why)
            return False
        if self.report or (self.interrupted and not line.startswith("gradacc: ")):
            return False
        self.error_shown = self.error_shown or line.startswith("gradacc: error:")
        return True


def own_study(args: list[str], named: str | None) -> tuple[list[str], str | None]:
    """(args, study): for a new study (`named` None) an id chosen here, in `--study=ID`; None for a study the user
    named, which other processes may be writing to now (their RUNNING runs are not this sweep's)."""
    if named is not None:
        return args, None
    study = new_study_id()
    return [arg for arg in args if not arg.startswith("--study=")] + [f"--study={study}"], study


def end_killed_ranks_runs(study: str | None, how: str) -> None:
    """The runs of a new study that a killed rank left RUNNING (None: a study the user named, which other processes
    may be writing to now)."""
    if study is not None:
        end_killed_runs("sweep", how, study=study)


def launch_spread(gpus: int, request: Request, args: list[str]) -> int:
    """Runs the torchrun command for the request's sweep (`args`: its options) over `gpus` processes; returns its
    exit status (non-zero after rank 0's own error line), or raises SpreadFailed where no rank said why."""
    check_gpus(gpus, request.settings.device)
    args, study = own_study(args, request.study)
    ensure_dataset(resolve_data_dir(request.settings.data_dir))  # found (or downloaded) once, not by G processes
    folder = Path(tempfile.mkdtemp(prefix="gradacc-sweep-"))
    log = folder / "torchrun.log"
    torchrun = ["--standalone", f"--nproc-per-node={gpus}", "-m", ENTRY, "sweep", *args]
    say(f"sweep: torchrun {' '.join(torchrun)}")
    env = worker_env()
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default for several processes, without its banner
    output = TorchrunOutput()
    with log.open("w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *torchrun],
                                   stderr=subprocess.PIPE, text=True, env=env)

        def pass_lines() -> None:
            for line in process.stderr:
                log_file.write(line)
                if output.shown(line):
                    sys.stderr.write(line)
                    sys.stderr.flush()

        try:
            pass_lines()
            code = process.wait()
        except KeyboardInterrupt:  # the CLI ignores further signals while this runs
            process.terminate()  # torchrun stops the ranks with SIGTERM: their runs end KILLED
            output.interrupted = True
            pass_lines()  # the ranks' last lines ("gradacc: terminated ..."), until they have all exited
            process.wait(timeout=120)
            end_killed_ranks_runs(study, "interrupted")  # a rank that ignored SIGTERM was SIGKILLed by torchrun
            shutil.rmtree(folder, ignore_errors=True)
            raise
    died = f": {', '.join(output.died)}" if output.died else ""
    if code != 0:
        end_killed_ranks_runs(study, f"torchrun exited with code {code}{died}")
    if code != 0 and not output.error_shown:
        raise SpreadFailed(f"spread sweep: torchrun exited with code {code}{died} (full log: {log})")
    shutil.rmtree(folder, ignore_errors=True)  # kept only where the error names it: the ranks' lines were shown
    return code
