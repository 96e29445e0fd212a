"""Held-out figures of a genre classifier: accuracy, balanced accuracy, per-genre recall, the
confusion matrix and the calibration of its probabilities, per duration group.

Balanced accuracy (the mean of per-genre recalls) is the headline: GTZAN's development set holds
more blues, jazz and classical clips, which are also the easy ones, so plain accuracy flatters.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from model.params import GENRES

# Duration groups reported apart (model.train): whole clips, and the short excerpts a 2-3 s upload resembles.
LONG_S = 10.0
SHORT_S = (2.0, 3.0)
ECE_BINS = 15


def confusion(truth: np.ndarray, predicted: np.ndarray, n: int = len(GENRES)) -> np.ndarray:
    matrix = np.zeros((n, n), dtype=int)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of the top-label confidence: the mean |accuracy - confidence| over equal-width confidence
    bins, weighted by how many predictions fall in each."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(np.mean(predicted[members] == truth[members]) - confidence[members].mean())
    return float(error)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T) (Guo et al.,
    2017): one number, so the ranking of genres, and the accuracy, are unchanged."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        p = softmax(logits, np.exp(log_t))[np.arange(len(truth)), truth]
        return float(-np.mean(np.log(np.maximum(p, 1e-12))))

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def fit_temperatures(logits: np.ndarray, truth: np.ndarray, one_patch: np.ndarray) -> tuple[float, float]:
    """`fit_temperature` of the clips of several patches, and of the clips of one patch (shorter than
    two patches, ~6 s; a 2-3 s clip is looped to fill it): the head is more over-confident on those,
    so one temperature cannot serve both. A kind absent from the clips takes the other's."""
    several, one = (fit_temperature(logits[m], truth[m]) if m.any() else None for m in (~one_patch, one_patch))
    several = several if several is not None else one
    return several, (one if one is not None else several)


def group_report(truth: np.ndarray, probs: np.ndarray) -> dict:
    """Figures of one group of held-out clips; genres without clips in it have no recall."""
    predicted = probs.argmax(axis=1)
    matrix = confusion(truth, predicted)
    present = matrix.sum(axis=1) > 0
    recall = {g: float(matrix[i, i] / matrix[i].sum()) for i, g in enumerate(GENRES) if present[i]}
    return {
        "tracks": int(len(truth)),
        "accuracy": float(np.mean(predicted == truth)),
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        "per_genre_recall": recall,
        "per_genre_count": {g: int(matrix[i].sum()) for i, g in enumerate(GENRES) if present[i]},
        "ece": expected_calibration_error(probs, truth),
        "confusion": matrix.tolist(),
    }


def unsure_threshold(probs: np.ndarray, truth: np.ndarray, grid: np.ndarray = np.arange(0.20, 0.951, 0.05)) -> dict:
    """The "unsure" threshold on calibrated held-out probabilities: the lowest top probability on `grid`
    from which the answers were right at least half the time, by an isotonic (monotone) fit of being
    right on the top probability; below it an answer is more likely wrong than right. With the share
    of clips below it and the accuracy on each side."""
    from sklearn.isotonic import IsotonicRegression

    confidence, right = probs.max(axis=1), (probs.argmax(axis=1) == truth).astype(float)
    fitted = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(confidence, right).predict(grid)
    chosen = float(grid[np.argmax(fitted >= 0.5)]) if (fitted >= 0.5).any() else float(grid[-1])
    below = confidence < chosen
    return {"threshold": round(chosen, 2), "flagged": float(below.mean()),
            "accuracy_below": float(right[below].mean()) if below.any() else float("nan"),
            "accuracy_above": float(right[~below].mean()) if (~below).any() else float("nan")}


def format_report(result: dict) -> str:
    lines = []
    for name, r in result.items():
        lines.append(f"{name}: {r['tracks']} clips, balanced accuracy {r['balanced_accuracy']:.3f}, "
                     f"accuracy {r['accuracy']:.3f}, ECE {r['ece']:.3f}")
        counts = r.get("per_genre_count", {})
        lines.append("  recall: " + ", ".join(
            f"{g} {a:.2f}" + (f" ({round(a * counts[g])}/{counts[g]})" if g in counts else "")
            for g, a in r["per_genre_recall"].items()))
        lines.append("  confusion (rows: truth, columns: predicted)")
        lines.append("  " + " " * 10 + " ".join(f"{g[:5]:>5}" for g in GENRES))
        lines += [f"  {g:>9} " + " ".join(f"{v:5d}" for v in row) for g, row in zip(GENRES, r["confusion"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the figures the shipped head was measured with (cross-validated by artist, model.train)."""
    import argparse
    import json
    import sys

    from model.network.weights import HEAD_INFO_FILE
    from model.service.settings import from_env

    parser = argparse.ArgumentParser(description="The genre head's held-out figures, cross-validated by artist "
                                                 "(recomputed by python -m model.train --no-save)")
    parser.add_argument("--weights", type=Path, default=from_env().weights_dir)
    args = parser.parse_args(argv)
    path = args.weights / HEAD_INFO_FILE
    info = json.loads(path.read_text()) if path.exists() else {}
    if "held_out_by_artist" not in info:
        print(f"evaluate: {path} records no artist-grouped figures: train with python -m model.train", file=sys.stderr)
        return 2
    print(f"{path}: trained by {info['training']['command']}; held out by artist:")
    print(format_report(info["held_out_by_artist"]))
    before = info["held_out_ece_before_calibration"]
    print(f"temperature {info['temperature']:.3f} (a one-patch clip: "
          f"{info.get('temperature_one_patch', info['temperature']):.3f}); ECE before/after: "
          + ", ".join(f"{n} {before[n]:.3f}/{r['ece']:.3f}" for n, r in info["held_out_by_artist"].items()))
    print(f"unsure below a top probability of {info['unsure']['threshold']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
