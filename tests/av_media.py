"""Audio and video files that PyAV encodes, for the tests of model.audio.av_decode: m4a/AAC, ADTS AAC, WMA,
WebM/Opus, and videos (mp4, webm, mkv) with an audio track."""
from __future__ import annotations

import io

import av
import numpy as np

from conftest import tone

# name -> (FFmpeg muxer, audio codec, video codec or None, sample rate)
KINDS = {
    "m4a": ("ipod", "aac", None, 44100),
    "aac": ("adts", "aac", None, 44100),
    "wma": ("asf", "wmav2", None, 44100),
    "webm": ("webm", "libopus", None, 48000),
    "mp4": ("mp4", "aac", "mpeg4", 44100),
    "webm-video": ("webm", "libopus", "libvpx", 48000),
    "mkv": ("matroska", "aac", "mpeg4", 22050),
}


def encoded(kind: str, seconds: float = 3.0, channels: int = 2, seed: int = 0) -> tuple[bytes, np.ndarray, int]:
    """(file bytes, the float32 (frames, channels) samples encoded, sample rate)."""
    muxer, codec, video, rate = KINDS[kind]
    y = tone(seconds, rate, seed=seed, channels=channels).reshape(-1, channels)
    layout = "stereo" if channels == 2 else "mono"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=muxer) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        stream.bit_rate = 128000
        if video:   # a few small frames first: the audio must be found and read past them
            picture = out.add_stream(video, rate=5)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
            for i in range(int(seconds * 5)):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i % 255, np.uint8), format="rgb24")
                for packet in picture.encode(frame):
                    out.mux(packet)
            for packet in picture.encode(None):
                out.mux(packet)
        for start in range(0, len(y), 4096):
            block = np.ascontiguousarray(y[start:start + 4096])
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="flt", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue(), y, rate
