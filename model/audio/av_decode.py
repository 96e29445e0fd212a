"""Reading the audio that libsndfile cannot open, with PyAV (FFmpeg): m4a/AAC, WMA, and the audio
track of mp4, webm and mkv videos.

`AvFile` offers what `model.audio.decoding.decode` uses of a `soundfile.SoundFile` (samplerate, channels,
frames, format, extra_info, a context manager) and `read_into`, which fills a float32
(frames, channels) block at the source rate, so that these files go through the same block
pipeline as the others: the same limits, content hash and 16 kHz resampling.

Only the containers below are tried: FFmpeg probes hundreds of formats, and bytes that are not
audio (random data, a text file) would otherwise sometimes open as some raw stream and "decode".
The limits of `model.params` are checked on the stream's parameters before any packet is decoded
(by model.audio.checks, with the messages libsndfile's files get), and what is held is one decoded FFmpeg frame (a few
thousand samples) beyond the caller's block.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import av
import numpy as np

from model.audio.checks import UNKNOWN_FRAMES, AudioError, check_header
from model.params import MAX_DURATION_S

Source = Union[str, Path, bytes, bytearray, memoryview, BinaryIO]

# FFmpeg demuxer name -> the extension a kept file of it gets (audio only; with a video stream).
CONTAINERS = {
    "mov,mp4,m4a,3gp,3g2,mj2": (".m4a", ".mp4"),
    "asf": (".wma", ".wmv"),
    "matroska,webm": (".mka", ".mkv"),
    "aac": (".aac", ".aac"),
}
# Containers without an index, whose length FFmpeg estimates from the bit rate (a few % off):
# reported as unknown, so that decoding neither refuses them on it nor takes them for truncated.
ESTIMATED_LENGTH = {"aac"}
EXTENSIONS = {extension for pair in CONTAINERS.values() for extension in pair} | {".webm"}
# Matroska holding only these codecs is WebM, which browsers play.
WEBM_CODECS = {"opus", "vorbis", "vp8", "vp9", "av1"}


class AvError(AudioError):
    """Not audio that PyAV reads here (no such container, no audio stream); `str(error)` is a
    message fit for the person who sent the file."""


class AvFile:
    """The first audio stream of a container, read block by block as float32 at its own rate.

    Raises AvError when the data is not one of CONTAINERS with an audio stream, and AudioError (as
    model.audio.decoding.decode does) when the stream's rate, channels or declared duration are beyond
    model.params' limits."""

    def __init__(self, source: Source, check_limits: bool = True) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(source)
        elif isinstance(source, Path):
            source = str(source)
        elif not isinstance(source, str):
            source.seek(0)   # libsndfile may have read part of it already
        try:
            self._container = av.open(source, "r")
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as error:
            raise AvError("not an audio or video file that Soundalike reads") from error
        try:
            self._start(check_limits)
        except BaseException:
            self._container.close()
            raise

    def _start(self, check_limits: bool) -> None:
        name = self._container.format.name
        if name not in CONTAINERS:
            raise AvError(f"not an audio or video file that Soundalike reads (a {name} file)")
        audio = self._container.streams.audio
        if not audio:
            raise AvError("the file holds no audio track")
        self._stream = stream = audio[0]
        self.has_video = bool(self._container.streams.video)
        self.samplerate = stream.codec_context.sample_rate or stream.rate or 0
        self.channels = stream.codec_context.channels
        self.frames = self._declared_frames()
        self.format = name.split(",")[0].upper()
        codecs = {s.codec_context.name for s in self._container.streams if s.type in ("audio", "video")}
        self.extension = ".webm" if name == "matroska,webm" and codecs <= WEBM_CODECS else CONTAINERS[name][self.has_video]
        if check_limits:   # before any packet is decoded: a 1 Hz or 1000-channel header makes every block huge
            check_header(self.samplerate, self.channels, self.frames, MAX_DURATION_S)
        self.extra_info = ""   # what libsndfile logs; model.audio.decoding.decode reads it
        # Packed float32 at the stream's own rate and channel count, whatever the codec gives
        # (planar or packed, int or float; a rate that changes mid-stream is brought back to this one).
        self._resampler = av.AudioResampler(format="flt", layout=stream.codec_context.layout, rate=self.samplerate)
        self._frames = self._decoded()
        self._pending = np.zeros((0, self.channels), np.float32)

    def _declared_frames(self) -> int:
        stream, container = self._stream, self._container
        if container.format.name in ESTIMATED_LENGTH:
            return UNKNOWN_FRAMES
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        else:
            return UNKNOWN_FRAMES
        return max(0, round(seconds * self.samplerate)) or UNKNOWN_FRAMES

    def _decoded(self) -> Iterator[np.ndarray]:
        """The stream's samples as (frames, channels) float32 arrays, one FFmpeg frame at a time.
        Only the audio stream's packets are demuxed: a video track is skipped undecoded."""
        for packet in self._container.demux(self._stream):
            for frame in self._stream.decode(packet):   # decode(packet) of an empty packet flushes
                for converted in self._resampler.resample(frame):
                    yield converted.to_ndarray().reshape(-1, self.channels)
        for converted in self._resampler.resample(None):
            yield converted.to_ndarray().reshape(-1, self.channels)

    def read_into(self, buffer: np.ndarray) -> tuple[int, str]:
        """Fill `buffer` (frames x channels, float32): the frames written, and why decoding stopped
        part-way ("" at the end of the stream or while there is more)."""
        filled = 0
        while filled < len(buffer):
            if not len(self._pending):
                try:
                    self._pending = next(self._frames)
                except StopIteration:
                    break
                except (av.FFmpegError, ValueError) as error:
                    return filled, _reason(error)
            n = min(len(buffer) - filled, len(self._pending))
            buffer[filled:filled + n] = self._pending[:n]
            self._pending = self._pending[n:]
            filled += n
        return filled, ""

    def blocks(self, block_frames: int = 1 << 16) -> Iterator[np.ndarray]:
        """The stream block by block (each a fresh array), to its end or to where it breaks off."""
        while True:
            buffer = np.empty((block_frames, self.channels), np.float32)
            frames, error = self.read_into(buffer)
            if frames:
                yield buffer[:frames]
            if error or frames < block_frames:
                return

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> AvFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def probe(source: Source) -> str | None:
    """The extension for a file PyAV reads audio from (".m4a", ".mp4", ".wma", ".webm", ".aac", ...),
    or None."""
    try:
        # Without the limits: a file with absurd parameters is audio, refused by decoding with its reason.
        with AvFile(source, check_limits=False) as f:
            return f.extension
    except AvError:
        return None


def _reason(error: Exception) -> str:
    # PyAV's messages are "[Errno N] what FFmpeg says: 'the file'"; keep what it says of the data.
    if isinstance(error, av.FFmpegError) and error.strerror:
        return error.strerror.rstrip(".")
    return str(error).rstrip(".") or type(error).__name__
