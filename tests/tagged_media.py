"""Tagged music files (MP3, FLAC, M4A) that PyAV encodes, and a generated library laid out as players
and taggers lay it out: Artist/Album/NN Title.ext, for the tests and benchmarks of own-music collections."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from conftest import tone

# extension -> (FFmpeg muxer, audio codec, sample rate)
CODECS = {".mp3": ("mp3", "libmp3lame", 44100), ".flac": ("flac", "flac", 44100), ".m4a": ("ipod", "aac", 44100)}


def write_tagged(path: Path, y: np.ndarray, rate: int, tags: dict[str, str]) -> Path:
    """Encode mono float32 samples `y` (at `rate`) to `path` in the format of its extension, with `tags`
    (FFmpeg's names: title, artist, album, track, date, genre)."""
    muxer, codec, _ = CODECS[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=muxer) as out:
        for key, value in tags.items():
            out.metadata[key] = value
        stream = out.add_stream(codec, rate=rate, layout="mono")
        if codec != "flac":
            stream.bit_rate = 128000
        if codec == "flac":
            stream.format = "s16"
        for start in range(0, len(y), 4608):
            block = np.ascontiguousarray(y[start:start + 4608], dtype=np.float32)
            samples = (block * 32767).astype(np.int16) if codec == "flac" else block
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16" if codec == "flac" else "fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def song(seconds: float, seed: int, rate: int = 44100) -> np.ndarray:
    return tone(seconds, rate, seed=seed)


def retag(source: Path, target: Path, tags: dict[str, str]) -> Path:
    """A copy of `source` with other tags: its audio packets copied as they are (no encoding)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as inp, av.open(str(target), "w", format=CODECS[target.suffix.lower()][0]) as out:
        for key, value in tags.items():
            out.metadata[key] = value
        stream = out.add_stream_from_template(inp.streams.audio[0])
        for packet in inp.demux(inp.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return target
