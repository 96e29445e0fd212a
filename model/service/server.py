"""Soundalike's production HTTP server: waitress, with deadlines for slow clients.

    python app.py              (builds the demo library into an empty data folder first)
    python app.py --no-demo    (serves the data folder as it is)

`app.py` holds the application and starts this server (`prepare_process`, then `serve`); this module
knows only a WSGI callable, so it imports neither the application nor the network.

Waitress reads a whole request, body included, on its one I/O thread before an application thread
sees it (bodies over 512 KiB go to a temporary file), so a slow client holds a connection, never a
thread. What waitress lacks is a deadline for a request that keeps trickling in; `Bounds` adds one.
A request being received is answered 408 and its connection closed when

- its request line and headers are not complete `header_s` (10 s) after its first byte;
- `t` seconds after its first byte, fewer than `min_rate` x (t - `grace_s`) bytes of it have come
  (8 KiB/s, 64 kbit/s, after 10 s): a 50 MiB upload may take up to 10 s + 50 MiB / 8 KiB/s = 6,410 s
  (1 h 47 min), and one on a 1 Mbit/s uplink takes about 7 min. Bytes that came faster than that
  buy at most `credit_s` (30 s) of slack: a fast start does not buy a long stall later;
- nothing of it has come for `silence_s` (30 s).

The bodies held at once (being received, or waiting for their answer) are bounded in bytes
(SOUNDALIKE_BODY_BUDGET_MB): one that does not fit is answered 503 with Retry-After from its
headers, before any of it is read (model/service/requests.py).

A connection with no request being received or answered (a kept-alive one, one that never sent
anything, one whose client does not read its response) is closed after `idle_s` (15 s) without
traffic. At `CONNECTION_LIMIT` open connections, the idle ones that have been quiet longest are closed
to make room for new ones. A connection being closed that still cannot take its last bytes after
`close_s` (5 s) is closed at once. The time the application takes is not bounded here.
"""
from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher, WSGITask
from waitress.utilities import RequestEntityTooLarge

from model.service.headers import SECURITY_HEADERS
from model.service.requests import BodyBudget, BoundedParser, RefusalTask
from model.service.settings import Settings

log = logging.getLogger("soundalike.server")

CONNECTION_LIMIT = 1000
FILES_RESERVED = 256          # the application's own files: store, weights, uploads, logs
ACCEPT_BATCH = 64             # connections accepted in one turn of the I/O loop
EXTRA_THREADS = 4             # beyond the analyses admitted and queued: always some for a 503 or /api/health


@dataclass(frozen=True)
class Bounds:
    header_s: float = 10.0
    grace_s: float = 10.0
    min_rate: float = 8192.0  # bytes per second, counted from a request's first byte
    silence_s: float = 30.0
    credit_s: float = 30.0    # the most slack that bytes come early buy
    idle_s: float = 15.0
    close_s: float = 5.0
    check_s: int = 1          # how often connections are checked (waitress takes whole seconds)

    def describe(self) -> str:
        return (f"headers within {self.header_s:g} s, then at least {self.min_rate / 1024:g} KiB/s after "
                f"{self.grace_s:g} s, silence within a request {self.silence_s:g} s, idle connections "
                f"{self.idle_s:g} s")


BOUNDS = Bounds()


class TooLargeTask(WSGITask):
    """A body announced larger than the limit: the application answers from the headers alone (its own
    413 page or JSON, as it would have), and the connection is closed since the body was never read."""

    def build_response_header(self) -> bytes:
        self.set_close_on_finish()
        return super().build_response_header()


def error_task(channel: HTTPChannel, request: HTTPRequestParser) -> RefusalTask | WSGITask:
    if isinstance(request.error, RequestEntityTooLarge) and request.content_length:
        return TooLargeTask(channel, request)
    return RefusalTask(channel, request)


def next_due(due: float, now: float, received: int, bounds: Bounds) -> float:
    """When the request being received is overdue, after `received` more bytes of it at `now`: each
    byte buys 1 / `min_rate` s, but the deadline is never more than `credit_s` ahead."""
    return min(due + received / bounds.min_rate, now + max(bounds.credit_s, bounds.grace_s))


class BoundedChannel(HTTPChannel):
    """One connection: counts the time and bytes of the request being received."""

    error_task_class = staticmethod(error_task)
    request_since = 0.0    # time.time() of the request's first byte
    request_bytes = 0
    request_due = 0.0      # when it is overdue unless more comes (`next_due`)
    closing_since: float | None = None

    def __init__(self, server: BoundedServer, sock, addr, adj, map=None) -> None:
        super().__init__(server, sock, addr, adj, map)
        self.parser_class = partial(BoundedParser, budget=server.budget)

    def received(self, data: bytes) -> bool:
        now = time.time()
        if self.request is None:
            self.request_since, self.request_bytes = now, 0
            self.request_due = now + BOUNDS.grace_s
        self.request_bytes += len(data)
        self.request_due = next_due(self.request_due, now, len(data), BOUNDS)
        return super().received(data)

    def handle_close(self) -> None:
        if self.request is not None:   # one being received: its body's bytes go back to the budget
            self.request.close()
        super().handle_close()

    def send_continue(self) -> None:
        # Waitress would invite the body of a request it has refused (413) and then wait for that body.
        if self.request.error is None:
            super().send_continue()

    def service(self) -> None:
        super().service()
        # A request that came in behind this one (pipelined) waited for it: its clock starts now.
        self.request_since, self.request_bytes = time.time(), 0
        self.request_due = self.request_since + BOUNDS.grace_s

    def overdue(self, now: float, bounds: Bounds) -> str | None:
        """Why the request being received has taken too long, or None."""
        age = now - self.request_since
        if not self.request.headers_finished and age > bounds.header_s:
            return f"the request line and headers took more than {bounds.header_s:g} s"
        if now - self.last_activity > bounds.silence_s:
            return f"nothing came for {bounds.silence_s:g} s"
        if now > self.request_due:
            return f"the request came slower than {bounds.min_rate / 1024:g} KiB/s"
        return None

    def time_out(self, reason: str) -> None:
        body = f"Request Timeout: {reason}\n".encode()
        headers = "".join(f"{name}: {value}\r\n" for name, value in SECURITY_HEADERS.items()).encode()
        response = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n%s"
                    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s"
                    % (headers, len(body), body))
        with self.outbuf_lock:
            self.outbufs[-1].append(response)
            self.total_outbufs_len += len(response)
        self.will_close = True
        log.debug("408 to %s: %s", self.addr, reason)


class BoundedServer(TcpWSGIServer):
    channel_class = BoundedChannel
    bounds = BOUNDS
    full_logged_at = 0.0
    budget = BodyBudget(2 ** 62, retry_after_s=int(BOUNDS.credit_s))   # make_server sets the real one

    def maintenance(self, now: float) -> None:
        for channel in list(self.active_channels.values()):
            if channel.will_close:
                # Closed when its last bytes are sent; a client that reads nothing would keep it open.
                channel.closing_since = channel.closing_since or now
                if now - channel.closing_since > self.bounds.close_s:
                    channel.handle_close()
            elif channel.requests:
                continue   # being answered: the application's time, not the client's
            elif channel.request is None:
                if now - channel.last_activity > self.bounds.idle_s:
                    channel.will_close = True
            else:
                reason = channel.overdue(now, self.bounds)
                if reason:
                    channel.time_out(reason)

    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        if not self.accepting:
            return False
        if len(self._map) < self.adj.connection_limit:
            return True
        self.make_room(now)
        return False   # the connections closed to make room close in this turn of the loop: accept in the next

    def handle_accept(self) -> None:
        # Waitress accepts one connection per turn of its loop, and each turn looks at every open
        # connection: a flood of connections would queue a new client behind it for seconds.
        for _ in range(ACCEPT_BATCH):
            opened = len(self._map)
            if opened >= self.adj.connection_limit:
                return
            super().handle_accept()
            if len(self._map) == opened:   # none was waiting
                return

    def make_room(self, now: float) -> None:
        idle = sorted((c for c in self.active_channels.values()
                       if not (c.will_close or c.requests) and c.request is None), key=lambda c: c.last_activity)
        for channel in idle[:max(1, self.adj.connection_limit // 10)]:
            channel.will_close = True
        if now - self.full_logged_at > 60:   # a warning a minute at most, during a flood
            self.full_logged_at = now
            log.warning("%d connections open: closing the %d idle longest, %s", len(self.active_channels),
                        min(len(idle), max(1, self.adj.connection_limit // 10)),
                        "new connections wait" if not idle else "to accept new ones")


def connection_limit(wanted: int) -> int:
    """`wanted`, or fewer if the process may not open enough files: each connection may hold a socket
    and a temporary file for its body. Raises the soft limit towards the hard one first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * wanted + FILES_RESERVED
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return wanted if soft == resource.RLIM_INFINITY else max(1, min(wanted, (soft - FILES_RESERVED) // 2))


def make_server(app: Callable, settings: Settings) -> BoundedServer:
    """The server, bound to settings.host:settings.port and accepting; `run()` serves."""
    adj = Adjustments(
        host=settings.host, port=settings.port,
        threads=settings.max_analyses + settings.max_queued + EXTRA_THREADS,
        connection_limit=connection_limit(CONNECTION_LIMIT),
        # Waitress refuses a larger announced body before reading it (>=, hence the + 1).
        max_request_body_size=settings.max_body_bytes + 1,
        cleanup_interval=BOUNDS.check_s, channel_timeout=int(BOUNDS.idle_s),
        asyncore_use_poll=True,   # select() fails beyond 1024 file descriptors
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    server = BoundedServer(app, map={}, dispatcher=dispatcher, adj=adj)
    # A refused body's sender may retry once the bodies held now are answered, or dropped as stalled.
    server.budget = BodyBudget(settings.body_budget_bytes, retry_after_s=int(BOUNDS.credit_s))
    return server


M_ARENA_MAX = -8     # glibc's mallopt parameter (malloc.h)
MALLOC_ARENAS = 2    # one per core of a 2-core host; MALLOC_ARENA_MAX in the environment wins


def fewer_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas before the server's threads start. Each of its ~20 threads would
    otherwise get an arena of its own (up to 8 per core) and keep what a request freed there: 499 MB
    idle after requests instead of 411, and a 648 MB peak under 32 uploads instead of 563 (docs/model.md).
    False where the C library is not glibc, or the environment sets its own cap."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        return ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas) == 1
    except (OSError, AttributeError):
        return False


def _stop_now(*_) -> None:
    log.info("stopping (SIGTERM)")
    logging.shutdown()
    os._exit(0)



def prepare_process() -> None:
    """What the serving process sets before the application loads and starts its threads: the log's format,
    SIGTERM's handler, and glibc's malloc arenas."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # As PID 1 in a container, SIGTERM would otherwise be ignored. Stop at once, while loading too: nothing is
    # left to save (uploads and results are written whole), and unloading TensorFlow takes seconds.
    signal.signal(signal.SIGTERM, _stop_now)
    fewer_malloc_arenas()


def serve(app: Callable, settings: Settings) -> None:
    """Serve `app` on settings.host:settings.port until SIGTERM or Ctrl-C."""
    server = make_server(app, settings)
    log.info("serving http://%s:%s (waitress): %d threads, up to %d connections, uploads up to %g MB, "
             "request bodies up to %g MB at once; %s", server.effective_host, server.effective_port,
             server.adj.threads, server.adj.connection_limit, settings.max_upload_mb,
             server.budget.limit / 1024 / 1024, BOUNDS.describe())
    server.run()
