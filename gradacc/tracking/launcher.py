"""A Ctrl-C under `mlflow run` reaches the launcher as well as gradacc: gradacc ends its run KILLED and exits 130,
then MLflow 3.17's launcher marks the run FAILED (its `_maybe_set_run_terminated` compares the status string with
RunStatus's integer codes, so it never sees the run as ended) and exits 1 ("Aborted!"). The launcher's own exit is
MLflow's; the run's status is set back: a small process started as gradacc exits waits for the launcher to exit,
then turns FAILED into KILLED."""
from __future__ import annotations

import os
import subprocess
import sys
import time

WAIT_S = 120  # the launcher ends within seconds of its command; a launcher still there after this is left alone


def keep_killed(run_ids: list[str]) -> None:
    """Called as the CLI exits after an interrupt: the `mlflow run` run among `run_ids` stays KILLED."""
    own = os.environ.get("MLFLOW_RUN_ID")
    if not own or own not in run_ids:
        return
    try:
        subprocess.Popen([sys.executable, "-m", "gradacc.tracking.launcher", own, str(os.getppid())],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)  # out of the terminal's process group: no second Ctrl-C
    except OSError:  # the run then stays as the launcher leaves it
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _set_back(run_id: str, launcher: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while _alive(launcher) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(launcher):
        return
    from mlflow.tracking import MlflowClient
    client = MlflowClient()
    if client.get_run(run_id).info.status == "FAILED":
        client.set_terminated(run_id, status="KILLED")


if __name__ == "__main__":
    _set_back(sys.argv[1], int(sys.argv[2]))
