"""Decoding audio files into mono float32 samples, and resampling them for the network."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr

from model.params import MIN_DURATION_S, SAMPLE_RATE

AudioSource = Union[str, Path, bytes, BinaryIO]

# Formats libsndfile decodes without ffmpeg; the file's content decides, not its name.
SUPPORTED_EXTENSIONS = (".wav", ".au", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
# A peak below this (about -80 dBFS) is taken for silence.
SILENCE_PEAK = 1e-4
# libsndfile can stop early on a damaged stream; more than this fraction missing is an error.
MAX_MISSING_FRACTION = 0.02


class AudioError(ValueError):
    """The input is not usable audio; `str(error)` is a message fit for the person who sent it."""


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray      # mono float32, at `sample_rate`
    sample_rate: int         # Hz
    content_hash: str        # sha256 of the decoded mono samples: equal for a WAV and a FLAC of one recording

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def decode(source: AudioSource, min_duration_s: float = MIN_DURATION_S) -> Audio:
    """Decode a file (path, bytes or binary file object) of any sample rate and channel count.

    Raises AudioError for undecodable, truncated, empty, silent or too short input.
    """
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with sf.SoundFile(source) as f:
            declared = f.frames
            sample_rate = f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(f"not a decodable audio file ({_reason(error)})") from error
    if declared > 0 and len(data) < declared * (1 - MAX_MISSING_FRACTION):
        raise AudioError(f"the audio stream is truncated ({len(data)} of {declared} frames decode)")
    if len(data) == 0:
        raise AudioError("the audio file is empty")
    samples = _mono(data)
    if not np.all(np.isfinite(samples)):
        raise AudioError("the audio holds invalid (non-finite) samples")
    duration = len(samples) / sample_rate
    if duration < min_duration_s:
        raise AudioError(f"the audio is {duration:.2f} s long; at least {min_duration_s:g} s is needed")
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise AudioError("the audio is silent")
    digest = hashlib.sha256(np.ascontiguousarray(samples).tobytes())
    digest.update(str(sample_rate).encode())
    return Audio(samples=np.ascontiguousarray(samples), sample_rate=sample_rate, content_hash=digest.hexdigest())


def _mono(data: np.ndarray) -> np.ndarray:
    """Mean of the channels of (frames, channels) data. Summed column by column: numpy's
    mean over a short inner axis is ten times slower, and long songs are millions of frames."""
    if data.shape[1] == 1:
        return data[:, 0]
    mono = data[:, 0].copy()
    for channel in range(1, data.shape[1]):
        mono += data[:, channel]
    mono /= np.float32(data.shape[1])
    return mono


def resample(samples: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr 'HQ', as librosa.load does by default), float32 out."""
    if orig_sr == target_sr:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def _reason(error: Exception) -> str:
    # libsndfile's message names the (temporary) file; keep only what it says of the content.
    detail = str(error).strip().rsplit(": ", 1)[-1].rstrip(".") or type(error).__name__
    # For bytes it cannot even frame, libsndfile says the *file* does not exist: not helpful.
    return "unrecognised or damaged data" if "does not exist" in detail else detail
