"""The genre classifier: MusiCNN backbones, and a calibrated softmax head over GTZAN's genres on their
pooled features, summarised over a track's patches.

It runs on one of two runtimes (`RUNTIMES`): "onnx", the whole classifier exported to one ONNX graph
(`model.network.onnx_export`) and run by ONNX Runtime, which the service uses on CPU hosts (a tenth of
TensorFlow's memory, see the README); or "keras", the Keras models on TensorFlow (training, GPU hosts).
Keras is imported only by the functions that need it, so that the ONNX runtime never loads TensorFlow.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from model.audio.features import log_mel_patches
from model.network.shapes import EMBEDDING_DIM, POOLED_DIM
from model.network.weights import BACKBONE_CHECKPOINTS, DEFAULT_WEIGHTS_DIR, HEAD_FILE, HEAD_INFO_FILE, backbone_file
from model.params import GENRES, MAX_PATCHES, SAMPLE_RATE, network_params

if TYPE_CHECKING:
    import keras

RUNTIMES = ("onnx", "keras")
# A batch of log-mel patches (n, frames, mels) of one track -> its genre probabilities (genres,) and
# its patches' MSD embeddings (n, EMBEDDING_DIM).
Network = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class WeightsError(RuntimeError):
    """Weights that are missing, or that do not fit this version's parameters."""


LAYERS = {"pooled": POOLED_DIM, "embedding": EMBEDDING_DIM}
SUMMARIES = ("mean", "std")


@dataclass(frozen=True)
class HeadInput:
    """What the head reads: the `layer` of each backbone in `backbones`, per patch, joined, then
    summarised over a track's patches by each of `summaries`; a clip shorter than a patch is looped
    (`loop_short`) or zero-padded to fill it. The head's json records it, so a head is only ever fed
    what it was trained on."""
    backbones: tuple[str, ...] = ("msd",)
    layer: str = "embedding"
    summaries: tuple[str, ...] = ("mean", "std")
    loop_short: bool = True

    def __post_init__(self) -> None:
        unknown = [b for b in self.backbones if b not in BACKBONE_CHECKPOINTS]
        if unknown or not self.backbones or self.layer not in LAYERS or not set(self.summaries) <= set(SUMMARIES) \
                or not self.summaries:
            raise WeightsError(f"a head input this version cannot compute: backbones {list(self.backbones)}, "
                               f"layer {self.layer!r}, summaries {list(self.summaries)} (known: backbones "
                               f"{sorted(BACKBONE_CHECKPOINTS)}, layers {sorted(LAYERS)}, summaries {list(SUMMARIES)})")

    @property
    def dim(self) -> int:
        return len(self.backbones) * LAYERS[self.layer] * len(self.summaries)

    def to_json(self) -> dict:
        return {"backbones": list(self.backbones), "layer": self.layer, "summaries": list(self.summaries),
                "loop_short": self.loop_short}

    @classmethod
    def from_json(cls, info: dict) -> "HeadInput":
        try:
            return cls(tuple(info["backbones"]), info["layer"], tuple(info["summaries"]), bool(info["loop_short"]))
        except (KeyError, TypeError) as error:
            raise WeightsError(f"a head input this version cannot read: {info} (missing {error})") from error


def summarise(patch_features, summaries: tuple[str, ...]):
    """(n, d) per-patch features -> (len(summaries) * d,): the statistics over the patches (numpy or
    tensors alike, so training and the service's graph compute the same thing)."""
    from keras import ops

    stats = {"mean": lambda x: ops.mean(x, axis=0), "std": lambda x: ops.std(x, axis=0)}
    return ops.concatenate([stats[s](patch_features) for s in summaries], axis=-1)


def build_head(dim: int, n_genres: int = len(GENRES)) -> keras.Model:
    """Genre logits from a track's summarised features: one linear layer (a standardised logistic
    regression, with the standardisation folded into its weights, see `model.train`)."""
    import keras

    x = keras.Input((dim,), name="features")
    return keras.Model(x, keras.layers.Dense(n_genres, name="genre")(x), name="genre_head")


def load_backbone(weights_dir: Path = DEFAULT_WEIGHTS_DIR, name: str = "msd") -> keras.Model:
    path = Path(weights_dir) / backbone_file(name)
    if not path.exists():
        raise WeightsError(f"no MusiCNN weights at {path}: see the README (python -m model.network.convert)")
    from model.network.musicnn import build_musicnn

    backbone = build_musicnn(name=BACKBONE_CHECKPOINTS[name].lower())
    backbone.load_weights(path)
    return backbone


def read_head_info(weights_dir: Path) -> dict:
    """The head's json record in `weights_dir`, checked against this version's genres and parameters."""
    info_path, head_path = weights_dir / HEAD_INFO_FILE, weights_dir / HEAD_FILE
    if not head_path.exists() or not info_path.exists():
        raise WeightsError(f"no trained genre head in {weights_dir}: train one with python -m model.train")
    info = json.loads(info_path.read_text())
    if tuple(info["genres"]) != GENRES:
        raise WeightsError(f"the head in {weights_dir} was trained for genres {info['genres']}, "
                           f"this version has {list(GENRES)}")
    recorded = info.get("feature_params", {})
    if any(recorded.get(k) != v for k, v in network_params().items()):
        raise WeightsError(f"the head in {weights_dir} was trained on other feature parameters "
                           f"({recorded}): retrain it with python -m model.train")
    if "input" not in info:
        raise WeightsError(f"the head in {weights_dir} does not say what it reads (an older head): "
                           f"retrain it with python -m model.train")
    return info


def load_head(weights_dir: Path, head_input: HeadInput) -> keras.Model:
    head = build_head(head_input.dim)
    try:
        head.load_weights(weights_dir / HEAD_FILE)
    except ValueError as error:
        raise WeightsError(f"the head in {weights_dir} does not fit its recorded input "
                           f"{head_input.to_json()}: {error}") from error
    return head


def _single_threaded_blas() -> None:
    """Limit numpy's and scipy's BLAS (librosa's features) to one thread. Their idle threads spin
    after each call and take the cores the network's own threads need: on 2 cores a 30 s clip's
    network pass goes from ~135 to ~100 ms. The network itself does not use them."""
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS now, so that the limit covers it)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


class GenreClassifier:
    """Track-level genre probabilities and the recommender's embedding (the MSD backbone's mean
    200-d embedding), from a log-mel's patches, computed by `network` (either runtime's)."""

    def __init__(self, network: Network, head_input: HeadInput = HeadInput(), genres: tuple[str, ...] = GENRES) -> None:
        self.network, self.head_input, self.genres = network, head_input, tuple(genres)
        _single_threaded_blas()

    @classmethod
    def load(cls, weights_dir: Path = DEFAULT_WEIGHTS_DIR, runtime: str | None = None,
             alone: bool = False, threads: int | None = None) -> "GenreClassifier":
        """The classifier in `weights_dir`, on `runtime` (one of RUNTIMES; default: $SOUNDALIKE_RUNTIME, else onnx).
        `alone`: nothing else computes while the network does (a command, not the service): on ONNX
        Runtime its threads then wait for the next node by spinning. `threads`: ONNX Runtime's threads
        (default: one per core; a preprocess worker, one of one per core, takes 1)."""
        from model.service.settings import from_env

        runtime = runtime or from_env().runtime
        if runtime not in RUNTIMES:
            raise WeightsError(f"no runtime {runtime!r}: SOUNDALIKE_RUNTIME is one of {', '.join(RUNTIMES)}")
        weights_dir = Path(weights_dir)
        info = read_head_info(weights_dir)
        head_input = HeadInput.from_json(info["input"])
        if runtime == "onnx":
            from model.network.onnx_runtime import OnnxNetwork

            return cls(OnnxNetwork.load(weights_dir, info, threads=threads, alone=alone), head_input)
        from model.network.keras_runtime import KerasNetwork
        from model.network.tensorflow_import import import_tensorflow

        import_tensorflow()   # before Keras loads it, so that its start-up chatter stays out of the log
        head = load_head(weights_dir, head_input)
        # The MSD backbone also gives the recommender's embedding.
        backbones = {name: load_backbone(weights_dir, name) for name in dict.fromkeys(("msd",) + head_input.backbones)}
        return cls(KerasNetwork(backbones, head, head_input, info.get("temperature", 1.0)), head_input)

    def analyse_patches(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The genre probabilities (genres,) of a track made of these patches, and their MSD
        embeddings (n, EMBEDDING_DIM)."""
        return self.network(np.asarray(batch, dtype=np.float32))

    def analyse(self, y: np.ndarray, max_patches: int | None = MAX_PATCHES) -> tuple[np.ndarray, np.ndarray]:
        """A track's genre probabilities (summing to 1) and mean embedding, from its 16 kHz samples.

        At most `max_patches` patches, spread over the track, are looked at (and only their
        log-mel is computed): a long song costs no more than a 30 s clip."""
        probs, embedding = self.analyse_patches(log_mel_patches(y, max_patches, loop=self.head_input.loop_short))
        return (probs / probs.sum()).astype(np.float32), embedding.mean(axis=0)

    def warm_up(self) -> None:
        """Run the network once at its largest batch, so the first request is not the slow one."""
        self.analyse(np.zeros(30 * SAMPLE_RATE, np.float32))
