"""Helpers for the benchmark scripts: medians after warm-up, and a verdict against a target."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
SHARED_GTZAN = REPO.parent / "shared" / "gtzan-dev"


def median_seconds(run: Callable[[], object], repeats: int, warmup: int = 2) -> tuple[float, list[float]]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def server_ms(server_timing: str) -> float:
    """The app's own measure of a request, from its Server-Timing header ("app;dur=123.4")."""
    return float(server_timing.split("dur=")[1])


def verdict(name: str, value: float, target: float, unit: str, higher_is_better: bool = False) -> str:
    ok = value >= target if higher_is_better else value <= target
    relation = ">=" if higher_is_better else "<="
    return f"{name}: {value:.1f} {unit} (target {relation} {target:g} {unit}) {'OK' if ok else 'MISSED'}"
