"""deploy/nginx.conf in front of the real server: nginx on a free loopback port, its files in a
temporary prefix. An upload goes through; a stalled request and an oversized body end at nginx.
Skipped where nginx is not installed (CI installs it: .ci/run)."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from model.service.headers import SECURITY_HEADERS
from model.service.settings import from_env
from serving import REPO, Server, free_port, post_upload, running_server, small_store, wav

CONFIG = REPO / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
SLACK_S = 20.0

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


def render(config: str, port: int, upstream_port: int) -> str:
    """The example as it is, but on loopback ports of the test's choosing."""
    rendered, n = re.subn(r"\blisten 80;", f"listen 127.0.0.1:{port};", config)
    rendered, m = re.subn(r"\bserver 127\.0\.0\.1:5000;", f"server 127.0.0.1:{upstream_port};", rendered)
    assert n == m == 1, "deploy/nginx.conf no longer has the lines this test rewrites"
    return rendered


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("proxied")
    env = {"SOUNDALIKE_DATA_DIR": str(small_store(root)), "SOUNDALIKE_WEIGHTS_DIR": str(from_env().weights_dir)}
    with running_server(env, workdir=root) as running:
        yield running


@pytest.fixture(scope="module")
def proxy(server) -> Iterator[Server]:
    """nginx with the example configuration, in front of `server`."""
    # Not under pytest's 0700 folders: run as root, nginx's workers are 'nobody' and use temp/ too.
    prefix = Path(tempfile.mkdtemp(prefix="soundalike-nginx-"))
    try:
        prefix.chmod(0o755)
        (prefix / "logs").mkdir()
        (prefix / "temp").mkdir()
        port = free_port()
        (prefix / "nginx.conf").write_text(render(CONFIG.read_text(), port, server.port))
        log_path = prefix / "logs" / "error.log"
        with (prefix / "logs" / "stderr.log").open("wb") as log:
            process = subprocess.Popen([NGINX, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"),
                                        "-e", str(log_path), "-g", "daemon off;"],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=2).close()
                        break
                    except OSError:
                        if process.poll() is not None or time.monotonic() > deadline:
                            pytest.fail(f"nginx did not start:\n{(prefix / 'logs' / 'stderr.log').read_text()}"
                                        f"{log_path.read_text() if log_path.exists() else ''}")
                        time.sleep(0.2)
                yield Server(f"http://127.0.0.1:{port}", port, process, log_path, prefix)
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_the_example_allows_what_the_service_allows():
    size = re.search(r"client_max_body_size (\d+)k;", CONFIG.read_text())
    assert size and int(size.group(1)) * 1024 == from_env({}).max_body_bytes


def test_the_example_sets_the_services_security_headers():
    added = dict(re.findall(r'^\s*add_header ([\w-]+) "([^"]*)" always;', CONFIG.read_text(), re.M))
    hidden = re.findall(r"^\s*proxy_hide_header ([\w-]+);", CONFIG.read_text(), re.M)
    assert added == SECURITY_HEADERS and sorted(hidden) == sorted(SECURITY_HEADERS)


def security_headers(response: bytes) -> list[tuple[str, str]]:
    lines = response.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    pairs = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
    return sorted((k, v) for k, v in pairs if k.lower() in {name.lower() for name in SECURITY_HEADERS})


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",             # the service's answer
    b"GET /api/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    b"POST /api/analyze HTTP/1.1\r\nHost: test\r\nContent-Length: 60000000\r\n\r\n",   # nginx's own 413
])
def test_every_answer_through_nginx_has_each_security_header_once(proxy, request_bytes):
    with socket.create_connection(proxy.address, timeout=30) as sock:
        sock.sendall(request_bytes)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert security_headers(data) == sorted(SECURITY_HEADERS.items()), data[:400]


def test_an_upload_through_nginx(proxy):
    status, answer = post_upload(proxy, wav(4.0))
    assert status == 200, answer
    assert abs(sum(answer["probabilities"].values()) - 1) < 1e-4 and len(answer["recommendations"]) == 3
    with socket.create_connection(proxy.address, timeout=30) as sock:
        sock.sendall(b"HEAD /api/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\n"), data


def test_an_oversized_body_is_refused_by_nginx(proxy):
    with socket.create_connection(proxy.address, timeout=30) as sock:
        sock.sendall(b"POST /api/analyze HTTP/1.1\r\nHost: test\r\nContent-Length: 60000000\r\n"
                     b"Content-Type: multipart/form-data; boundary=x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 413 ")


def test_a_stalled_request_is_dropped_by_nginx(proxy):
    start = time.monotonic()
    with socket.create_connection(proxy.address, timeout=60) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    elapsed = time.monotonic() - start
    assert elapsed <= 10 + SLACK_S, elapsed   # client_header_timeout
    assert b"200 OK" not in data
    status, answer = post_upload(proxy, wav(2.0, seed=2))
    assert status == 200, answer
