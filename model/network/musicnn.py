"""MusiCNN (Pons & Serra, 2019) in Keras 3: the `MSD_musicnn` and `MTT_musicnn` networks of the
musicnn 0.1.0 wheel (one architecture, two checkpoints).

Layer for layer the wheel's TF1 graph (musicnn/models.py, `build_musicnn` with 64 mid-end filters
and 200 back-end units), in inference mode. Layers are named after the checkpoint's variable
scopes so that `model.network.convert` can copy the weights by name.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from model.network.shapes import EMBEDDING_DIM, N_TAGS, POOLED_DIM  # noqa: F401  (this network's sizes)
from model.params import N_MELS, PATCH_FRAMES

# TF1's tf.compat.v1.layers.batch_normalization default.
BN_EPSILON = 1e-3


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, name=name)


def _max_over_freq(x):
    # (batch, time, freq, filters) -> (batch, time, filters)
    return ops.max(x, axis=2)


def _pad_time(x, before: int, after: int):
    return ops.pad(x, [[0, 0], [before, after]] + [[0, 0]] * (len(x.shape) - 2))


def build_musicnn(patch_frames: int = PATCH_FRAMES, n_mels: int = N_MELS, name: str = "msd_musicnn") -> keras.Model:
    """MusiCNN from log-mel patches (batch, frames, mels) to a dict of `tags` (50 tag
    probabilities), `embedding` (the 200-d penultimate layer, after ReLU) and `pooled` (the
    POOLED_DIM max and mean over time that the penultimate layer reads, before its batch norm)."""
    x = keras.Input((patch_frames, n_mels), name="log_mel")
    h = _bn("batch_normalization")(ops.expand_dims(x, -1))

    # Front-end. Timbral: (7 x 38) and (7 x 67) kernels, time padded by 3 for 'same' length.
    padded = _pad_time(h, 3, 3)
    fronts = []
    for i, width in enumerate((int(0.4 * n_mels), int(0.7 * n_mels))):
        c = layers.Conv2D(204, (7, width), activation="relu", name=f"conv2d{'_1' if i else ''}")(padded)
        fronts.append(_max_over_freq(_bn(f"batch_normalization_{i + 1}")(c)))
    # Temporal: (128|64|32 x 1) kernels, TF 'same' padding.
    for i, length in enumerate((128, 64, 32)):
        c = layers.Conv2D(51, (length, 1), padding="same", activation="relu", name=f"conv2d_{i + 2}")(h)
        fronts.append(_max_over_freq(_bn(f"batch_normalization_{i + 3}")(c)))
    front = ops.concatenate(fronts, axis=-1)  # (batch, time, 561)

    # Mid-end: three (7 x all-features) convolutions, the last two residual. A TF1 conv2d whose
    # kernel spans the whole feature axis is a Conv1D over time.
    mids = [front]
    h = front
    for i in range(3):
        c = layers.Conv1D(64, 7, activation="relu", name=f"conv2d_{i + 5}")(_pad_time(h, 3, 3))
        c = _bn(f"batch_normalization_{i + 6}")(c)
        h = c if i == 0 else layers.add([c, h])
        mids.append(h)
    features = ops.concatenate(mids, axis=-1)  # (batch, time, 753)

    # Back-end: max and mean over time, interleaved per feature as TF1 flattens (753, 2).
    pooled = ops.stack([ops.max(features, axis=1), ops.mean(features, axis=1)], axis=-1)
    pooled = layers.Flatten()(pooled)
    embedding = layers.Dense(EMBEDDING_DIM, activation="relu", name="dense")(_bn("batch_normalization_9")(pooled))
    logits = layers.Dense(N_TAGS, name="dense_1")(_bn("batch_normalization_10")(embedding))
    tags = layers.Activation("sigmoid", name="tags")(logits)
    return keras.Model(x, {"tags": tags, "embedding": embedding, "pooled": pooled}, name=name)
