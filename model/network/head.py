"""The genre head: a calibrated softmax over GTZAN's genres on the backbones' features, summarised over a
track's patches. `HeadInput`, what it reads, is recorded in its json beside its weights, and each runtime
(`model.network.onnx_runtime`, `model.network.keras_runtime`) and the export build its input from that record.
Keras is imported only by the functions that need it, so that the ONNX runtime never loads TensorFlow.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from model.network.shapes import EMBEDDING_DIM, POOLED_DIM
from model.network.weights import BACKBONE_CHECKPOINTS, HEAD_FILE, HEAD_INFO_FILE, WeightsError
from model.params import GENRES, network_params

if TYPE_CHECKING:
    import keras

LAYERS = {"pooled": POOLED_DIM, "embedding": EMBEDDING_DIM}
# Only the mean over patches: a spread (the standard deviation over patches) is zero for a 2-3 s clip of
# one patch and not for a long one, so a head reading it learns a clip's length instead of its genre
# (issue 15: with it, an artist's long rock clips whose genre was seen in training only as excerpts
# were 0/10 rock; with the mean alone, 10/10).
SUMMARIES = ("mean",)


@dataclass(frozen=True)
class HeadInput:
    """What the head reads: the `layer` of each backbone in `backbones`, per patch, joined, then
    summarised over a track's patches by each of `summaries`; a clip shorter than a patch is looped
    (`loop_short`) or zero-padded to fill it. With `hidden` units, the head first maps each patch's
    features by its own ReLU dense layer (fine-tuned copies of MusiCNN's back-end dense layer, side by side, reading
    `pooled`: `model.backend_fit`), and summarises that. The head's json records it, so a head is only
    ever fed what it was trained on."""
    backbones: tuple[str, ...] = ("msd",)
    layer: str = "embedding"
    summaries: tuple[str, ...] = ("mean",)
    loop_short: bool = True
    hidden: int = 0

    def __post_init__(self) -> None:
        unknown = [b for b in self.backbones if b not in BACKBONE_CHECKPOINTS]
        if unknown or not self.backbones or self.layer not in LAYERS or not set(self.summaries) <= set(SUMMARIES) \
                or not self.summaries or self.hidden < 0:
            raise WeightsError(f"a head input this version cannot compute: backbones {list(self.backbones)}, "
                               f"layer {self.layer!r}, summaries {list(self.summaries)} (known: backbones "
                               f"{sorted(BACKBONE_CHECKPOINTS)}, layers {sorted(LAYERS)}, summaries {list(SUMMARIES)})")

    @property
    def patch_dim(self) -> int:
        """Features per patch that the head reads."""
        return len(self.backbones) * LAYERS[self.layer]

    @property
    def dim(self) -> int:
        """Features per track that the head's last (genre) layer reads."""
        return (self.hidden or self.patch_dim) * len(self.summaries)

    def to_json(self) -> dict:
        # `hidden` only where there is one, so that a linear head's record reads as before it existed.
        return {"backbones": list(self.backbones), "layer": self.layer, "summaries": list(self.summaries),
                "loop_short": self.loop_short, **({"hidden": self.hidden} if self.hidden else {})}

    @classmethod
    def from_json(cls, info: dict) -> "HeadInput":
        try:
            return cls(tuple(info["backbones"]), info["layer"], tuple(info["summaries"]), bool(info["loop_short"]),
                       int(info.get("hidden", 0)))
        except (KeyError, TypeError) as error:
            raise WeightsError(f"a head input this version cannot read: {info} (missing {error})") from error


def summarise(patch_features, summaries: tuple[str, ...]):
    """(n, d) per-patch features -> (len(summaries) * d,): the statistics over the patches (numpy or
    tensors alike, so training and the service's graph compute the same thing)."""
    from keras import ops

    stats = {"mean": lambda x: ops.mean(x, axis=0)}
    return ops.concatenate([stats[s](patch_features) for s in summaries], axis=-1)


def build_head(dim: int, n_genres: int = len(GENRES), hidden: int = 0, summaries: tuple[str, ...] = SUMMARIES
               ) -> keras.Model:
    """Genre logits from a track's summarised features (dim,): one linear layer (a standardised logistic
    regression, with the standardisation folded into its weights, see `model.train`). With `hidden`
    units, from a track's patches' features (n, dim) instead: each patch through a ReLU dense layer
    ("backend", `HeadInput.hidden`), summarised over the patches, then the linear layer."""
    import keras

    x = keras.Input((dim,), name="patch_features" if hidden else "features")
    h = x
    if hidden:
        h = keras.ops.expand_dims(summarise(keras.layers.Dense(hidden, activation="relu", name="backend")(x), summaries), 0)
    return keras.Model(x, keras.layers.Dense(n_genres, name="genre")(h), name="genre_head")


def head_logits(head: keras.Model, head_input: HeadInput, patch_features):
    """A track's genre logits (genres,) from its patches' features (n, patch_dim), numpy or tensors."""
    features = patch_features if head_input.hidden else summarise(patch_features, head_input.summaries)[None]
    return head(features, training=False)[0]


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
    if "input" not in info or "unsure" not in info:
        raise WeightsError(f"the head in {weights_dir} does not say what it reads or when it is unsure "
                           f"(an older head): retrain it with python -m model.train")
    return info


def new_head(head_input: HeadInput) -> keras.Model:
    """An untrained head that reads `head_input`."""
    return build_head(head_input.patch_dim if head_input.hidden else head_input.dim, hidden=head_input.hidden,
                      summaries=head_input.summaries)


def load_head(weights_dir: Path, head_input: HeadInput) -> keras.Model:
    head = new_head(head_input)
    try:
        head.load_weights(weights_dir / HEAD_FILE)
    except ValueError as error:
        raise WeightsError(f"the head in {weights_dir} does not fit its recorded input "
                           f"{head_input.to_json()}: {error}") from error
    return head
