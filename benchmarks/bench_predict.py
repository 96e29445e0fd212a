"""One-track prediction latency (decode, features, network), median after warm-up:
a 30 s clip, and a 4 minute 44.1 kHz stereo mp3 that this script makes.

    python benchmarks/bench_predict.py [--repeats 9]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_GTZAN, median_seconds, verdict  # noqa: E402
from model.network.classifier import GenreClassifier  # noqa: E402
from model.predict import predict_file  # noqa: E402

TARGETS_MS = {"30 s clip": 150.0, "4 min 44.1 kHz stereo mp3": 600.0}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    classifier = GenreClassifier.load()
    classifier.warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        clip = SHARED_GTZAN / "blues" / "blues.00012.flac"
        if not clip.exists():
            clip = make_song(Path(tmp) / "clip30.mp3", 30)
            print("shared clips absent: using a generated 30 s clip")
        files = {"30 s clip": clip, "4 min 44.1 kHz stereo mp3": make_song(Path(tmp) / "song.mp3", 240)}
        for name, path in files.items():
            median, times = median_seconds(lambda: predict_file(classifier, path), args.repeats)
            print(f"{name} ({path.name}): runs {', '.join(f'{1000 * t:.0f}' for t in times)} ms")
            print(verdict(f"prediction latency, {name}", 1000 * median, TARGETS_MS[name], "ms"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
