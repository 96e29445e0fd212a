"""Fine-tune MusiCNN's back-end (its 200-unit dense layer) with the genre head, from cached pooled
inputs: numpy, on CPU, deterministic.

The network's back-end reads the `pooled` max and mean over time of the front- and mid-end features
(POOLED_DIM per patch), batch-normalised (`batch_normalization_9`, kept as the checkpoint has it), then
a ReLU dense layer gives the 200-d embedding. Here that dense layer is trained together with the
genre head on a clip's patches: embedding per patch, mean over the clip's patches (as the service
summarises, so a clip's length cannot stand in for its genre), linear softmax head.

The objective starts where the shipped linear head is optimal and only moves as far as the data pay:
    mean_i weight_i * loss_i + |K * scale|^2 / (2 c N) + l2sp / 2 * |W - W0|^2
with `loss` the set loss of `model.head_fit` (ordinary cross-entropy for one candidate), K the head's
kernel on the raw embedding, `scale` the spread of the training embeddings under the checkpoint (so
the head's penalty is the linear head's, in standardised units), W0 the checkpoint's dense weights
(L2-SP: weight decay towards the pretrained weights, not towards zero). Dropout on each patch's pooled
input and on its embedding (the input dropout is what kept it from overfitting within an epoch or two:
docs/model-accuracy.md); Adam on minibatches of rows; rows, dropout and batches drawn from a seeded
generator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.head_fit import fit_set_softmax, set_loss


@dataclass(frozen=True)
class BackendRecipe:
    c: float = 0.003          # the head's inverse L2 strength, as the linear head's
    l2sp: float = 1e-3        # pull of the dense weights towards the checkpoint's
    dropout: float = 0.3      # on each patch's embedding
    input_dropout: float = 0.4   # on each patch's pooled input features
    lr: float = 3e-4
    batch: int = 64           # rows per step
    epochs: int = 20
    mixup: float = 0.0        # Beta(a, a) mixing of two rows' clip embeddings and targets; 0: none
    seed: int = 0


@dataclass
class Backend:
    """The dense layer (kernel (POOLED_DIM, 200), bias) on batch-normalised pooled inputs, and the head
    (kernel (200, genres), bias) on the mean embedding."""
    kernel: np.ndarray
    bias: np.ndarray
    head_kernel: np.ndarray
    head_bias: np.ndarray

    def embeddings(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ self.kernel + self.bias, 0.0)

    def logits(self, clips: list[np.ndarray]) -> np.ndarray:
        """Genre logits (n, genres) of clips given as their patches' normalised pooled inputs."""
        return clip_means(self, *rows_of(clips)) @ self.head_kernel + self.head_bias


def join(members: list[Backend]) -> Backend:
    """One back-end whose logits are the mean of the members' logits: their dense layers side by side,
    their heads stacked and divided by their number (a clip's mean embedding is taken unit by unit, so
    the mean of the members' linear heads on their own units is one linear head on all of them). An
    ensemble of fine-tunes from different seeds is then one head of the same form, for the service's
    graph as for training."""
    k = len(members)
    return Backend(np.concatenate([m.kernel for m in members], axis=1), np.concatenate([m.bias for m in members]),
                   np.concatenate([m.head_kernel for m in members]) / k,
                   np.mean([m.head_bias for m in members], axis=0))


def rows_of(clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All clips' patches stacked, and each clip's [start, stop) in that stack."""
    sizes = np.array([len(x) for x in clips])
    bounds = np.cumsum(np.r_[0, sizes])
    return np.concatenate(clips).astype(np.float32), np.stack([bounds[:-1], bounds[1:]], axis=1)


def clip_means(backend: Backend, x: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Each clip's mean embedding, from the stacked patches and the clips' spans (`rows_of`)."""
    return np.add.reduceat(backend.embeddings(x), spans[:, 0], axis=0) / (spans[:, 1] - spans[:, 0])[:, None]


def fine_tune(clips: list[np.ndarray], masks: np.ndarray, weight: np.ndarray, init: Backend,
              recipe: BackendRecipe, validation=None) -> tuple[Backend, list[float]]:
    """The back-end and head fine-tuned on training rows (each a clip's patches, normalised pooled
    inputs), their candidate masks and weights, from `init` (the checkpoint's dense layer; its head
    is refitted here as the linear head on the checkpoint's embeddings). `validation(backend)`, if
    given, is called after each epoch; its values are returned (for early stopping)."""
    x, spans = rows_of(clips)
    counts = (spans[:, 1] - spans[:, 0]).astype(np.float32)
    w0, b0 = init.kernel.astype(np.float32), init.bias.astype(np.float32)
    means = clip_means(init, x, spans)
    head_kernel, head_bias = fit_set_softmax(means, masks, weight, recipe.c)
    scale = np.sqrt(np.average((means - np.average(means, axis=0, weights=weight)) ** 2, axis=0, weights=weight))
    scale[scale == 0] = 1.0
    head_penalty = (scale ** 2 / (recipe.c * len(spans)))[:, None]
    present = masks.any(axis=0)   # a genre absent from training keeps its "never" bias
    params = [w0.copy(), b0.copy(), head_kernel.astype(np.float32), head_bias.astype(np.float32)]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    rng = np.random.default_rng(recipe.seed)
    history, step = [], 0
    for _ in range(recipe.epochs):
        order = rng.permutation(len(spans))
        for start in range(0, len(order), recipe.batch):
            rows = order[start:start + recipe.batch]
            grads = _gradients(params, x, spans[rows], counts[rows], masks[rows], weight[rows], w0, b0,
                               head_penalty, recipe, rng)
            grads[3][~present] = 0.0
            step += 1
            for p, g, (m, v) in zip(params, grads, moments):
                m *= 0.9
                m += 0.1 * g
                v *= 0.999
                v += 0.001 * g * g
                p -= recipe.lr * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
        if validation is not None:
            history.append(validation(Backend(*params)))
    return Backend(*params), history


def _gradients(params, x, spans, counts, masks, weight, w0, b0, head_penalty, recipe, rng):
    kernel, bias, head_kernel, head_bias = params
    index = np.concatenate([np.arange(a, b) for a, b in spans])
    sizes = spans[:, 1] - spans[:, 0]
    owner = np.repeat(np.arange(len(spans)), sizes)
    xb = x[index]
    if recipe.input_dropout > 0:
        xb = xb * ((rng.random(xb.shape) >= recipe.input_dropout) / np.float32(1 - recipe.input_dropout))
    pre = xb @ kernel + bias
    hidden = np.maximum(pre, 0.0)
    keep = np.ones_like(hidden)
    if recipe.dropout > 0:
        keep = (rng.random(hidden.shape) >= recipe.dropout) / np.float32(1 - recipe.dropout)
    clip = np.add.reduceat(hidden * keep, np.cumsum(np.r_[0, sizes[:-1]]), axis=0) / counts[:, None]
    n = len(spans)
    if recipe.mixup > 0:
        lam = rng.beta(recipe.mixup, recipe.mixup, size=n).astype(np.float32)
        partner = rng.permutation(n)
        mixed = lam[:, None] * clip + (1 - lam[:, None]) * clip[partner]
        logits = mixed @ head_kernel + head_bias
        _, g1 = set_loss(logits, masks, weight * lam)
        _, g2 = set_loss(logits, masks[partner], weight[partner] * (1 - lam))
        d_logits = ((g1 + g2) / n).astype(np.float32)
        d_mixed = d_logits @ head_kernel.T
        d_clip = lam[:, None] * d_mixed
        np.add.at(d_clip, partner, (1 - lam[:, None]) * d_mixed)
        d_head_kernel = mixed.T @ d_logits
    else:
        logits = clip @ head_kernel + head_bias
        _, g = set_loss(logits, masks, weight)
        d_logits = (g / n).astype(np.float32)
        d_clip = d_logits @ head_kernel.T
        d_head_kernel = clip.T @ d_logits
    d_pre = (d_clip / counts[:, None])[owner] * keep * (pre > 0)
    return [xb.T @ d_pre + recipe.l2sp * (kernel - w0), d_pre.sum(axis=0) + recipe.l2sp * (bias - b0),
            d_head_kernel + head_penalty * head_kernel, d_logits.sum(axis=0)]


def balanced_loss(logits: np.ndarray, masks: np.ndarray) -> float:
    """Mean loss of clips of one label, each genre weighing the same: what early stopping watches."""
    labels = masks.argmax(axis=1)
    weight = 1.0 / np.bincount(labels, minlength=masks.shape[1])[labels]
    loss, _ = set_loss(logits, masks, weight)
    return loss / weight.sum()


def early_stopped_epochs(train: tuple[list[np.ndarray], np.ndarray, np.ndarray], validation: list[np.ndarray],
                         validation_masks: np.ndarray, init: Backend, recipe: BackendRecipe) -> int:
    """The number of epochs (1 to recipe.epochs) after which the back-end fine-tuned on `train` rows
    (`fine_tune`'s first three arguments) has the lowest `balanced_loss` on the validation clips."""
    _, history = fine_tune(*train, init, recipe,
                           validation=lambda backend: balanced_loss(backend.logits(validation), validation_masks))
    return int(np.argmin(history)) + 1
