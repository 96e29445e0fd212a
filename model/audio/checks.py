"""What every decoder refuses, and how it says so: `AudioError`, and the check of a stream's header (rate,
channels, declared length) against `model.params`' limits before anything is decoded.

Both decoders import it: libsndfile's (`model.audio.decoding`) and PyAV's (`model.audio.av_decode`), so that
a file is refused with the same sentence whichever library reads it.
"""
from __future__ import annotations

from model.params import MAX_CHANNELS, MAX_SOURCE_RATE, MIN_SOURCE_RATE

# libsndfile's frame count for a stream whose length it does not know (SF_COUNT_MAX).
UNKNOWN_FRAMES = 2 ** 63 - 1


class AudioError(ValueError):
    """The input is not usable audio; `str(error)` is a message fit for the person who sent it."""


def check_header(rate: int, channels: int, declared: int, max_duration_s: float) -> None:
    """Refuse absurd headers before anything is read: resampling a 1 Hz header's samples to
    16 kHz alone would take gigabytes."""
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise AudioError(f"the file's sample rate is {rate} Hz; Soundalike reads "
                         f"{MIN_SOURCE_RATE} to {MAX_SOURCE_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"the file declares {channels} channels; Soundalike reads 1 to {MAX_CHANNELS}")
    if declared != UNKNOWN_FRAMES and declared / rate > max_duration_s:
        raise AudioError(f"the file declares {spoken(declared / rate)} of audio; "
                         f"Soundalike analyses at most {spoken(max_duration_s)}")


def spoken(seconds: float) -> str:
    """A duration as a message says it: "3.5 s", "20 minutes"."""
    return f"{seconds / 60:.0f} minutes" if seconds >= 120 else f"{seconds:.1f} s"
