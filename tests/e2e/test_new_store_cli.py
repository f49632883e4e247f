"""`python -m gradacc converge` into a store that does not exist yet: the store is made by the command's child
(tracking/new_store.py) while the command goes on, and renamed into place at its first access; a command stopped
before that access leaves nothing behind in its folder, and no process."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

from tests.support.cifar import write_data_root
from tests.support.e2e import VENV_BIN

pytestmark = pytest.mark.slow


def command(folder: Path, data: Path) -> subprocess.Popen:
    """`python -m gradacc converge --smoke` in `folder` with MLflow's default store there (./mlflow.db)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.Popen([sys.executable, "-m", "gradacc", "converge", "--k", "1", "--smoke", "--threads", "1",
                             "--data-dir", str(data)], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_until(ready, proc: subprocess.Popen, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if found := ready():
            return found
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"not seen before the command ended or {timeout} s: {proc.communicate()[1][-2000:]}")


def childs_file(folder: Path) -> Path | None:
    return next(folder.glob(".mlflow.db.*.new"), None)


def has_default_experiment(path: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return bool(conn.execute("SELECT 1 FROM experiments WHERE name = 'Default'").fetchall())
    except sqlite3.Error:  # not there yet, or being written
        return False


def new_store_processes(folder: Path) -> list[str]:
    """The command lines of running `gradacc.tracking.new_store` children for a store in `folder` (Linux)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "gradacc.tracking.new_store" in line and str(folder) in line:
            found.append(line)
    return found


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data_root(tmp_path_factory.mktemp("new_store_data"))


def test_the_store_is_made_by_the_child_while_the_command_runs(tmp_path, data):
    """The store's lock held here until the child has made the whole store aside: the command, waiting for it at
    its first access, then finds the child's file, which becomes its store (the same inode)."""
    with FileLock(str(tmp_path / "mlflow.db.lock")):
        proc = command(tmp_path, data)
        made = wait_until(lambda: (f := childs_file(tmp_path)) and has_default_experiment(f) and f, proc)
        held = open(made, "rb")  # held open: were it removed, a new file could not take its inode
        assert not (tmp_path / "mlflow.db").exists()
    with held:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert os.path.samestat(os.fstat(held.fileno()), (tmp_path / "mlflow.db").stat())
    assert childs_file(tmp_path) is None and new_store_processes(tmp_path) == []
    assert "Creating initial MLflow database tables" not in err  # the command did not make a store of its own


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="looks for leftover processes in /proc")
def test_a_command_stopped_before_its_first_access_leaves_nothing(tmp_path, data):
    """SIGTERM once the child is making the store (the command is still importing): no store, no child's file,
    no lock file, no process left."""
    proc = command(tmp_path, data)
    wait_until(lambda: childs_file(tmp_path), proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "nothing was measured or logged" in err
    assert list(tmp_path.iterdir()) == []
    assert new_store_processes(tmp_path) == []
