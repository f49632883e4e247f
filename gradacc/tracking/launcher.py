"""Ctrl-C under `mlflow run`: the run ends KILLED and the launcher exits 130, as `gradacc` itself does.

A Ctrl-C reaches the whole foreground job: `mlflow run` (the launcher) and its entry's command (gradacc). gradacc
ends its run KILLED and exits 130. MLflow 3.17's launcher, left to itself, then marks the run FAILED (its
`_maybe_set_run_terminated` compares the status string with RunStatus's integer codes, so it never sees a run
its command ended) and exits 1 ("Aborted!"). No MLflow hook reaches the launcher's Ctrl-C, and no code of the
project runs in the launcher's process except a plugin: MLflow instantiates every `mlflow.run_context_provider`
entry point (pyproject.toml) as it is imported, in every process, the launcher's included. `LauncherHook` adds no
tags; constructed in the launcher process, it puts a SIGINT handler in front of Python's own. On a Ctrl-C that
interrupts the launcher's wait for its command (`mlflow.projects._wait_for`), the handler swaps that wait's
status check for one that leaves an ended run as it ended (a run its command did not end ends KILLED), then
lets MLflow go on as usual (it waits for the command); the process then leaves with 130 instead of 1. Any other
SIGINT, and every other process, are left exactly as they were."""
from __future__ import annotations

import atexit
import os
import signal
import sys

from mlflow.tracking.context.abstract_context import RunContextProvider

INTERRUPTED_EXIT = 130  # 128 + SIGINT: what `gradacc` exits with after a Ctrl-C, and what a shell reports for one
ENDED = ("FINISHED", "FAILED", "KILLED")

_interrupted = False


class LauncherHook(RunContextProvider):
    """The plugin MLflow constructs in each process: in `mlflow run`'s own, it installs the Ctrl-C handler."""

    def __init__(self) -> None:
        if _is_launcher(sys.argv):
            _install()

    def in_context(self) -> bool:
        return False  # never adds tags

    def tags(self) -> dict:
        return {}


def _is_launcher(argv: list[str]) -> bool:
    """`mlflow run ...` or `python -m mlflow run ...` (argv[0] is "-m" while runpy imports the mlflow package)."""
    return len(argv) > 1 and argv[1] == "run" and os.path.basename(argv[0]) in ("mlflow", "-m", "__main__.py")


def _install() -> None:
    try:
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return  # someone else's handler: theirs stays
        signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread: signals cannot be handled here
        return
    atexit.register(_exit_interrupted)  # registered early, so it runs after MLflow's own exit handlers


def _waiting_frame(frame):
    """The frame of MLflow's wait for the entry's command, if the interrupted code runs inside it."""
    projects = sys.modules.get("mlflow.projects")
    wait = getattr(getattr(projects, "_wait_for", None), "__code__", None)
    while frame is not None and wait is not None:
        if frame.f_code is wait:
            return frame
        frame = frame.f_back
    return None


def _on_sigint(signum, frame):
    global _interrupted
    if _waiting_frame(frame) is not None and not _interrupted:
        _interrupted = True
        # looked up by name when the wait's `except KeyboardInterrupt` runs, after the command has exited
        sys.modules["mlflow.projects"]._maybe_set_run_terminated = _end_unless_ended
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt: MLflow's own handling goes on


def _end_unless_ended(active_run, _status: str) -> None:
    """MLflow's check with statuses compared as strings: a run the command ended stays as it ended (gradacc ends
    an interrupted run KILLED); one it left open was interrupted by this Ctrl-C too, and ends KILLED."""
    if active_run is None:
        return
    from mlflow.tracking import MlflowClient
    client = MlflowClient()
    run_id = active_run.info.run_id
    if client.get_run(run_id).info.status not in ENDED:
        client.set_terminated(run_id, status="KILLED")


def _exit_interrupted() -> None:
    """click turns the KeyboardInterrupt into "Aborted!" and exit 1; after a Ctrl-C the launcher exits 130."""
    if not _interrupted:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(INTERRUPTED_EXIT)  # the exit status is fixed by now; only leaving without it changes it
