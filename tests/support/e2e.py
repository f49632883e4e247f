"""Shared helpers of the end-to-end tests: a --smoke-sized data root, an isolated MLflow store, CLI calls."""
from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cifar import write_data_root

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # the interpreter running the tests; MLproject commands call `python`
MLFLOW_ENV = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI")
# MLflow's own log lines, e.g. "2026/11/23 05:28:28 INFO mlflow.store.db.utils: Creating ..."
MLFLOW_INFO = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d INFO mlflow[\w.]*: ")


@contextlib.contextmanager
def isolated_store(tmp: Path, data_root: Path | None = None):
    """MLFLOW_TRACKING_URI = a fresh sqlite db in tmp, cwd = tmp (./mlruns lands there), no inherited run."""
    with pytest.MonkeyPatch.context() as mp:
        for name in MLFLOW_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        if data_root is not None:
            mp.setenv("GRADACC_DATA_DIR", str(data_root))
        else:
            mp.delenv("GRADACC_DATA_DIR", raising=False)
        mp.chdir(tmp)
        yield tmp


@contextlib.contextmanager
def module_store(tmp_path_factory, name: str):
    """A fresh sqlite store and a --smoke data root for one test module (GRADACC_DATA_DIR points at the data, cwd
    in the store's folder); yields {"client": MlflowClient, "data": data root, "tmp": the store's folder}."""
    from mlflow import MlflowClient
    tmp = tmp_path_factory.mktemp(f"{name}_store")
    data = write_data_root(tmp_path_factory.mktemp(f"{name}_data"))
    with isolated_store(tmp, data):
        yield {"client": MlflowClient(), "data": data, "tmp": tmp}


@contextlib.contextmanager
def smoke_store(tmp: Path):
    """A --smoke data root and a fresh store under tmp (cwd there); yields an MlflowClient. torch's thread count
    is restored afterwards, so the tests that follow in this process keep theirs."""
    import torch
    from mlflow import MlflowClient
    data = write_data_root(tmp / "data")
    (tmp / "store").mkdir()
    threads = torch.get_num_threads()
    try:
        with isolated_store(tmp / "store", data):
            yield MlflowClient()
    finally:
        torch.set_num_threads(threads)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(argv: list[str]) -> CliResult:
    """`gradacc.cli.main(argv)` in this process, with stdout/stderr captured and the exit code caught."""
    from gradacc.cli import main
    out, err = io.StringIO(), io.StringIO()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}  # main() sets both
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([str(a) for a in argv])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return CliResult(code, out.getvalue(), err.getvalue())


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment (MLFLOW_TRACKING_URI and GRADACC_DATA_DIR included), the venv's bin first."""
    env = {k: v for k, v in os.environ.items() if k not in MLFLOW_ENV[:3]}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_process(args: list[str], timeout: int = 240, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          env=subprocess_env(**extra_env))


def mlflow_run(entry_point: str, params: dict[str, str], experiment: str) -> subprocess.CompletedProcess:
    """`mlflow run <repo> -e <entry_point> -P ... --env-manager local` from the current directory."""
    args = [sys.executable, "-m", "mlflow", "run", str(REPO_ROOT), "-e", entry_point, "--env-manager", "local",
            "--experiment-name", experiment]
    for key, value in params.items():
        args += ["-P", f"{key}={value}"]
    return run_process(args)


def launched_run_id(output: str) -> str:
    """The run id `mlflow run` prints when it starts the command."""
    found = re.search(r"in run with ID '([0-9a-f]+)'", output)
    assert found, f"no run id in mlflow run's output:\n{output}"
    return found.group(1)


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not MLflow's own INFO log lines."""
    return [line for line in stderr.splitlines() if line.strip() and not MLFLOW_INFO.match(line)]


def assert_one_error_line(result, contains: str = "") -> str:
    """Exactly one non-MLflow line on stderr, starting 'gradacc: error:', and no traceback."""
    stderr = result.err if isinstance(result, CliResult) else result.stderr
    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("gradacc: error: "), stderr
    assert contains in lines[0], lines[0]
    return lines[0]


def all_runs(client) -> list:
    """Every run of every experiment in the store (deleted ones too)."""
    from mlflow.entities import ViewType
    exps = client.search_experiments(view_type=ViewType.ALL)
    if not exps:
        return []
    return client.search_runs([e.experiment_id for e in exps], run_view_type=ViewType.ALL, max_results=10_000)


def history(client, run_id: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, ordered by step."""
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    return [m.step for m in points], [m.value for m in points]


def artifact(client, run_id: str, path: str, dst: Path) -> Path:
    """One artifact downloaded into dst; returns its local path."""
    dst.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dst)))
