"""The real server for tests: `python app.py` on a free loopback port, as an operator runs it.

    with running_server({"SOUNDALIKE_DATA_DIR": str(store)}) as server:
        urllib.request.urlopen(server.base + "/api/health")

The helper chooses SOUNDALIKE_HOST (127.0.0.1) and SOUNDALIKE_PORT; a data or upload folder that
`env` does not name is a fresh one in the server's work folder, so no test serves or writes the
checkout's data/ (an empty data folder gets the demo library, as `python app.py` does).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import pytest

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Server:
    base: str                    # http://127.0.0.1:PORT
    port: int
    process: subprocess.Popen
    log_path: Path               # the server's stdout and stderr
    workdir: Path                # the log, and the data and upload folders the helper made

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> tuple[str, int]:
        """For raw sockets: socket.create_connection(server.address)."""
        return HOST, self.port

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def healthy(base: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:   # refused while starting; HTTPError and URLError are OSErrors too
        return False


@contextmanager
def running_server(env: Mapping[str, str] | None = None, startup_s: float = 180,
                   workdir: Path | None = None) -> Iterator[Server]:
    """Start `python app.py` with os.environ plus `env`, wait until /api/health answers 200, and stop
    it (SIGTERM, then SIGKILL after 30 s) on exit. Fails the test with the log's tail if the
    process exits or does not answer within `startup_s`. Without `workdir`, a temporary folder is
    used and removed afterwards."""
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soundalike-server-")))
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        full_env = {**os.environ,
                    "SOUNDALIKE_DATA_DIR": str(workdir / "data"), "SOUNDALIKE_UPLOAD_DIR": str(workdir / "uploads"),
                    **(env or {}),
                    "SOUNDALIKE_HOST": HOST, "SOUNDALIKE_PORT": str(port), "PYTHONUNBUFFERED": "1"}
        log_path = workdir / "server.log"
        log = stack.enter_context(log_path.open("wb"))
        process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=full_env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        server = Server(f"http://{HOST}:{port}", port, process, log_path, workdir)
        try:
            deadline = time.monotonic() + startup_s
            while not healthy(server.base):
                if process.poll() is not None:
                    pytest.fail(f"the server exited ({process.returncode}):\n{server.log_tail()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not answer /api/health within {startup_s} s:\n{server.log_tail()}")
                time.sleep(0.5)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
