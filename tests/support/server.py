"""A real `mlflow server` for tests: a sqlite (or given) backend and proxied artifacts in a folder, bound to
127.0.0.1 on a free port, optionally with MLflow's basic authentication; it can be killed (SIGKILL, as a crash) and
started again on the same port and store."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.e2e import subprocess_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class BasicAuth:
    """MLflow's basic authentication (`--app-name basic-auth`), set up as docs/team-setup.md does: the settings in
    a config file, the admin's password and the server's secret key in the environment, never in a command line.
    The admin user is created on the first start against an empty user database."""
    admin_password: str
    database_uri: str  # where the users and their permissions live
    admin_username: str = "admin"
    default_permission: str = "READ"  # MLflow's default: users write only to experiments they are granted
    auth_cache_ttl_seconds: int = 0  # MLflow's default: every request checks the password hash

    def config(self) -> str:
        return (f"[mlflow]\ndefault_permission = {self.default_permission}\ndatabase_uri = {self.database_uri}\n"
                f"admin_username = {self.admin_username}\nauth_cache_ttl_seconds = {self.auth_cache_ttl_seconds}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")


class MlflowServer:
    """`mlflow server` with its own process group, so that kill() takes its workers with it. backend_uri: the
    backend store (default: sqlite in the folder); auth: basic authentication (default: none)."""

    def __init__(self, folder: Path, port: int | None = None, backend_uri: str | None = None,
                 auth: BasicAuth | None = None):
        self.folder, self.port = folder, port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.backend_uri = backend_uri or f"sqlite:///{folder / 'server.db'}"
        self.auth = auth
        self.secret_key = secrets.token_hex(16)  # one per server, kept across restarts (CSRF tokens rely on it)
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 180) -> "MlflowServer":
        args = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", "1", "--backend-store-uri", self.backend_uri,
                "--artifacts-destination", str(self.folder / "artifacts")]
        # The server's job runner (for GenAI jobs) is not needed and costs start-up time on a busy machine.
        env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        if self.auth:
            config = self.folder / "basic_auth.ini"
            config.write_text(self.auth.config())
            args += ["--app-name", "basic-auth"]
            env.update(MLFLOW_AUTH_CONFIG_PATH=str(config), MLFLOW_AUTH_ADMIN_PASSWORD=self.auth.admin_password,
                       MLFLOW_FLASK_SERVER_SECRET_KEY=self.secret_key)
        with (self.folder / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         env=subprocess_env(**env), cwd=self.folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"mlflow server did not answer on {self.uri} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL to the server's process group: it goes away as in a crash, without a word to its clients."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self.proc = None


class HangingServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers, as a server whose workers are
    stuck does. With `upstream` (a port), it forwards connections there until hang() (a server that hangs
    mid-run): from then on what clients send is swallowed and no answer comes, on old connections and new ones.
    It never closes a client's connection first: a close is an answer, and fails a client at once."""

    def __init__(self, upstream: int | None = None):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.uri = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.hanging = threading.Event()
        if upstream is None:
            self.hanging.set()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self) -> None:
        self.hanging.set()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            self.sockets.append(conn)
            if self.hanging.is_set():
                continue  # held open, never read from or answered
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets.append(upstream)
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.hanging.is_set():
                    dst.sendall(data)
        except OSError:
            pass  # closed by close() or by the other side

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()

    def __enter__(self) -> "HangingServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
