"""One-track prediction latency (decode, features, network), median after warm-up:
a 30 s clip, and a 4 minute 44.1 kHz stereo mp3 that this script makes.

    python benchmarks/bench_predict.py [--repeats 9]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_GTZAN, make_song, median_seconds, verdict  # noqa: E402
from model.network.classifier import GenreClassifier  # noqa: E402
from model.predict import predict_file  # noqa: E402

TARGETS_MS = {"30 s clip": 150.0, "4 min 44.1 kHz stereo mp3": 600.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    classifier = GenreClassifier.load(alone=True)   # as python -m model.predict does
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
