"""How many uploads the service decodes and analyses at once, and how many may wait for a turn.

Each analysis holds its upload, its decoded samples and its features (tens of MB for a long song),
so the service's memory is bounded by the number running at once, not by the number sent at once.
A request beyond the waiting room is refused at once (503 with Retry-After), rather than queued
without end."""
from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Iterator

# Weight of the newest analysis in the running mean of analysis times.
_SMOOTHING = 0.2


class Busy(Exception):
    """Every turn is taken and the waiting room is full; `retry_after_s` estimates when to come back."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the service is busy; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Admission:
    """At most `running` holders of `turn()` at once, and at most `waiting` more blocked in it."""

    def __init__(self, running: int, waiting: int, typical_s: float = 0.5) -> None:
        if running < 1 or waiting < 0:
            raise ValueError(f"need at least one analysis at once and no negative queue, not {running}, {waiting}")
        self.running, self.waiting = running, waiting
        self._turns = threading.Semaphore(running)
        self._lock = threading.Lock()
        self._admitted = 0               # running and waiting
        self._typical_s = typical_s      # running mean of how long a turn takes

    @property
    def admitted(self) -> int:
        return self._admitted

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Wait for a turn; raises Busy at once when `running + waiting` are admitted already."""
        with self._lock:
            if self._admitted >= self.running + self.waiting:
                # The queue ahead drains `running` at a time.
                raise Busy(max(1, math.ceil(self._typical_s * self._admitted / self.running)))
            self._admitted += 1
        try:
            with self._turns:
                start = time.perf_counter()
                try:
                    yield
                finally:
                    took = time.perf_counter() - start
                    with self._lock:
                        self._typical_s += _SMOOTHING * (took - self._typical_s)
        finally:
            with self._lock:
                self._admitted -= 1
