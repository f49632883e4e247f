"""A failing `gradacc compare` leaves nothing behind in the folder it ran in: no mlflow.db (1 MB) or its lock file
where no store was, no empty compare-output/."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.support.e2e import VENV_BIN, assert_one_error_line, isolated_store, run_cli


def test_in_an_empty_folder_no_store_is_created(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run([sys.executable, "-m", "gradacc", "compare"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert_one_error_line(done, "no tracking store here")
    assert list(tmp_path.iterdir()) == []


def test_a_store_with_no_runs_leaves_no_empty_output_folder(tmp_path):
    from mlflow import MlflowClient
    with isolated_store(tmp_path):
        MlflowClient().search_experiments()  # the store exists, with no runs
        result = run_cli(["compare"])
        assert result.code == 1
        assert_one_error_line(result)
        assert not (tmp_path / "compare-output").exists()  # the store's lock file beside it is the store's
