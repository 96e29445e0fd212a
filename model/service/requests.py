"""How the production server (model/service/server.py) parses requests and answers the ones it refuses
itself, beyond waitress's defaults (issue 20):

- the bytes of request bodies held at once (being received, or received and waiting for their answer;
  in memory or spooled to a temporary file) are bounded by a `BodyBudget`: a request whose body does
  not fit is answered 503 with Retry-After before its body is read, and its connection closed;
- a request with both Content-Length and Transfer-Encoding is refused (400) and its connection
  closed (RFC 9112 section 6.3: nothing sent after it on that connection, a smuggled request, is answered);
- waitress's own refusals (400, 413, 431, 501, the 503 above) are JSON on /api/ paths, as the
  application's are, and carry the security headers.
"""
from __future__ import annotations

import json
import threading

from waitress.parser import HTTPRequestParser, ParsingError
from waitress.task import ErrorTask
from waitress.utilities import Error

from model.service.headers import SECURITY_HEADERS

_START_BYTES = 8192   # of a request kept to find its path, for an error answered before it was parsed


class BodyBudget:
    """At most `limit` bytes of request bodies held at once; thread-safe (the I/O thread takes,
    the threads that answer give back)."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit, self.retry_after_s = limit, retry_after_s
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give_back(self, n: int) -> None:
        with self._lock:
            self.held -= n


class OverBudget(Error):
    code = 503
    reason = "Service Unavailable"


class BoundedParser(HTTPRequestParser):
    """One request: its body's bytes held against `budget`, given back when the request is closed
    (answered, or its connection dropped)."""

    def __init__(self, adj, budget: BodyBudget) -> None:
        super().__init__(adj)
        self.budget, self.held, self.start = budget, 0, b""

    def received(self, data: bytes) -> int:
        if len(self.start) < _START_BYTES:
            self.start += data[:_START_BYTES - len(self.start)]
        consumed = super().received(data)
        if self.error is None and self.headers_finished and self.body_rcv is not None:
            # A Content-Length is held whole from the headers on; a chunked body as it comes.
            wanted = (self.body_bytes_received if self.chunked else self.content_length) - self.held
            if wanted > 0:
                if self.budget.take(wanted):
                    self.held += wanted
                else:
                    self.error = OverBudget("Soundalike is receiving as many uploads as it holds at once. "
                                            f"Try again in {self.budget.retry_after_s} s.")
                    self.completed = True
                    self.connection_close = True
        return consumed

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        # Waitress reads such a request as chunked and keeps the connection; a proxy before it may
        # have read the Content-Length, and taken what follows for another request.
        if "CONTENT_LENGTH" in self.headers and (self.chunked or "TRANSFER_ENCODING" in self.headers):
            self.connection_close = True
            raise ParsingError("a request may not have both Content-Length and Transfer-Encoding")

    def close(self) -> None:
        if self.held:
            self.budget.give_back(self.held)
            self.held = 0
        super().close()

    def target(self) -> str:
        """The request's path, also for one refused before its headers were parsed (431)."""
        first_line = self.start.split(b"\r\n", 1)[0].split(b" ")
        return first_line[1].decode("latin-1") if len(first_line) == 3 else getattr(self, "path", "")


# The sentences of waitress's refusals, as the application words its own.
MESSAGES = {
    400: "The request is malformed ({detail}).",
    413: "The request body is larger than the service takes ({detail}). Send a smaller file.",
    431: "The request's headers are too large ({detail}).",
    501: "The request's Transfer-Encoding is not supported: send a Content-Length, or chunked.",
}


class RefusalTask(ErrorTask):
    """Waitress's error answer, as JSON on /api/ paths, with the security headers and, for a 503,
    Retry-After; the connection is closed after it (waitress's rule for errors)."""

    def execute(self) -> None:
        error = self.request.error
        status, headers, body = error.to_response(self.channel.server.adj.ident)
        target = self.request.target() if isinstance(self.request, BoundedParser) else ""
        if target.startswith("/api/"):
            message = error.body if isinstance(error, OverBudget) else \
                MESSAGES.get(error.code, "{detail}").format(detail=error.body.rstrip("."))
            body = json.dumps({"error": message, "status": error.code}).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       ("Connection", "close")]
        self.status = status
        self.response_headers.extend(headers)
        self.response_headers.extend(SECURITY_HEADERS.items())
        if isinstance(error, OverBudget):
            self.response_headers.append(("Retry-After", str(self.request.budget.retry_after_s)))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
