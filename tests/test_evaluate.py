"""Held-out figures: balanced accuracy, calibration error and the temperature that lowers it."""
import numpy as np

from model.evaluate import expected_calibration_error, fit_temperature, format_report, group_report, softmax, unsure_threshold
from model.params import GENRES


def test_balanced_accuracy_is_the_mean_recall_with_counts():
    truth = np.array([0, 0, 0, 0, 1, 1])
    probs = np.eye(len(GENRES))[[0, 0, 0, 0, 0, 1]]   # every blues right, one of two classical wrong
    result = group_report(truth, probs)
    assert abs(result["accuracy"] - 5 / 6) < 1e-9
    assert abs(result["balanced_accuracy"] - 0.75) < 1e-9
    assert result["per_genre_recall"] == {"blues": 1.0, "classical": 0.5}
    assert result["per_genre_count"] == {"blues": 4, "classical": 2}
    assert np.array(result["confusion"]).sum() == 6
    assert "blues 1.00 (4/4), classical 0.50 (1/2)" in format_report({"held out": result})


def test_the_unsure_threshold_is_where_answers_turn_more_often_wrong_than_right():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.1, 1.0, 4000)
    truth = np.zeros(4000, dtype=int)
    right = rng.uniform(size=4000) < confidence          # calibrated: right as often as it says
    probs = np.full((4000, len(GENRES)), 0.0)
    probs[:, 0] = np.where(right, confidence, 0.0)
    probs[:, 1] = np.where(right, 0.0, confidence)
    probs[:, 2:] = ((1 - confidence) / (len(GENRES) - 2))[:, None]
    chosen = unsure_threshold(probs, truth)
    # Calibrated, an answer of top probability p is right with probability p: wrong more often below 0.5.
    assert 0.45 <= chosen["threshold"] <= 0.55
    assert chosen["accuracy_below"] < 0.5 < chosen["accuracy_above"]
    assert abs(chosen["flagged"] - np.mean(confidence < chosen["threshold"])) < 1e-9


def test_temperature_calibrates_overconfident_logits():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, len(GENRES), 2000)
    # Informative logits, right about 60 % of the time, then made far too confident.
    logits = rng.normal(size=(2000, len(GENRES)))
    logits[np.arange(2000), truth] += 1.5
    overconfident = 5 * logits
    before = expected_calibration_error(softmax(overconfident), truth)
    t = fit_temperature(overconfident, truth)
    after = expected_calibration_error(softmax(overconfident, t), truth)
    assert t > 3 and before > 0.2 and after < 0.05
    assert np.array_equal(softmax(overconfident, t).argmax(axis=1), overconfident.argmax(axis=1))
