"""A DDP worker made to die outright, for tests/e2e/test_ddp.py: gradacc's own worker module, with the rank that
DDP_TEST_KILL_RANK names SIGKILLing itself when its training begins (rank 0: its MLflow run is open by then), as the
OOM killer would. Test code only: the tests start it through `gradacc ddp` with the launcher's WORKER pointed here."""
from __future__ import annotations

import os
import signal

from gradacc.distributed import worker

KILL_ENV = "DDP_TEST_KILL_RANK"


def main() -> None:
    if os.environ.get("RANK") == os.environ.get(KILL_ENV):
        def killed(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)

        worker.run_ddp = killed
    worker.main()


if __name__ == "__main__":
    main()
