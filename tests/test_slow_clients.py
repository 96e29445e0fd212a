"""Slow, stalled and idle clients against the real server (`python app.py`, model/service/server.py), over raw
sockets on 127.0.0.1: each is dropped within its documented bound (model.service.server.Bounds) while normal
clients are answered. Bounds are checked with generous slack: on a loaded machine the server's
checks run late, never early. The bounds' arithmetic itself is checked exactly, on fake connections."""
from __future__ import annotations

import json
import re
import resource
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import pytest

from model.service.server import BOUNDS, CONNECTION_LIMIT, BoundedChannel, BoundedServer, next_due
from model.service.settings import from_env
from serving import Server, multipart, post_upload, read_response, running_server, small_store, wav

SLACK_S = BOUNDS.check_s + 20.0   # the check's period, the loop's turn, and a loaded machine
COPIES = 3                        # of each attack: 9 kinds x 3 = 27 connections, for 6 server threads
IDLE_CONNECTIONS = 1100


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow")
    # 1 analysis + 1 queued + 4 = 6 threads: fewer than the attacking connections.
    env = {"SOUNDALIKE_DATA_DIR": str(small_store(root)), "SOUNDALIKE_WEIGHTS_DIR": str(from_env().weights_dir),
           "SOUNDALIKE_MAX_ANALYSES": "1", "SOUNDALIKE_MAX_QUEUED": "1"}
    with running_server(env, workdir=root) as running:
        yield running


@dataclass
class Attack:
    name: str
    opening: bytes         # sent at once
    bound_s: float         # when the server drops it at the latest, by the documented bounds
    answer: str            # what the server says first ("" for a silent close)
    trickle: bool = False  # then one byte a second
    elapsed: float | None = None
    received: bytes = field(default=b"", repr=False)
    sent: threading.Event = field(default_factory=threading.Event, init=False, repr=False)   # connected, opening sent

    def run(self, address: tuple[str, int]) -> None:
        start = time.monotonic()
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(self.opening)
            self.sent.set()
            sock.settimeout(1.0)
            while time.monotonic() - start < self.bound_s + SLACK_S:
                try:
                    chunk = sock.recv(65536)
                    if not chunk:
                        self.elapsed = time.monotonic() - start
                        return
                    self.received += chunk
                except TimeoutError:
                    if self.trickle:
                        sock.sendall(b"x")
                except (ConnectionResetError, BrokenPipeError):   # a byte sent after the server closed
                    self.elapsed = time.monotonic() - start
                    return


def attacks() -> list[Attack]:
    b = BOUNDS
    post = b"POST /api/analyze HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=x\r\n"
    kinds = [
        Attack("headers never finished", b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ", b.header_s, "408"),
        Attack("GET /api/health HTTP/1.1, then silence", b"GET /api/health HTTP/1.1\r\n", b.header_s, "408"),
        Attack("40 MB announced, 100 bytes sent", post + b"Content-Length: 40000000\r\n\r\n" + b"x" * 100,
               b.grace_s + 1, "408"),
        Attack("Expect: 100-continue, nothing follows",
               post + b"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n", b.grace_s + 1, "100"),
        Attack("garbage request line", b"\x16\x03\x01\x02\x00\x01 garbage\r\n\r\n", 0.0, "400"),
        Attack("headers, a byte a second", b"GET / HTTP/1.1\r\n", b.header_s, "408", trickle=True),
        Attack("body, a byte a second", post + b"Content-Length: 100000\r\n\r\n", b.grace_s + 1, "408", trickle=True),
        # 300 kB in at once is credit for 10 + 300000 / 8192 = 47 s: the silence bound ends it first.
        Attack("300 kB of a 1 MB body, then silence", post + b"Content-Length: 1000000\r\n\r\n" + b"x" * 300000,
               b.silence_s, "408"),
        Attack("connected, nothing sent", b"", b.idle_s, ""),
    ]
    return [replace(k) for k in kinds for _ in range(COPIES)]


def test_slow_and_stalled_clients_are_dropped_while_uploads_are_answered(server):
    running = attacks()
    threads = [threading.Thread(target=a.run, args=(server.address,), daemon=True) for a in running]
    for thread in threads:
        thread.start()
    for attack in running:   # every attack connected, its opening sent, before the uploads (no guess at how long)
        assert attack.sent.wait(120), f"{attack.name}: could not connect"
    status, answer = post_upload(server, wav(4.0))
    assert status == 200, answer
    assert abs(sum(answer["probabilities"].values()) - 1) < 1e-4 and len(answer["recommendations"]) == 3
    # A slow but steady upload (3 x the minimum rate) runs past the grace period and is answered.
    slow = wav(10.0, seed=1)
    status, answer = post_upload(server, slow, rate=3 * BOUNDS.min_rate)
    assert status == 200, answer
    assert abs(answer["duration_s"] - 10.0) < 0.1
    for thread in threads:
        thread.join(timeout=BOUNDS.silence_s + 2 * SLACK_S)
    for attack in running:
        assert attack.elapsed is not None, f"{attack.name}: still open after {attack.bound_s + SLACK_S:g} s"
        assert attack.elapsed <= attack.bound_s + SLACK_S, (attack.name, attack.elapsed)
        if attack.answer:
            assert re.match(rf"HTTP/1\.[01] {attack.answer} ", attack.received.decode("latin-1")), \
                (attack.name, attack.received[:200])
        else:
            assert attack.received == b"", (attack.name, attack.received[:200])
    expect = next(a for a in running if a.answer == "100")
    assert b"HTTP/1.1 408 " in expect.received, expect.received
    assert "Traceback" not in server.log_tail(20000)


def test_expect_100_continue_upload_is_answered(server):
    """As curl sends any body over 1 MB: headers, wait for 100 Continue, then the body."""
    body, content_type = multipart(wav(3.0, seed=3))
    with socket.create_connection(server.address, timeout=60) as sock:
        sock.sendall(f"POST /api/analyze HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, _, answer = read_response(sock)
    assert status == 200 and len(json.loads(answer)["recommendations"]) == 3


@pytest.mark.parametrize("expect", [False, True])
def test_a_body_announced_over_the_limit_gets_the_apps_413_at_once(server, expect):
    headers = b"Expect: 100-continue\r\n" if expect else b""
    with socket.create_connection(server.address, timeout=60) as sock:
        sock.sendall(b"POST /api/analyze HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                     b"Content-Length: 60000000\r\n" + headers + b"\r\n")
        status, headers_in, answer = read_response(sock)   # no 100 Continue first, and no body awaited
        assert sock.recv(65536) == b""                       # then closed: the body was never read
    assert status == 413 and headers_in["connection"] == "close"
    assert "larger than" in json.loads(answer)["error"]


def head(server: Server, path: str) -> tuple[str, bytes, bytes]:
    """HEAD `path` with Connection: close: (status line, headers, everything after them)."""
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_part, _, rest = data.partition(b"\r\n\r\n")
    return head_part.split(b"\r\n")[0].decode(), head_part, rest


@pytest.mark.parametrize("path, status", [("/", 200), ("/api/health", 200), ("/api/analyze", 405), ("/nothing", 404)])
def test_head_gets_a_status_line_and_no_body(server, path, status):
    line, headers, rest = head(server, path)
    assert re.fullmatch(rf"HTTP/1\.1 {status} .+", line) and rest == b"", (line, rest)
    assert re.search(rb"\r\nContent-Length: \d+", headers)


def test_head_then_get_on_one_connection(server):
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(b"HEAD /api/health HTTP/1.1\r\nHost: test\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\n")
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: test\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 200 and json.loads(body)["status"] == "ok"


def was_closed(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (select() takes no descriptor over 1023)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False


def test_many_idle_connections_do_not_stop_the_service(server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_CONNECTIONS + 200
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"{IDLE_CONNECTIONS} connections need {wanted} open files; the limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            idle.append(socket.create_connection(server.address, timeout=30))
        with socket.create_connection(server.address, timeout=60) as sock:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            status, _, body = read_response(sock)
        assert status == 200 and json.loads(body)["status"] == "ok"
        # Beyond its limit (CONNECTION_LIMIT, or fewer where it may open fewer files: it says so) the
        # server closed the idle connections quiet longest, a batch at a time; most of those it took
        # are still open, so the answer did not wait for the idle bound to close them.
        limit = int(re.search(r"up to (\d+) connections", server.log_tail(100000)).group(1))
        assert limit <= CONNECTION_LIMIT
        closed = sum(was_closed(s) for s in idle)
        assert IDLE_CONNECTIONS - limit <= closed and IDLE_CONNECTIONS - closed >= limit // 2, (limit, closed)
    finally:
        for sock in idle:
            sock.close()


class FakeChannel:
    """What BoundedServer.maintenance and BoundedChannel.overdue read of a connection."""

    def __init__(self, since: float = 0.0, received: int = 0, headers_done: bool = True, request: bool = True,
                 last_activity: float = 0.0, will_close: bool = False) -> None:
        self.request_since, self.request_bytes, self.last_activity = since, received, last_activity
        # as if the bytes came at an even pace until `last_activity` (no early credit to cap)
        self.request_due = since + BOUNDS.grace_s + received / BOUNDS.min_rate
        self.request = SimpleNamespace(headers_finished=headers_done) if request else None
        self.requests, self.will_close, self.closing_since, self.closed = [], will_close, None, False
        self.timed_out: str | None = None

    overdue = BoundedChannel.overdue

    def time_out(self, reason: str) -> None:
        self.timed_out = reason

    def handle_close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("channel, now, overdue", [
    (FakeChannel(headers_done=False, received=50_000, last_activity=9.9), 9.9, False),
    (FakeChannel(headers_done=False, received=50_000, last_activity=10.1), 10.1, True),   # headers: 10 s
    (FakeChannel(received=81_920, last_activity=19.9), 19.9, False),    # 10 s grace + 80 KiB at 8 KiB/s
    (FakeChannel(received=81_920, last_activity=20.1), 20.1, True),
    (FakeChannel(received=10**7, last_activity=0.0), 29.9, False),      # much credit, silent 29.9 s
    (FakeChannel(received=10**7, last_activity=0.0), 30.1, True),       # silent over 30 s
])
def test_the_bounds_of_a_request_being_received(channel, now, overdue):
    assert (channel.overdue(now, BOUNDS) is not None) == overdue


def test_a_fast_start_buys_no_long_stall():
    """49 MB in the first second, then a byte every 20 s (never silent for 30 s): overdue once the
    credit the fast bytes bought (credit_s) is spent, not after the 6,000 s they would buy uncapped."""
    channel = FakeChannel(since=0.0)
    channel.request_due = next_due(BOUNDS.grace_s, 1.0, 49 * 2 ** 20, BOUNDS)
    for now in (21.0, 41.0, 61.0):
        channel.request_due = next_due(channel.request_due, now, 1, BOUNDS)
        channel.last_activity = now
        stalled = channel.overdue(now + 19.9, BOUNDS)
        if now + 19.9 > 1.0 + BOUNDS.credit_s:
            break
        assert stalled is None
    assert stalled is not None and "slower than" in stalled
    # A steady client at twice the least rate is never overdue, however long its body.
    steady = FakeChannel(since=0.0)
    steady.request_due = BOUNDS.grace_s
    for second in range(1, 3600):
        steady.request_due = next_due(steady.request_due, float(second), int(2 * BOUNDS.min_rate), BOUNDS)
        steady.last_activity = float(second)
        assert steady.overdue(second + 0.9, BOUNDS) is None


def test_maintenance_closes_idle_connections_and_stuck_closes():
    idle, fresh = FakeChannel(request=False, last_activity=0.0), FakeChannel(request=False, last_activity=10.0)
    slow, answered = FakeChannel(received=100), FakeChannel(received=100)
    answered.requests = ["being answered"]
    stuck = FakeChannel(request=False, will_close=True)   # its client reads nothing: the close never flushes
    server = SimpleNamespace(active_channels={i: c for i, c in enumerate([idle, fresh, slow, answered, stuck])},
                             bounds=BOUNDS)
    BoundedServer.maintenance(server, 20.0)
    assert idle.will_close and not fresh.will_close
    assert slow.timed_out and answered.timed_out is None and not answered.will_close
    assert not stuck.closed
    BoundedServer.maintenance(server, 20.0 + BOUNDS.close_s + 0.1)
    assert stuck.closed and not fresh.closed
