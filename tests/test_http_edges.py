"""The real server at its edges (issue 20): request bodies held at once bounded by a budget, a
request with both Content-Length and Transfer-Encoding refused with its connection closed, waitress's
own refusals as JSON on /api/, and a relative Location for a `//` path.

The bounds are small and set by the test (a 1 MB upload limit, a 2.5 MB budget), and every wait is
for something the server does (an answer, bytes in its spool), never for a length of time."""
import json
import os
import socket
import time
from pathlib import Path

import pytest

from model.service.settings import from_env
from serving import multipart, read_response, running_server, small_store, wav

BUDGET_MB = 2.5
WAIT_S = 120.0   # the most any wait for the server's progress may take on a loaded machine


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("edges")
    spool = root / "spool"
    spool.mkdir()
    env = {"SOUNDALIKE_DATA_DIR": str(small_store(root)), "SOUNDALIKE_WEIGHTS_DIR": str(from_env().weights_dir),
           "SOUNDALIKE_MAX_UPLOAD_MB": "1", "SOUNDALIKE_BODY_BUDGET_MB": str(BUDGET_MB),
           "SOUNDALIKE_MAX_ANALYSES": "1", "SOUNDALIKE_MAX_QUEUED": "4", "TMPDIR": str(spool)}
    with running_server(env, workdir=root / "server") as server:
        yield server


def spooled(server) -> int:
    """Bytes of the temporary files (request bodies) the server holds open in its TMPDIR."""
    spool = str(server.workdir.parent / "spool")
    total = 0
    for fd in Path(f"/proc/{server.pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith(spool):
                total += fd.stat().st_size
        except FileNotFoundError:   # closed meanwhile
            continue
    return total


def head(content_type: str, length: int, path: str = "/api/analyze") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def answered(sock: socket.socket) -> bool:
    """Whether the server has sent something on `sock` (without waiting)."""
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)


def everything(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection (a reset closes it too: the server
    closed it with part of the request unread)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_request_bodies_held_at_once_stay_within_the_budget(server):
    body, content_type = multipart(wav(20.0))   # ~0.9 MB: two fit in 2.5 MB, a third does not
    part = 700_000                                # held back: the rest comes later (a slow client)
    budget = BUDGET_MB * 1024 * 1024
    assert 2 * len(body) <= budget < 3 * len(body)
    held, refused, peak = [], [], 0
    try:
        for _ in range(5):
            sock = socket.create_connection(server.address, timeout=WAIT_S)
            sock.sendall(head(content_type, len(body)) + body[:part])
            deadline = time.monotonic() + WAIT_S
            # Either the server answers at once (refused), or the part sent shows in its spool.
            while not answered(sock) and spooled(server) < (len(held) + 1) * part:
                assert time.monotonic() < deadline, "neither answered nor spooled"
                time.sleep(0.05)
            peak = max(peak, spooled(server))
            (refused if answered(sock) else held).append(sock)
        assert len(held) == 2 and len(refused) == 3 and peak <= budget
        for sock in refused:
            status, headers, answer = read_response(sock)
            assert status == 503 and int(headers["retry-after"]) > 0
            assert json.loads(answer)["status"] == 503 and "Try again" in json.loads(answer)["error"]
            assert everything(sock) == b""   # and the connection closed
        # A held body, completed, is analysed; its bytes go back to the budget and a new one fits.
        held[0].sendall(body[part:])
        assert read_response(held[0])[0] == 200
        # The server gives the bytes back when it closes the request, just after the answer is sent:
        # wait for that (its spool file closed, only the other held part left), not for a time.
        deadline = time.monotonic() + WAIT_S
        while spooled(server) > part:
            assert time.monotonic() < deadline, "the answered body is still held"
            time.sleep(0.05)
        again = socket.create_connection(server.address, timeout=WAIT_S)
        held.append(again)
        again.sendall(head(content_type, len(body)) + body)
        assert read_response(again)[0] == 200
    finally:
        for sock in held + refused:
            sock.close()


def test_content_length_and_transfer_encoding_together_close_the_connection(server):
    smuggled = b"GET /api/health HTTP/1.1\r\nHost: test\r\n\r\n"
    request = (b"POST /api/analyze HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\n" % (5 + len(smuggled))) + smuggled
    with socket.create_connection(server.address, timeout=WAIT_S) as sock:
        sock.sendall(request)
        data = everything(sock)
    assert data.count(b"HTTP/1.1 ") == 1, data   # the follow-up is never answered
    assert data.startswith(b"HTTP/1.1 400") and b'"status": 400' in data


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /api/analyze HTTP/1.1\r\nHost: test\r\nContent-Length: 12abc\r\n\r\n", 400),
    (b"GET /api/health HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n", 431),
    (b"POST /api/analyze HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST /api/analyze HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
     + b"".join(b"%x\r\n%s\r\n" % (65536, b"x" * 65536) for _ in range(18)) + b"0\r\n\r\n", 413),
])
def test_the_servers_own_refusals_are_json_on_the_api(server, request_bytes, status):
    with socket.create_connection(server.address, timeout=WAIT_S) as sock:
        try:
            sock.sendall(request_bytes)
        except (BrokenPipeError, ConnectionResetError):   # refused before all of it was read
            pass
        got, headers, body = read_response(sock)
    assert got == status
    assert headers["content-type"] == "application/json" and json.loads(body)["status"] == status
    assert json.loads(body)["error"].endswith(".")
    assert headers["x-content-type-options"] == "nosniff" and "frame-ancestors 'none'" in headers["content-security-policy"]


def test_a_double_slash_is_redirected_without_the_host_header(server):
    with socket.create_connection(server.address, timeout=WAIT_S) as sock:
        sock.sendall(b"GET //api//health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        status, headers, _ = read_response(sock)
    assert status == 308 and headers["location"] == "/api/health"
