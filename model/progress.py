"""A dependency-free progress bar for long jobs, on stderr."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`update()` once per item. On a terminal the bar redraws in place; elsewhere (CI, logs)
    a line is printed at most every `log_every_s` seconds, so logs stay short."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, log_every_s: float = 5.0,
                 width: int = 30) -> None:
        # sys.stderr as it is now, not as it was at import (a test's captured stream is closed after it).
        self.total, self.label, self.stream, self.width = total, label, stream or sys.stderr, width
        self.done = 0
        self.start = self._last = time.perf_counter()
        self.tty = self.stream.isatty()
        self.log_every_s = 0.1 if self.tty else log_every_s

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last >= self.log_every_s or self.done >= self.total:
            self._last = now
            self._draw(now, note)

    def _draw(self, now: float, note: str) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        filled = int(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        line = (f"{self.label} [{bar}] {self.done}/{self.total} {rate:.1f}/s "
                f"eta {eta:.0f}s {note}").rstrip()
        self.stream.write(("\r\033[K" + line) if self.tty else line + "\n")
        if self.tty and self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
