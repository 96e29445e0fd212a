"""Fine-tuning the back-end with the head: exact gradients, a start at the linear head's optimum, early
stopping on held-out clips, and the same answer every run."""
import numpy as np

from model.backend_fit import Backend, BackendRecipe, _gradients, early_stopped_epochs, fine_tune, join, rows_of
from model.head_fit import fit_set_softmax


def problem(seed=0, n=60, dim=12, hidden=6, genres=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, genres, n)
    centres = rng.normal(size=(genres, dim))
    clips = [(centres[g] + rng.normal(size=(rng.integers(1, 4), dim))).astype(np.float32) for g in labels]
    masks = np.eye(genres, dtype=bool)[labels]
    init = Backend((rng.normal(size=(dim, hidden)) / np.sqrt(dim)).astype(np.float32),
                   np.full(hidden, 0.1, np.float32), None, None)
    return clips, masks, np.ones(n), init


def test_gradients_are_those_of_the_objective():
    clips, masks, weight, init = problem()
    x, spans = rows_of(clips)
    x = x.astype(np.float64)
    rng = np.random.default_rng(1)
    params = [init.kernel.astype(np.float64) + 0.1, init.bias.astype(np.float64),
              rng.normal(size=(6, 3)), rng.normal(size=3)]
    recipe = BackendRecipe(l2sp=0.3, dropout=0.0, input_dropout=0.0)
    penalty = np.full((6, 1), 0.2)

    def objective(p):
        from model.head_fit import set_loss
        hidden = np.maximum(x @ p[0] + p[1], 0)
        clip = np.stack([hidden[a:b].mean(axis=0) for a, b in spans])
        loss, _ = set_loss(clip @ p[2] + p[3], masks, weight)
        return (loss / len(spans) + 0.5 * np.sum(penalty * p[2] ** 2)
                + 0.5 * recipe.l2sp * (np.sum((p[0] - init.kernel) ** 2) + np.sum((p[1] - init.bias) ** 2)))

    grads = _gradients(params, x, spans, (spans[:, 1] - spans[:, 0]).astype(np.float64), masks, weight,
                       init.kernel, init.bias, penalty, recipe, rng)
    for k, (p, g) in enumerate(zip(params, grads)):
        for index in [(0,) * p.ndim, tuple(s - 1 for s in p.shape)]:
            step = np.zeros_like(p)
            step[index] = 1e-6
            plus, minus = list(params), list(params)
            plus[k], minus[k] = p + step, p - step
            numeric = (objective(plus) - objective(minus)) / 2e-6
            assert abs(numeric - g[index]) < 1e-5 * max(1.0, abs(numeric)), (k, index, numeric, g[index])


def test_no_epochs_is_the_linear_head_on_the_checkpoints_embedding():
    clips, masks, weight, init = problem()
    tuned, _ = fine_tune(clips, masks, weight, init, BackendRecipe(epochs=0))
    np.testing.assert_array_equal(tuned.kernel, init.kernel)
    means = np.stack([init.embeddings(c).mean(axis=0) for c in clips])
    kernel, bias = fit_set_softmax(means, masks, weight, BackendRecipe().c)
    np.testing.assert_allclose(tuned.head_kernel, kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tuned.logits(clips), means @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_fine_tuning_is_deterministic_and_learns():
    clips, masks, weight, init = problem()
    # Every random part on (both dropouts, mixup): the same answer twice.
    recipe = BackendRecipe(epochs=10, lr=3e-3, c=1.0, mixup=0.4)
    runs = [fine_tune(clips, masks, weight, init, recipe)[0] for _ in range(2)]
    for a, b in zip(vars(runs[0]).values(), vars(runs[1]).values()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0].kernel, init.kernel)
    # Light regularisation on an easy problem: it fits the training clips at least as well as it started.
    tuned = fine_tune(clips, masks, weight, init, BackendRecipe(epochs=30, lr=3e-3, c=1.0, dropout=0.0,
                                                                 input_dropout=0.0))[0]
    before = fine_tune(clips, masks, weight, init, BackendRecipe(epochs=0, c=1.0))[0]
    truth = masks.argmax(axis=1)
    assert np.mean(tuned.logits(clips).argmax(axis=1) == truth) >= np.mean(before.logits(clips).argmax(axis=1) == truth)


def test_a_joined_ensemble_answers_the_mean_of_its_members():
    clips, masks, weight, init = problem()
    members = [fine_tune(clips, masks, weight, init, BackendRecipe(epochs=3, lr=3e-3, seed=seed))[0] for seed in range(3)]
    assert not np.array_equal(members[0].kernel, members[1].kernel)   # the seeds give different members
    joined = join(members)
    assert joined.kernel.shape == (12, 18) and joined.head_kernel.shape == (18, 3)
    np.testing.assert_allclose(joined.logits(clips), np.mean([m.logits(clips) for m in members], axis=0),
                               rtol=1e-5, atol=1e-5)


def test_early_stopping_picks_the_epoch_of_lowest_held_out_loss():
    clips, masks, weight, init = problem()
    held, held_masks = problem(seed=5)[:2]
    recipe = BackendRecipe(epochs=6, lr=3e-3)
    epochs = early_stopped_epochs((clips, masks, weight), held, held_masks, init, recipe)
    assert 1 <= epochs <= 6
