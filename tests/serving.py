"""The real server for tests: `python app.py` on a free loopback port, as an operator runs it.

    with running_server({"SOUNDALIKE_DATA_DIR": str(store)}) as server:
        urllib.request.urlopen(server.base + "/api/health")

The helper chooses SOUNDALIKE_HOST (127.0.0.1) and SOUNDALIKE_PORT; a data or upload folder that
`env` does not name is a fresh one in the server's work folder, so no test serves or writes the
checkout's data/ (an empty data folder gets the demo library, as `python app.py` does: about 30 s
on a loaded 2-core machine; `small_store` makes a 10-track store in about a third of that).
"""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pytest
import soundfile as sf

from conftest import tone

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


def small_store(folder: Path) -> Path:
    """A store of 10 generated 4 s clips (one per genre) in `folder`/data; returns the data folder."""
    from model.stores.demo_library import write_clips
    from model.stores.ingest import ingest

    write_clips(folder / "audio", per_genre=1, seconds=4.0)
    ingest(folder / "audio", folder / "data", workers=1, progress=False)
    return folder / "data"


def wav(seconds: float, seed: int = 0) -> bytes:
    """A generated clip (conftest.tone) as 16-bit WAV bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, 22050, seed=seed), 22050, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def multipart(content: bytes, filename: str = "song.wav") -> tuple[bytes, str]:
    boundary = "soundalike-test-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: audio/wav\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length (as every response of this server has)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "closed before the whole body"
        body += chunk
    return status, headers, body


def post_upload(server: Server, content: bytes, rate: float | None = None) -> tuple[int, dict]:
    """POST /api/analyze; with `rate`, the request goes out at that many bytes a second."""
    body, content_type = multipart(content)
    request = (f"POST /api/analyze HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    with socket.create_connection(server.address, timeout=120) as sock:
        if rate is None:
            sock.sendall(request)
        else:
            start, sent = time.monotonic(), 0
            while sent < len(request):   # what is due by now, so that late wake-ups do not lower the rate
                due = min(len(request), int((time.monotonic() - start) * rate) + 1024)
                sock.sendall(request[sent:due])
                sent = due
                time.sleep(0.05)
        status, _, answer = read_response(sock)
    return status, json.loads(answer)


def send(server: Server, body: bytes, content_type: str, timeout: float = 300) -> tuple[int, dict[str, str], bytes]:
    """POST a multipart body (`multipart`) to /api/analyze: (status, headers, body)."""
    request = (f"POST /api/analyze HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    with socket.create_connection(server.address, timeout=timeout) as sock:
        sock.sendall(request)
        return read_response(sock)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory from /proc (Linux): VmRSS now, or VmHWM, its peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


@dataclass(frozen=True)
class Burst:
    first: list[tuple[int, dict[str, str], bytes]]   # each upload's first answer, in the order given
    final: list[tuple[int, dict[str, str], bytes]]   # its last: a refused upload is sent again after Retry-After
    peak_mb: float                                   # the server's peak resident memory over the burst (VmHWM)


def burst(server: Server, uploads: Sequence[tuple[bytes, str]], retry_for_s: float = 300) -> Burst:
    """Send all `uploads` (multipart bodies) at once, one thread each, then each one refused (503) again
    after its Retry-After until answered or `retry_for_s` has passed; the server's peak memory is
    counted from the burst's start (Linux: /proc/PID/clear_refs resets VmHWM)."""
    Path(f"/proc/{server.pid}/clear_refs").write_text("5")
    first: list = [None] * len(uploads)
    start = threading.Barrier(len(uploads))

    def upload(i: int) -> None:
        start.wait()
        first[i] = send(server, *uploads[i])

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(uploads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    final = list(first)
    deadline = time.monotonic() + retry_for_s
    for i, answer in enumerate(first):
        while answer is not None and answer[0] == 503 and time.monotonic() < deadline:
            time.sleep(int(answer[1]["retry-after"]))
            answer = final[i] = send(server, *uploads[i])
    return Burst(first, final, rss_mb(server.pid, "VmHWM"))


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
                   workdir: Path | None = None, poll_s: float = 0.5) -> Iterator[Server]:
    """Start `python app.py` with os.environ plus `env`, wait until /api/health answers 200 (asked
    every `poll_s`), and stop it (SIGTERM, then SIGKILL after 30 s) on exit. Fails the test with the log's tail if the
    process exits or does not answer within `startup_s`. Without `workdir`, a temporary folder is
    used and removed afterwards."""
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soundalike-server-")))
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        full_env = {**os.environ,
                    "SOUNDALIKE_DATA_DIR": str(workdir / "data"), "SOUNDALIKE_UPLOAD_DIR": str(workdir / "uploads"),
                    # small_store's clips are 4 s: picks of 3 s or more (the service's default minimum is 10 s)
                    "SOUNDALIKE_MIN_PICK_S": "3",
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
                time.sleep(poll_s)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
