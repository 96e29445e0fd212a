"""Print the genre prediction of audio files as JSON.

    python -m model.predict FILE [FILE ...] [--weights DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from model.audio.decoding import Audio, AudioError, AudioSource, decode, resample
from model.audio.features import patch_spans
from model.network.classifier import GenreClassifier, WeightsError
from model.service.settings import from_env


@dataclass(frozen=True)
class Prediction:
    genre: str
    probabilities: dict[str, float]   # every genre, summing to 1
    duration_s: float
    unsure_reason: str | None = None   # why the answer is unsure (GenreClassifier.unsure), or None

    def to_json(self) -> dict:
        return {"genre": self.genre, "probabilities": self.probabilities, "duration_s": round(self.duration_s, 3),
                "unsure": self.unsure_reason is not None, "unsure_reason": self.unsure_reason}


def predict_audio(classifier: GenreClassifier, audio: Audio) -> Prediction:
    probs, _ = classifier.analyse(resample(audio.samples, audio.sample_rate))
    probabilities = {g: float(p) for g, p in zip(classifier.genres, probs)}
    return Prediction(max(probabilities, key=probabilities.get), probabilities, audio.duration_s,
                      classifier.unsure(probs, audio.duration_s))


def predict_file(classifier: GenreClassifier, source: AudioSource) -> Prediction:
    # Only the patches the network reads are decoded (all of a short or unseekable file).
    return predict_audio(classifier, decode(source, spans=patch_spans))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--weights", type=Path, default=from_env().weights_dir,
                        help="weights folder (default: $SOUNDALIKE_WEIGHTS_DIR, else weights/)")
    args = parser.parse_args(argv)
    try:
        classifier = GenreClassifier.load(args.weights, alone=True)
    except WeightsError as error:
        print(f"predict: {error}", file=sys.stderr)
        return 2
    status = 0
    for path in args.files:
        try:
            if not path.is_file():
                raise FileNotFoundError("no such file")
            result = {"file": str(path), **predict_file(classifier, path).to_json()}
        except (AudioError, OSError) as error:
            result, status = {"file": str(path), "error": str(error)}, 1
        print(json.dumps(result))
    return status


if __name__ == "__main__":
    sys.exit(main())
