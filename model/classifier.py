"""The genre classifier: the MusiCNN backbone, and a softmax head over GTZAN's genres on its embedding."""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from model.features import log_mel_patches
from model.musicnn import EMBEDDING_DIM, build_musicnn
from model.params import GENRES, MAX_PATCHES, N_MELS, PATCH_FRAMES, SAMPLE_RATE, feature_params
from model.weights import BACKBONE_FILE, DEFAULT_WEIGHTS_DIR, HEAD_FILE, HEAD_INFO_FILE


class WeightsError(RuntimeError):
    """Weights that are missing, or that do not fit this version's parameters."""


def build_head(n_genres: int = len(GENRES), dropout: float = 0.3) -> keras.Model:
    """Softmax over genres from one patch's embedding. The first layer standardises the
    embedding with statistics fitted on the training set (`adapt`)."""
    x = keras.Input((EMBEDDING_DIM,), name="embedding")
    h = keras.layers.Normalization(name="standardise")(x)
    h = keras.layers.Dropout(dropout, name="dropout")(h)
    probs = keras.layers.Dense(n_genres, activation="softmax", name="genre",
                               kernel_regularizer=keras.regularizers.L2(1e-3))(h)
    return keras.Model(x, probs, name="genre_head")


def load_backbone(weights_dir: Path = DEFAULT_WEIGHTS_DIR) -> keras.Model:
    path = Path(weights_dir) / BACKBONE_FILE
    if not path.exists():
        raise WeightsError(f"no MusiCNN weights at {path}: see the README (python -m model.convert)")
    backbone = build_musicnn()
    backbone.load_weights(path)
    return backbone


def _single_threaded_blas() -> None:
    """Limit numpy's and scipy's BLAS (librosa's features) to one thread. Their idle threads spin
    after each call and take the cores the network's own threads need: on 2 cores a 30 s clip's
    network pass goes from ~135 to ~100 ms. The network itself does not use them."""
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS now, so that the limit covers it)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


class GenreClassifier:
    """Track-level genre probabilities (the mean over patches) and embeddings, from a log-mel."""

    def __init__(self, backbone: keras.Model, head: keras.Model, genres: tuple[str, ...] = GENRES) -> None:
        import tensorflow as tf

        self.backbone, self.head, self.genres = backbone, head, tuple(genres)
        _single_threaded_blas()

        # One traced graph for any number of patches: no per-call retracing, and none of
        # predict()'s per-call overhead.
        @tf.function(input_signature=[tf.TensorSpec((None, PATCH_FRAMES, N_MELS), tf.float32)])
        def run(batch):
            embedding = backbone(batch, training=False)["embedding"]
            return head(embedding, training=False), embedding

        self._run = run

    @classmethod
    def load(cls, weights_dir: Path = DEFAULT_WEIGHTS_DIR) -> "GenreClassifier":
        weights_dir = Path(weights_dir)
        info_path, head_path = weights_dir / HEAD_INFO_FILE, weights_dir / HEAD_FILE
        if not head_path.exists() or not info_path.exists():
            raise WeightsError(f"no trained genre head in {weights_dir}: train one with python -m model.train")
        info = json.loads(info_path.read_text())
        if tuple(info["genres"]) != GENRES:
            raise WeightsError(f"the head in {weights_dir} was trained for genres {info['genres']}, "
                               f"this version has {list(GENRES)}")
        recorded = info.get("feature_params", {})
        if any(recorded.get(k) != v for k, v in feature_params().items()):
            raise WeightsError(f"the head in {weights_dir} was trained on other feature parameters "
                               f"({recorded}): retrain it with python -m model.train")
        head = build_head(len(GENRES))
        head.load_weights(head_path)
        return cls(load_backbone(weights_dir), head)

    def analyse_patches(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-patch genre probabilities (n, genres) and embeddings (n, EMBEDDING_DIM)."""
        probs, embedding = self._run(np.asarray(batch, dtype=np.float32))
        return probs.numpy(), embedding.numpy()

    def analyse(self, y: np.ndarray, max_patches: int | None = MAX_PATCHES) -> tuple[np.ndarray, np.ndarray]:
        """A track's genre probabilities (summing to 1) and mean embedding, from its 16 kHz samples.

        At most `max_patches` patches, spread over the track, are looked at (and only their
        log-mel is computed): a long song costs no more than a 30 s clip."""
        probs, embedding = self.analyse_patches(log_mel_patches(y, max_patches))
        mean = probs.mean(axis=0, dtype=np.float64)
        return (mean / mean.sum()).astype(np.float32), embedding.mean(axis=0)

    def warm_up(self) -> None:
        """Trace and run the graph once at its largest batch, so the first request is not the slow one."""
        self.analyse(np.zeros(30 * SAMPLE_RATE, np.float32))
