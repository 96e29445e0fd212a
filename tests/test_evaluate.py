"""Held-out figures: balanced accuracy, calibration error and the temperature that lowers it."""
import numpy as np

from model.evaluate import expected_calibration_error, fit_temperature, report, softmax
from model.params import GENRES


def test_balanced_accuracy_is_the_mean_recall_and_groups_are_by_duration():
    truth = np.array([0, 0, 0, 0, 1, 1])
    probs = np.eye(len(GENRES))[[0, 0, 0, 0, 0, 1]]   # every blues right, one of two classical wrong
    result = report(truth, probs, np.array([30.0, 30.0, 30.0, 2.5, 2.5, 30.0]))
    assert abs(result["all"]["accuracy"] - 5 / 6) < 1e-9
    assert abs(result["all"]["balanced_accuracy"] - 0.75) < 1e-9
    assert result["10s_or_longer"]["tracks"] == 4 and result["2-3s"]["tracks"] == 2
    assert result["2-3s"]["per_genre_recall"] == {"blues": 1.0, "classical": 0.0}
    assert np.array(result["all"]["confusion"]).sum() == 6


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
