"""Shared test fixtures: generated audio, the shared GTZAN clips (skipped where absent), the classifier."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_GTZAN = REPO.parent / "shared" / "gtzan-dev"


def tone(seconds: float, sr: int = 22050, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A deterministic test signal: a few harmonic notes over a noise floor, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    notes = 110.0 * 2 ** (rng.integers(0, 24, size=4) / 12)
    y = sum(0.15 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * (0.5 + k) * t)) for k, f in enumerate(notes))
    y = (y + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    return np.stack([y * (1 - 0.3 * c) for c in range(channels)], axis=1) if channels > 1 else y


def write_audio(path: Path, y: np.ndarray, sr: int, **kwargs) -> Path:
    """Write audio; OGG is written in blocks (one long sf.write of OGG can crash libsndfile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".ogg":
        with sf.SoundFile(path, "w", sr, 1 if y.ndim == 1 else y.shape[1], format="OGG", subtype="VORBIS") as f:
            for start in range(0, len(y), sr):
                f.write(y[start:start + sr])
    else:
        sf.write(path, y, sr, **kwargs)
    return path


def mp3_bytes(seconds: float, sr: int = 44100) -> bytes:
    """A generated clip encoded as MP3 (libsndfile's encoder), as bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, sr), sr, format="MP3")
    return buffer.getvalue()


def shared_clips(kind: str | None = None) -> list[tuple[Path, str]]:
    """(path, genre) of the shared GTZAN clips of one kind (full_30s, first_15s, excerpt_2-3s)."""
    with (SHARED_GTZAN / "MANIFEST.csv").open(newline="") as f:
        return [(SHARED_GTZAN / r["file"], r["genre"]) for r in csv.DictReader(f) if kind in (None, r["kind"])]


@pytest.fixture(scope="session")
def shared_gtzan() -> Path:
    if not (SHARED_GTZAN / "MANIFEST.csv").exists():
        pytest.skip("../shared/gtzan-dev is absent")
    return SHARED_GTZAN


@pytest.fixture(scope="session")
def classifier():
    from model.network.classifier import GenreClassifier

    model = GenreClassifier.load()
    model.warm_up()
    return model
