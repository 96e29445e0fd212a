"""Decoding audio files into 16 kHz mono float32 samples, streamed block by block.

Hostile or damaged files must not take the service down (issue 6), so the header is checked before
anything is read (sample rate, channels, declared length: `model.params`), and the file is then read
in blocks of at most `BLOCK_SAMPLES` samples, each mixed to mono and resampled at once: what is held
is only the 16 kHz result, at most `MAX_DURATION_S` of it, whatever the file's rate and length.

An analysis reads only a few spans of a long song (its network patches, its middle excerpt): given
them (`spans`), `decode` seeks to each and decodes only there, where the file allows it.
"""
from __future__ import annotations

import hashlib
import io
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Sequence, Union

import numpy as np
import soundfile as sf
import soxr

from model.audio.checks import UNKNOWN_FRAMES, AudioError, check_header, spoken
from model.params import FULL_SCALE_HEADROOM, MAX_DURATION_S, MAX_FLOAT_PEAK, MIN_DURATION_S, SAMPLE_RATE

AudioSource = Union[str, Path, bytes, BinaryIO]
# [start, stop) ranges of 16 kHz samples
Spans = Sequence[tuple[int, int]]

# Formats libsndfile decodes without ffmpeg; the file's content decides, not its name.
SUPPORTED_EXTENSIONS = (".wav", ".au", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
# A peak below this (about -80 dBFS) is taken for silence.
SILENCE_PEAK = 1e-4
# Fewer decoded frames than declared by more than this fraction flags the audio as truncated
# (declared lengths of lossy streams are estimates).
MAX_MISSING_FRACTION = 0.02
# Samples (all channels together) read per block: 512 kB of float32 whatever the channel count, and
# enough that the per-block work in Python costs nothing next to decoding.
BLOCK_SAMPLES = 1 << 17
# 16 kHz samples allocated beyond a file's declared length: the resampler's rounding.
_OUTPUT_MARGIN = 64
# libsndfile's log line for a chunk that declares more bytes than the file holds, e.g.
# "data : 220500 (should be 110228)"; RIFF/FORM sizes are left out, writers often get them wrong.
_SHORT_CHUNK = re.compile(r"^\s*(data|SSND|Data Size|riff)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
# Chunk sizes that streaming writers put in a header before they know the length: not truncation.
_PLACEHOLDER_SIZES = (0, 0xFFFFFFFF)
_OGG_EOS = 0x04          # header_type flag of an Ogg stream's last page
_OGG_MAX_PAGE = 27 + 255 + 255 * 255   # bytes: header, segment table, body
_MP3_MAX_FRAME = 2048    # bytes: an MPEG audio frame is at most 1441 (320 kbit/s at 32 kHz)
# Decoded before and after each span and dropped: the resampler's filter needs samples on both sides,
# and libsndfile's MP3 decoder gives garbled samples for ~40 ms after a seek (its bit reservoir).
SPAN_MARGIN_S = 0.25
# Sample types that can hold any level: the level check needs all of such a file (see `decode`).
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray      # mono float32, at `sample_rate`
    sample_rate: int         # Hz; SAMPLE_RATE for everything `decode` returns
    content_hash: str        # sha256 of the source-rate mono samples: equal for a WAV and a FLAC of one recording
    source_rate: int = 0     # Hz, the file's own rate; 0: not decoded from a file
    truncated: bool = False  # the file stops before its declared end (or its stream breaks off); what decoded is here
    spans: tuple[tuple[int, int], ...] = ()   # only these [start, stop) of `samples` were decoded (the rest
                                              # is zeros, and content_hash is ""); () where all of it was

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def decode(source: AudioSource, min_duration_s: float = MIN_DURATION_S,
           max_duration_s: float = MAX_DURATION_S, spans: Callable[[int], Spans] | None = None) -> Audio:
    """Decode a file (path, bytes or binary file object) of any sample rate and channel count into
    16 kHz mono float32.

    Raises AudioError (its message says why) for undecodable, empty, silent, too short or too long
    input, an absurd header (rate, channels), non-finite samples or float samples far above full
    scale. A file that breaks off is decoded as far as it goes and flagged `truncated`.

    `spans` maps the whole audio's 16 kHz length to the [start, stop) ranges of it that will be read.
    Where they cover less than three quarters of it, and the file says exactly how long it is and can seek
    (WAV, FLAC, Ogg, MP3 with a Xing/Info header, ...), only they are decoded: see `Audio.spans`. The
    rest is read where a span does not decode whole (the file may be cut short), seems silent, or is
    louder than full scale allows (the level check needs all of it), and for float sample types.
    """
    if spans is not None:
        position = source.tell() if hasattr(source, "tell") else None
        partial = _decode_spans(source, spans, min_duration_s, max_duration_s)
        if partial is not None:
            return partial
        if position is not None:
            source.seek(position)
    ogg_truncated = _ogg_truncated(source)
    with _open(source) as f:
        rate, channels, declared, container = f.samplerate, f.channels, f.frames, f.format
        if container == "MP3" and not _mp3_length_is_exact(source):
            declared = UNKNOWN_FRAMES     # libsndfile's estimate: neither refused on, nor a sign of truncation
        check_header(rate, channels, declared, max_duration_s)
        header_short = _declares_more_than_it_holds(f.extra_info)
        max_frames = int(max_duration_s * rate)
        known = declared not in (0, UNKNOWN_FRAMES)
        stream = _Stream(rate, max_frames, expected_frames=min(declared if known else 60 * rate, max_frames))
        block_frames = max(1, BLOCK_SAMPLES // channels)
        broke_off = stream.read(f, block_frames)
    stream.finish()
    missing = known and stream.frames < declared * (1 - MAX_MISSING_FRACTION)
    truncated = broke_off or missing or header_short or (container == "OGG" and ogg_truncated)
    cut = " (the file is truncated)" if truncated else ""
    if stream.frames == 0:
        raise AudioError(f"the audio stream does not decode ({stream.error})" if broke_off else
                         f"the audio file is empty{cut}")
    duration = stream.frames / rate
    if duration < min_duration_s:
        raise AudioError(f"the audio is {duration:.2f} s long{cut}; at least {min_duration_s:g} s is needed")
    if stream.peak < SILENCE_PEAK:
        raise AudioError("the audio is silent")
    if stream.peak > MAX_FLOAT_PEAK:
        raise AudioError(f"the samples reach {stream.peak:.3g} times full scale: these are not audio levels")
    samples = stream.result()
    if stream.peak > FULL_SCALE_HEADROOM:
        # Float files may hold any level; scaled to a peak of full scale, as an integer export would be.
        samples *= np.float32(1 / stream.peak)
    return Audio(samples=samples, sample_rate=SAMPLE_RATE, content_hash=stream.content_hash(),
                 source_rate=rate, truncated=truncated)


def _decode_spans(source: AudioSource, spans: Callable[[int], Spans], min_duration_s: float,
                  max_duration_s: float) -> Audio | None:
    """`decode` of only the spans of the audio, or None where all of it must be read."""
    if _ogg_truncated(source):
        return None
    with _open(source) as f:
        rate, declared = f.samplerate, f.frames
        if not isinstance(f, sf.SoundFile) or not f.seekable() or f.subtype in _FLOAT_SUBTYPES \
                or declared in (0, UNKNOWN_FRAMES) or (f.format == "MP3" and not _mp3_length_is_exact(source)):
            return None
        check_header(rate, f.channels, declared, max_duration_s)
        if _declares_more_than_it_holds(f.extra_info) or declared / rate < min_duration_s:
            return None
        length = round(declared * SAMPLE_RATE / rate)   # what the whole file resamples to (soxr rounds so)
        wanted = _merged(spans(length), 0, length, 1)
        reads = _merged(wanted, round(SPAN_MARGIN_S * SAMPLE_RATE), length, _grid(rate))
        if 4 * sum(stop - start for start, stop in reads) >= 3 * length:
            return None
        samples = np.zeros(length, np.float32)   # its pages outside the spans are never touched: no memory
        peak = 0.0
        for start, stop in reads:
            first, last = start * rate // SAMPLE_RATE, min(declared, -(-stop * rate // SAMPLE_RATE))
            try:
                f.seek(first)
            except (sf.LibsndfileError, RuntimeError):   # a damaged or cut file: all of it is read instead
                return None
            stream = _Stream(rate, last - first, expected_frames=last - first)
            if stream.read(f, max(1, BLOCK_SAMPLES // f.channels), limit=last - first) or stream.frames < last - first:
                return None   # broke off or shorter than declared: the whole read says how
            stream.finish()
            block = stream.result()
            for a, b in wanted:   # the margins' samples are left out: near a read's edges they are not exact
                if start <= a and b <= stop:
                    samples[a:b] = block[a - start:b - start]
            peak = max(peak, stream.peak)
    if peak < SILENCE_PEAK or peak > FULL_SCALE_HEADROOM:
        return None
    return Audio(samples=samples, sample_rate=SAMPLE_RATE, content_hash="", source_rate=rate,
                 spans=tuple(wanted))


def _grid(rate: int) -> int:
    """The step, in 16 kHz samples, at which the 16 kHz and the source rate's samples coincide: a span
    resampled from there lies on the grid of the whole file's resampling."""
    return SAMPLE_RATE // math.gcd(rate, SAMPLE_RATE)


def _merged(spans: Spans, margin: int, length: int, grid: int) -> list[tuple[int, int]]:
    """The spans, widened by `margin` (their start down to a multiple of `grid`), clipped to [0,
    length) and merged where they overlap."""
    merged: list[list[int]] = []
    for start, stop in sorted(spans):
        start, stop = max(0, start - margin) // grid * grid, min(length, stop + margin)
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return [(int(start), int(stop)) for start, stop in merged]


class ByteStream(io.BytesIO):
    """BytesIO that answers a seek before the start as a file does, without raising: libsndfile asks
    that of some damaged headers, and an exception in soundfile's callback is printed as a traceback."""

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET and offset < 0:
            return self.tell()
        return super().seek(offset, whence)


def _open(source: AudioSource) -> sf.SoundFile:
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = ByteStream(source)
    try:
        return sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        # m4a/AAC, WMA, the audio of a video: FFmpeg's (model.audio.av_decode), read through the same blocks.
        from model.audio.av_decode import AvError, AvFile   # PyAV loads only for what libsndfile cannot open
        try:
            return AvFile(source)
        except AvError:
            raise AudioError(f"not a decodable audio file ({_reason(error)})") from error


class _Stream:
    """Reads SoundFiles block by block into 16 kHz mono, hashing the source-rate mono samples."""

    def __init__(self, rate: int, max_frames: int, expected_frames: int) -> None:
        self.rate, self.max_frames = rate, max_frames
        self.frames = 0           # source-rate frames decoded
        self.peak = 0.0           # of the source-rate mono samples
        self.error = ""           # why libsndfile last failed
        self._digest = hashlib.sha256()
        self._resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(
            rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")   # as `resample` does one-shot
        # The 16 kHz output, allocated once for the expected length (joining blocks at the end would
        # hold the song twice), grown if the file holds more than it said.
        self._output = np.empty(int(expected_frames * SAMPLE_RATE / rate) + _OUTPUT_MARGIN, np.float32)
        self._size = 0

    def read(self, f: sf.SoundFile, block_frames: int, limit: int | None = None) -> bool:
        """Read `f` to its end, or `limit` frames of it; True when libsndfile failed part-way (the
        stream broke off).

        Each block is mixed, checked, hashed and resampled on a second thread while the next one is
        decoded (both release the GIL for most of their work): a 4-minute MP3 in 164 ms instead of 222."""
        # Two buffers: a block is decoded into one while the other's block is being added.
        buffers = [np.empty((block_frames, f.channels), np.float32) for _ in range(2)]
        read, blocks = 0, 0
        with ThreadPoolExecutor(1, thread_name_prefix="decode") as worker:
            added = None   # the previous block being added
            while limit is None or read < limit:
                buffer = buffers[blocks % 2]
                blocks += 1
                frames, self.error = _read_block(f, buffer[:block_frames if limit is None else
                                                           min(block_frames, limit - read)])
                if added is not None:
                    added.result()   # its AudioError (invalid samples, too long) ends the read
                added = worker.submit(self._add, buffer[:frames]) if frames else None
                read += frames
                if self.error or frames == 0:
                    break
            if added is not None:
                added.result()
        return bool(self.error)

    def _add(self, block: np.ndarray) -> None:
        """Add a (frames, channels) block: mixed to mono, checked, hashed, resampled."""
        mono = _mono(block)
        peak = float(np.max(np.abs(mono)))    # NaN if any sample is NaN
        if not np.isfinite(peak):
            raise AudioError("the audio holds invalid (non-finite) samples")
        self.frames += len(mono)
        if self.frames > self.max_frames:
            raise AudioError(f"the audio is longer than {spoken(self.max_frames / self.rate)}, "
                             "the longest Soundalike analyses")
        self.peak = max(self.peak, peak)
        self._digest.update(np.ascontiguousarray(mono))
        self._append(mono if self._resampler is None else self._resampler.resample_chunk(mono))

    def _append(self, samples: np.ndarray) -> None:
        end = self._size + len(samples)
        if end > len(self._output):
            grown = np.empty(max(end, int(len(self._output) * 1.5)), np.float32)
            grown[:self._size] = self._output[:self._size]
            self._output = grown
        self._output[self._size:end] = samples
        self._size = end

    def finish(self) -> None:
        """Flush the resampler's last samples, once everything is read."""
        if self._resampler is not None:
            self._append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))

    def result(self) -> np.ndarray:
        """The 16 kHz mono samples, float32."""
        samples = self._output[:self._size]
        # A copy where the file said it was much longer than it is, so the rest is not kept alive.
        return samples.copy() if self._size < len(self._output) // 2 else samples

    def content_hash(self) -> str:
        # As decode has always computed it (stores hold these): the source-rate mono float32 bytes, then the rate.
        digest = self._digest.copy()
        digest.update(str(self.rate).encode())
        return digest.hexdigest()


def _read_block(f: sf.SoundFile, buffer: np.ndarray) -> tuple[int, str]:
    """Fill `buffer` (frames x channels, float32) from `f`: the frames read, and libsndfile's error
    ("" for none).

    libsndfile's own sf_readf_float, not SoundFile.read, which seeks to where it has read after every
    call: a seek resets libsndfile's MP3 decoder (a thousand garbled samples after each block) and
    slows FLAC down; and it raises when a stream breaks off, losing the frames that call did decode.
    """
    if not isinstance(f, sf.SoundFile):   # a model.audio.av_decode.AvFile
        return f.read_into(buffer)
    frames = sf._snd.sf_readf_float(f._file, sf._ffi.from_buffer("float[]", buffer), len(buffer))
    code = sf._snd.sf_error(f._file)
    return frames, sf.LibsndfileError(code).error_string.removeprefix("Error : ").rstrip(".") if code else ""


def _declares_more_than_it_holds(log: str) -> bool:
    """Whether libsndfile's log says the data chunk is larger than what the file holds (a cut WAV,
    AIFF, AU or W64: libsndfile then reads what is there without complaint)."""
    return any(int(declared) > int(actual) and int(declared) not in _PLACEHOLDER_SIZES
               for _, declared, actual in _SHORT_CHUNK.findall(log))


def _ogg_truncated(source: AudioSource) -> bool:
    """Whether an Ogg file stops before its end-of-stream page (libsndfile reads a cut Ogg
    Vorbis or Opus file to its last whole page without complaint). False for other data."""
    tail = _peek(source, -_OGG_MAX_PAGE, _OGG_MAX_PAGE)
    start = tail.rfind(b"OggS")
    if start < 0:
        return False
    header = tail[start:start + 27]
    if len(header) < 27:
        return True
    segments = tail[start + 27:start + 27 + header[26]]
    if len(segments) < header[26]:
        return True
    end = start + 27 + header[26] + sum(segments)
    return end > len(tail) or not header[5] & _OGG_EOS


def _mp3_length_is_exact(source: AudioSource) -> bool:
    """Whether an MP3's first frame holds a Xing, Info or VBRI header, which gives libsndfile its
    exact length. Without one, libsndfile estimates the length from the file's size and the first
    frame's bitrate: a VBR file that starts quietly is then "declared" several times too long."""
    head = _peek(source, 0, 10)
    start = 0
    if head[:3] == b"ID3" and len(head) == 10:   # an ID3v2 tag first: its size is 4 x 7 bits
        start = 10 + sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:10]))
    first_frame = _peek(source, start, _MP3_MAX_FRAME)
    return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))


def _peek(source: AudioSource, offset: int, n_bytes: int) -> bytes:
    """`n_bytes` of a source from `offset` (from its end if negative), leaving a file object's
    position where it was."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        start = max(0, len(source) + offset) if offset < 0 else offset
        return bytes(source[start:start + n_bytes])
    if isinstance(source, (str, Path)):
        try:
            with open(source, "rb") as file:
                return _read_at(file, offset, n_bytes)
        except OSError:
            return b""   # SoundFile will say what is wrong with the path
    position = source.tell()
    try:
        return _read_at(source, offset, n_bytes)
    finally:
        source.seek(position)


def _read_at(file: BinaryIO, offset: int, n_bytes: int) -> bytes:
    file.seek(max(0, file.seek(0, io.SEEK_END) + offset) if offset < 0 else offset)
    return file.read(n_bytes)


def _mono(data: np.ndarray) -> np.ndarray:
    """Mean of the channels of (frames, channels) data. Summed column by column: numpy's
    mean over a short inner axis is ten times slower."""
    if data.shape[1] == 1:
        return data[:, 0]
    mono = data[:, 0].copy()
    for channel in range(1, data.shape[1]):
        mono += data[:, channel]
    mono /= np.float32(data.shape[1])
    return mono


def resample(samples: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr 'HQ', as librosa.load does by default), float32 out; a no-op
    for `decode`'s output, which is already at SAMPLE_RATE."""
    if orig_sr == target_sr:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def _reason(error: Exception) -> str:
    # libsndfile's message names the (temporary) file; keep only what it says of the content.
    detail = str(error).strip().rsplit(": ", 1)[-1].rstrip(".") or type(error).__name__
    # For bytes it cannot even frame, libsndfile says the *file* does not exist: not helpful.
    return "unrecognised or damaged data" if "does not exist" in detail else detail
