"""Playable copies of audio that browsers do not play (AIFF, AU, CAF, W64, WMA, Matroska, ...).

Decoding such a file on every request of its player cost memory and time without bound (issue 20:
a 1 MB CAF of 19.5 min took 1.7 GB per GET, a FLAC-in-Matroska more than 5 GB per HEAD). A copy is
written once instead, block by block, and then served from disk like any other file (Range requests,
HEAD without decoding): 16-bit mono WAV at `PLAYBACK_RATE`, of at most `max_s` seconds and at most
`max_source_samples` decoded samples of the source (all channels counted), so a file of many channels
at a high rate is copied for less time. Memory is one block; time is bounded by the samples decoded.

A library file's copy is named for the file as it is (`library_copy_name`), and `prune_copies` removes, at
the service's start, the copies of files its store no longer holds as they were (removed or changed by a
rescan, or another library served from the same upload folder): the copies never outnumber the library's
files browsers do not play.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf
import soxr

from model.atomic import atomic_write
from model.audio.av_decode import AvFile
from model.audio.decoding import AudioError
from model.params import MAX_CHANNELS, MAX_DURATION_S, MAX_SOURCE_RATE, MIN_SOURCE_RATE

# What browsers play as it is: extension -> media type. Any other file is played from its copy.
BROWSER_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
                 ".opus": "audio/ogg", ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".mp4": "audio/mp4",
                 ".aac": "audio/aac", ".webm": "audio/webm"}
PLAYBACK_RATE = 22050     # Hz: the copies' rate (11 kHz of bandwidth: enough to hear the song)
COPY_SUFFIX = ".play.wav"
BLOCK_FRAMES = 1 << 14    # source frames per block: at most 4 MB of float32 at MAX_CHANNELS


@dataclass(frozen=True)
class PlaybackLimits:
    max_s: float = MAX_DURATION_S                     # seconds of a copy: the longest audio analysed
    max_source_samples: int = MAX_DURATION_S * 48000 * 2   # 20 minutes of 48 kHz stereo

    @property
    def max_copy_bytes(self) -> int:
        """The largest copy, header aside."""
        return int(self.max_s * PLAYBACK_RATE) * 2


def browser_plays(path: Path) -> bool:
    return path.suffix.lower() in BROWSER_TYPES


def library_copy_name(source: Path) -> str:
    """The name of a library file's copy: it changes with the file (path, size, modification time), so that
    an edited file gets a new copy. Raises OSError where the file cannot be read."""
    stat = source.stat()
    key = hashlib.sha256(f"{source}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    return f"{key}{COPY_SUFFIX}"


def prune_copies(folder: Path, sources: Iterable[Path]) -> int:
    """Remove the copies in `folder` that are not of one of `sources` as it is now (its file gone, changed,
    or no longer in the library); returns how many. Half-written copies are `remove_leftovers`' job."""
    copies = list(folder.glob(f"*{COPY_SUFFIX}"))
    if not copies:
        return 0   # the usual case: the library's files are not stat'ed
    wanted = set()
    for source in sources:
        if not browser_plays(source):
            try:
                wanted.add(library_copy_name(source))
            except OSError:   # gone: its copy goes too
                continue
    stale = [copy for copy in copies if copy.name not in wanted]
    for copy in stale:
        copy.unlink(missing_ok=True)
    return len(stale)


def write_copy(source: Path, target: Path, limits: PlaybackLimits = PlaybackLimits()) -> float:
    """Write a playable copy of `source` to `target` (atomically); returns the seconds it holds.
    Raises AudioError where the file does not decode or its header is absurd."""
    with _open(source) as f:
        rate, channels = f.samplerate, f.channels
        if not (MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE and 1 <= channels <= MAX_CHANNELS):
            raise AudioError(f"a rate of {rate} Hz and {channels} channels cannot be played back")
        frames_left = int(min(limits.max_s * rate, limits.max_source_samples // channels))
        resampler = soxr.ResampleStream(rate, PLAYBACK_RATE, 1, dtype="float32", quality="HQ")
        buffer = np.empty((BLOCK_FRAMES, channels), np.float32)
        written = 0
        with atomic_write(target) as raw, sf.SoundFile(raw, "w", PLAYBACK_RATE, 1, format="WAV",
                                                       subtype="PCM_16") as out:
            while frames_left > 0:
                frames = _read(f, buffer[:min(BLOCK_FRAMES, frames_left)])
                if frames == 0:
                    break
                frames_left -= frames
                mono = np.nan_to_num(buffer[:frames].mean(axis=1), nan=0.0, posinf=0.0, neginf=0.0)
                block = np.clip(resampler.resample_chunk(mono), -1.0, 1.0)
                out.write(block)
                written += len(block)
            tail = np.clip(resampler.resample_chunk(np.zeros(0, np.float32), last=True), -1.0, 1.0)
            out.write(tail)
            written += len(tail)
    return written / PLAYBACK_RATE


def _open(source: Path) -> sf.SoundFile | AvFile:
    try:
        return sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return AvFile(source)   # m4a/AAC, WMA, Matroska: raises AvError (an AudioError) where FFmpeg fails too


def _read(f: sf.SoundFile | AvFile, buffer: np.ndarray) -> int:
    """Frames read into `buffer`; 0 at the end of the stream or where it breaks off (a cut file is
    played as far as it decodes)."""
    if isinstance(f, AvFile):
        return f.read_into(buffer)[0]
    try:
        return f.read(len(buffer), dtype="float32", always_2d=True, out=buffer).shape[0]
    except (sf.LibsndfileError, RuntimeError):
        return 0
