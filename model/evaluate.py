"""Held-out figures of a genre classifier: accuracy, balanced accuracy, per-genre recall, the
confusion matrix and the calibration of its probabilities, per duration group.

Balanced accuracy (the mean of per-genre recalls) is the headline: GTZAN's development set holds
more blues, jazz and classical clips, which are also the easy ones, so plain accuracy flatters.
"""
from __future__ import annotations

import numpy as np

from model.params import GENRES

# Duration groups reported apart: whole clips, and the short excerpts a 2-3 s upload resembles.
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


def group_report(truth: np.ndarray, probs: np.ndarray) -> dict:
    """Figures of one group of held-out tracks; genres without tracks in it have no recall."""
    predicted = probs.argmax(axis=1)
    matrix = confusion(truth, predicted)
    present = matrix.sum(axis=1) > 0
    recall = {g: float(matrix[i, i] / matrix[i].sum()) for i, g in enumerate(GENRES) if present[i]}
    return {
        "tracks": int(len(truth)),
        "accuracy": float(np.mean(predicted == truth)),
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        "per_genre_recall": recall,
        "ece": expected_calibration_error(probs, truth),
        "confusion": matrix.tolist(),
    }


def report(truth: np.ndarray, probs: np.ndarray, durations: np.ndarray) -> dict:
    """Held-out figures for all tracks, for tracks of LONG_S or more, and for SHORT_S excerpts."""
    groups = {
        "all": np.ones(len(truth), dtype=bool),
        f"{LONG_S:g}s_or_longer": durations >= LONG_S,
        f"{SHORT_S[0]:g}-{SHORT_S[1]:g}s": (durations >= SHORT_S[0] - 0.05) & (durations <= SHORT_S[1] + 0.05),
    }
    return {name: group_report(truth[members], probs[members]) for name, members in groups.items() if members.any()}


def format_report(result: dict) -> str:
    lines = []
    for name, r in result.items():
        lines.append(f"{name}: {r['tracks']} tracks, balanced accuracy {r['balanced_accuracy']:.3f}, "
                     f"accuracy {r['accuracy']:.3f}, ECE {r['ece']:.3f}")
        lines.append("  recall: " + ", ".join(f"{g} {a:.2f}" for g, a in r["per_genre_recall"].items()))
        lines.append("  confusion (rows: truth, columns: predicted)")
        lines.append("  " + " " * 10 + " ".join(f"{g[:5]:>5}" for g in GENRES))
        lines += [f"  {g:>9} " + " ".join(f"{v:5d}" for v in row) for g, row in zip(GENRES, r["confusion"])]
    return "\n".join(lines)
