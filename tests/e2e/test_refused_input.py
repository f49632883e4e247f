"""The bad input a hostile tester found: each one `gradacc: error:` line with its real cause, nothing altered and
no run left behind: seeds beyond torch's range, more threads than cores, a file that is not an MLflow store, a
read-only store, an uploaded folder sent again."""
from __future__ import annotations

import sqlite3

import pytest

import gradacc.tracking.sqlite_check
from gradacc.core.cores import THREADS_ENV, THREADS_PER_CORE_FORCED, usable_cores
from gradacc.tracking.store import describe
from tests.support.e2e import all_runs, assert_one_error_line, module_store, run_cli

pytestmark = pytest.mark.reliability
USAGE, FAILURE = 2, 1


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with module_store(tmp_path_factory, "refused") as made:
        yield made


def check_rejected(store, argv, code: int, contains: str):
    before = len(all_runs(store["client"]))
    result = run_cli(argv)
    assert result.code == code, result.err
    line = assert_one_error_line(result, contains)
    assert len(all_runs(store["client"])) == before  # nothing was started
    return line


@pytest.mark.parametrize("seed, code, contains", [
    ("99999999999999999999999", USAGE, "99999999999999999999999 is not in the range 0<=x<=18446744073709551615"),
    (str(2**64), USAGE, "is not in the range 0<=x<=18446744073709551615"),
])
def test_seed_beyond_torch(store, seed, code, contains):
    check_rejected(store, ["micro", "--k", "2", "--smoke", "--seed", seed], code, contains)


def test_a_sweep_s_last_repeat_seed_beyond_torch(store):
    check_rejected(store, ["sweep", "--smoke", "--ks", "1", "--repeats", "2", "--seed", str(2**64 - 1)], USAGE,
                   "with --repeats 2 the last seed would be 18446744073709551616, above torch.manual_seed's largest")


def test_seed_at_torch_s_limit_is_taken():
    import torch

    from gradacc.cli.options import MAX_SEED
    torch.Generator().manual_seed(MAX_SEED)  # the bound is torch's own: its largest seed is accepted


def test_threads_beyond_the_cores(store, monkeypatch):
    cores = usable_cores()
    monkeypatch.delenv(THREADS_ENV, raising=False)
    line = check_rejected(store, ["micro", "--smoke", "--threads", str(cores + 1)], USAGE,
                          f"{cores + 1} threads is more than the {cores} CPU cores this process may use")
    assert f"set {THREADS_ENV}=1 to allow up to {THREADS_PER_CORE_FORCED * cores}" in line
    check_rejected(store, ["sweep", "--smoke", "--threads", "100000"], USAGE, "100000 threads is more than")


def test_threads_forced_still_bounded(store, monkeypatch):
    cores = usable_cores()
    monkeypatch.setenv(THREADS_ENV, "1")
    too_many = THREADS_PER_CORE_FORCED * cores + 1
    check_rejected(store, ["micro", "--smoke", "--threads", str(too_many)], USAGE,
                   f"{too_many} threads is more than {THREADS_PER_CORE_FORCED} per CPU core")
    from gradacc.cli.types import Threads
    assert Threads().convert(str(cores + 1), None, None) == cores + 1  # forced: taken


def sqlite_of_someone_else(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text)")
        conn.execute("INSERT INTO notes VALUES ('mine')")


@pytest.mark.parametrize("make, contains", [
    (sqlite_of_someone_else, "is a sqlite database but not an MLflow store (its tables: notes); MLflow would add "
                             "its own tables to it, so it is left untouched"),
    (lambda path: path.write_text("not a database"), "is not a sqlite database"),
])
@pytest.mark.parametrize("command", [["micro", "--smoke"], ["compare"]])
def test_a_file_that_is_not_an_mlflow_store_is_left_untouched(store, monkeypatch, tmp_path, make, contains,
                                                              command):
    path = tmp_path / "other.db"
    make(path)
    before = path.read_bytes()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{path}")
    check_rejected(store, command, FAILURE, f"tracking store sqlite:///{path}: {path} {contains}")
    assert path.read_bytes() == before and not (tmp_path / "other.db.lock").exists()


def test_read_only_store(store, monkeypatch, tmp_path):
    """A store on a read-only mount (root is refused too there): os.access says so; the writer is refused."""
    uri = f"sqlite:///{store['tmp'] / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    real = gradacc.tracking.sqlite_check.os.access
    monkeypatch.setattr(gradacc.tracking.sqlite_check.os, "access",
                        lambda path, mode: False if mode & 2 else real(path, mode))
    check_rejected(store, ["micro", "--smoke"], FAILURE,
                   f"tracking store {uri} is read-only: {store['tmp'] / 'mlflow.db'} cannot be written")


def test_read_only_error_says_so():
    err = Exception("(sqlite3.OperationalError) attempt to write a readonly database\n[SQL: INSERT INTO ...]")
    assert describe(err) == ("sqlite store is read-only (attempt to write a readonly database): the file or its "
                             "folder cannot be written")


def test_uploading_an_uploaded_folder_is_refused(tmp_path):
    folder = tmp_path / "abc.uploaded"
    folder.mkdir()
    (folder / "run.json").write_text("{}")
    result = run_cli(["upload", str(folder)])
    assert result.code == FAILURE
    assert_one_error_line(result, f"{folder} was uploaded already (its name ends in .uploaded)")
    assert folder.is_dir() and not (tmp_path / "abc.uploaded.uploaded").exists()
