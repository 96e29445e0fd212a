"""Copies of a clip as users make them: a 128 kb/s MP3, an OGG Vorbis, a 44.1 kHz resample, a
12 s excerpt. Shared by benchmarks/bench_copies.py and tests/test_fingerprint.py."""
from __future__ import annotations

import io
from typing import Callable

import numpy as np
import soundfile as sf
import soxr

TRIM_S = (7.3, 19.3)   # the excerpt: 12 s from 7.3 s in, so its frames fall between the original's


def encode(y: np.ndarray, sr: int, **kwargs) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, y, sr, **kwargs)
    return buffer.getvalue()


def mp3_128k(y: np.ndarray, sr: int) -> bytes:
    # libsndfile's constant-bitrate MP3; at 22.05 kHz compression level 0.2 is 128 kb/s.
    return encode(y, sr, format="MP3", compression_level=0.2, bitrate_mode="CONSTANT")


def ogg(y: np.ndarray, sr: int) -> bytes:
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", sr, 1, format="OGG", subtype="VORBIS") as f:
        for start in range(0, len(y), sr):   # one long OGG write can crash libsndfile
            f.write(y[start:start + sr])
    return buffer.getvalue()


def resampled_44k(y: np.ndarray, sr: int) -> bytes:
    return encode(soxr.resample(y, sr, 44100), 44100, format="FLAC")


def trimmed(y: np.ndarray, sr: int) -> bytes:
    return encode(y[int(TRIM_S[0] * sr):int(TRIM_S[1] * sr)], sr, format="FLAC")


COPIES: dict[str, Callable[[np.ndarray, int], bytes]] = {
    "mp3 128 kb/s": mp3_128k, "ogg vorbis": ogg, "44.1 kHz": resampled_44k, "12 s excerpt": trimmed,
}
