"""A rank of a spread sweep with one configuration made to fail, for tests/e2e/test_spread.py: gradacc's own entry
point (`python -m gradacc`), after patching this rank's runner as SPREAD_TEST_FAIL="RANK:PART:K:HOW" says.

HOW is `diverge` (the run fails as a diverged run does: FAILED, with the reason), `kill` (the process SIGKILLs
itself once rank 0 has finished its own runs, so that the runs kept do not depend on timing) or `data` (this rank's
data folder holds a malformed batch: it cannot start; PART and K are then unused). Test code only: the tests start
it through `gradacc sweep --gpus` with the launcher's ENTRY pointed here."""
from __future__ import annotations

import os
import signal
import time

FAIL_ENV = "SPREAD_TEST_FAIL"


def wait_for_rank_0(timeout_s: float = 300) -> None:
    """Until rank 0 has a FINISHED run in this store (and has had a moment to reach the final gather)."""
    from mlflow import MlflowClient
    client = MlflowClient()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        experiments = [e.experiment_id for e in client.search_experiments()]
        if client.search_runs(experiments, "tags.`gradacc.rank` = '0' and attributes.status = 'FINISHED'"):
            time.sleep(2)
            return
        time.sleep(0.5)


def patch(part: str, k: int, how: str) -> None:
    from gradacc.core.errors import Diverged
    from gradacc.study import run as runner
    real = runner.RUNNERS[part]

    def failing(protocol, ctx, result, advance):
        if protocol.k != k:
            return real(protocol, ctx, result, advance)
        if how == "kill":
            wait_for_rank_0()
            os.kill(os.getpid(), signal.SIGKILL)
        raise Diverged(f"training loss is nan at update 1 (made to fail on rank {os.environ['RANK']} by the test)")

    runner.RUNNERS[part] = failing


def broken_data_root() -> str:
    import tempfile
    from pathlib import Path

    import numpy as np

    from tests.support.cifar import write_raw_batch
    root = Path(tempfile.mkdtemp(prefix="spread-broken-", dir=os.getcwd()))  # in the test's store folder
    write_raw_batch(root / "cifar-10-batches-py" / "data_batch_1", np.zeros((3, 5), dtype=np.uint8), [0, 1, 2])
    return str(root)


def main() -> None:
    spec = os.environ.get(FAIL_ENV, "")
    if spec:
        rank, part, k, how = spec.split(":")
        if os.environ.get("RANK") == rank and how == "data":
            os.environ["GRADACC_DATA_DIR"] = broken_data_root()
        elif os.environ.get("RANK") == rank:
            patch(part, int(k), how)
    from gradacc.cli import main as gradacc_main
    gradacc_main()


if __name__ == "__main__":
    main()
