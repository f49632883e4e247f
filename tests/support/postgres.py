"""A real PostgreSQL for tests: a cluster of its own in a temporary folder, on a free 127.0.0.1 port with its unix
socket in that folder too, started and always stopped and removed by `postgres_cluster()`."""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import free_port

MISSING = ("PostgreSQL's server programs (initdb, pg_ctl) are not installed: `apt-get install -y postgresql` "
           "(Debian's package; .ci/run installs it)")
SUPERUSER = "mlflow"  # the cluster's superuser, so that the URIs read as a team's would


def bin_dir() -> Path:
    """Where initdb and pg_ctl are: on PATH, else Debian's versioned folder (its package keeps them off PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # /usr/local/bin may hold links to a few of them
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not versions:
        raise RuntimeError(MISSING)
    return Path(versions[-1]).parent


def _as_server_user() -> list[str]:
    """initdb and postgres refuse to run as root: there, they run as Debian's `postgres` system user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(f"running as root and there is no `postgres` user to run the server as; {MISSING}")
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class Postgres:
    folder: Path
    port: int

    def uri(self, database: str) -> str:
        # The driver named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, 2.0 as psycopg2
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _run(args: list, what: str, cluster: Postgres | None = None) -> None:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                           + (f"\nserver log:\n{cluster.log()}" if cluster else ""))


@contextlib.contextmanager
def postgres_cluster(databases: tuple[str, ...] = ("mlflow",)):
    """Yields a running Postgres with `databases` created (trust authentication: only loopback and the folder's
    socket reach it); stops it (`pg_ctl stop -m fast`) and removes the folder whatever happens."""
    pg_bin, as_user = bin_dir(), _as_server_user()
    # Not under pytest's tmp_path: that folder is private to the user running the tests (0700), and the server
    # may run as `postgres`. mkdtemp's folder in /tmp is reachable once it is handed over.
    folder = Path(tempfile.mkdtemp(prefix="gradacc-pg-"))
    cluster = Postgres(folder, free_port())
    data = folder / "data"
    try:
        if as_user:
            shutil.chown(folder, "postgres", "postgres")
        _run(as_user + [pg_bin / "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                        "--no-sync"], "initdb")
        # Durability is not under test: without fsync a busy machine's commits do not wait on the disk.
        options = (f"-p {cluster.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        _run(as_user + [pg_bin / "pg_ctl", "start", "-w", "-t", "120", "-D", data, "-l", folder / "server.log",
                        "-o", options], "pg_ctl start", cluster)
        for name in databases:
            _run([pg_bin / "createdb", "-h", "127.0.0.1", "-p", cluster.port, "-U", SUPERUSER, name],
                 f"createdb {name}", cluster)
        yield cluster
    finally:
        if (data / "postmaster.pid").exists():  # also after a start that timed out: never leave a server behind
            subprocess.run(as_user + [str(pg_bin / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"],
                           capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
