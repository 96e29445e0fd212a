"""The genre classifier's network on Keras/TensorFlow: for training, and for GPU hosts (SOUNDALIKE_RUNTIME=keras)."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from model.network.head import HeadInput, head_logits
from model.params import N_MELS, PATCH_FRAMES


class KerasNetwork:
    """Patches (n, frames, mels) -> the track's genre probabilities and the patches' MSD embeddings
    (`model.network.classifier.Network`), from the Keras backbones and head."""

    def __init__(self, backbones: dict[str, keras.Model], head: keras.Model, head_input: HeadInput,
                 temperature: float, temperature_one_patch: float | None = None) -> None:
        self.backbones, self.head, self.temperature = backbones, head, float(temperature)
        # A one-patch track (shorter than ~6 s) is divided by its own temperature where the head has one.
        self.temperature_one_patch = self.temperature if temperature_one_patch is None else float(temperature_one_patch)

        # One traced graph for any number of patches: no per-call retracing, and none of
        # predict()'s per-call overhead.
        @tf.function(input_signature=[tf.TensorSpec((None, PATCH_FRAMES, N_MELS), tf.float32)])
        def run(batch):
            outputs = {name: backbones[name](batch, training=False) for name in backbones}
            features = tf.concat([outputs[b][head_input.layer] for b in head_input.backbones], axis=-1)
            logits = head_logits(head, head_input, features)
            divisor = tf.where(tf.shape(batch)[0] == 1, self.temperature_one_patch, self.temperature)
            return tf.nn.softmax(logits / divisor), outputs["msd"]["embedding"]

        self._run = run

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, embedding = self._run(batch)
        return probs.numpy(), embedding.numpy()
