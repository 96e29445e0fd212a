"""Helpers for the benchmark scripts: medians after warm-up, a verdict against a target, a generated song."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

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


def make_song(path: Path, seconds: float, sr: int = 44100) -> Path:
    """A stereo song-like signal: chords changing every 2 s, with a beat, written in 1 s blocks."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 2, format="MP3") as f:
        for second in range(int(seconds)):
            t = second + np.arange(sr) / sr
            if second % 2 == 0:
                root = 110 * 2 ** (rng.integers(0, 12) / 12)
            y = sum(0.1 * np.sin(2 * np.pi * root * r * t) for r in (1, 1.26, 1.5, 2))
            y += 0.3 * np.exp(-30 * (t % 0.5)) * rng.standard_normal(sr)
            f.write(np.stack([y, 0.8 * y], axis=1).astype(np.float32))
    return path
