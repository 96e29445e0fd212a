"""The genre head's fit: plain softmax regression for one label, "any of these" for a set of candidates."""
import numpy as np

from model.evaluate import softmax
from model.head_fit import ABSENT_BIAS, fit_set_softmax, set_loss
from model.params import GENRES


def test_one_label_per_clip_is_scikit_learns_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) * [1, 10, 0.1, 1, 3] + [0, 5, 0, -2, 0]
    labels = np.where(x[:, 0] > 0.5, 3, np.where(x[:, 1] > 5, 7, 1))
    scaled = StandardScaler().fit(x).transform(x)
    expected = LogisticRegression(C=0.5, max_iter=5000, tol=1e-8).fit(scaled, labels).predict_proba(scaled)
    kernel, bias = fit_set_softmax(x, np.eye(len(GENRES), dtype=bool)[labels], np.ones(len(x)), 0.5)
    probs = softmax(x @ kernel + bias)
    np.testing.assert_allclose(probs[:, [1, 3, 7]], expected, atol=2e-4)
    assert probs[:, [0, 2, 4, 5, 6, 8, 9]].max() < 1e-6 and bias[0] == ABSENT_BIAS


def test_the_set_loss_is_minus_the_log_of_the_candidates_summed_probability_and_its_gradient_is_exact():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, len(GENRES)))
    mask = rng.uniform(size=logits.shape) < 0.3
    mask[np.arange(6), rng.integers(0, len(GENRES), 6)] = True
    weight = rng.uniform(0.5, 2, 6)
    loss, grad = set_loss(logits, mask, weight)
    assert np.isclose(loss, -np.sum(weight * np.log((softmax(logits) * mask).sum(axis=1))))
    step = 1e-6
    for i, j in [(0, 0), (2, 5), (5, 9)]:
        moved = logits.copy()
        moved[i, j] += step
        assert np.isclose((set_loss(moved, mask, weight)[0] - loss) / step, grad[i, j], atol=1e-4)


def test_a_set_label_is_learned_as_any_of_its_candidates():
    # Genre 0 on the left, genre 1 on the right, and clips that may be 1 or 2 on the right too: the head
    # should call them 1 (what the labelled clips there teach), not split them, and never call them 0.
    rng = np.random.default_rng(2)
    left, right, sets = rng.normal(-2, 1, (50, 2)), rng.normal(2, 1, (50, 2)), rng.normal(2, 1, (50, 2))
    x = np.vstack([left, right, sets])
    mask = np.zeros((150, len(GENRES)), dtype=bool)
    mask[:50, 0] = mask[50:100, 1] = True
    mask[100:, [1, 2]] = True
    kernel, bias = fit_set_softmax(x, mask, np.ones(150), 1.0)
    probs = softmax(sets @ kernel + bias)
    assert np.mean(probs.argmax(axis=1) == 1) > 0.9 and probs[:, 0].mean() < 0.05
    assert np.median(probs[:, 1:3].sum(axis=1)) > 0.95
    # A set clip whose candidates already hold all the probability costs (almost) nothing.
    assert set_loss(np.array([[0.0, 30.0, 30.0] + [0.0] * 7]), mask[[100]], np.ones(1))[0] < 1e-9
