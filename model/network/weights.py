"""Where the shipped weights live, and how they are written and read."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.atomic import atomic_write
from model.service.settings import DEFAULT_WEIGHTS_DIR  # noqa: F401  (where the shipped weights live)

# The musicnn wheel's checkpoints that are ported, by the short name heads refer to them by.
BACKBONE_CHECKPOINTS = {"msd": "MSD_musicnn", "mtt": "MTT_musicnn"}
BACKBONE_FILE = "msd_musicnn.weights.h5"  # the backbone whose embedding the recommender uses
HEAD_FILE = "genre_head.weights.h5"
HEAD_INFO_FILE = "genre_head.json"
LICENCE_FILE = "LICENSE-musicnn.md"
ONNX_FILE = "genre_classifier.onnx"  # the backbones and the head in one graph (model.network.onnx_export)

if TYPE_CHECKING:   # the service's ONNX runtime never imports Keras
    import keras


class WeightsError(RuntimeError):
    """Weights that are missing, or that do not fit this version's parameters."""


def backbone_file(name: str) -> str:
    """Weights file of the backbone `name` (a key of BACKBONE_CHECKPOINTS)."""
    return f"{BACKBONE_CHECKPOINTS[name].lower()}.weights.h5"


def atomic_save_weights(model: keras.Model, target: Path, half: bool = False) -> None:
    """Save Keras weights without ever leaving a half-written file at `target`; with `half`, each float32
    array stored as float16 (Keras reads it back into its float32 variables): half the file."""
    # Keras insists on the '.weights.h5' ending, so it writes to a sibling that is then moved in place.
    staging = target.with_name(f".staging.{target.name}")
    model.save_weights(staging, overwrite=True)
    if half:
        _store_in_half_precision(staging)
    with atomic_write(target) as f:
        f.write(staging.read_bytes())
    staging.unlink()


def _store_in_half_precision(path: Path) -> None:
    import h5py   # Keras's own weights format

    # Written anew: HDF5 does not give back the space of a dataset deleted in place.
    half_path = path.with_name(f"{path.name}.half")

    def copy(name: str, item) -> None:
        if isinstance(item, h5py.Group):
            target.require_group(name).attrs.update(item.attrs)
            return
        value = item[()]
        if isinstance(value, np.ndarray) and value.dtype == np.float32:
            value = value.astype(np.float16)
            if not np.isfinite(value).all():
                raise ValueError(f"{path.name}: {name} holds values beyond float16's range")
        target.create_dataset(name, data=value).attrs.update(item.attrs)

    try:
        with h5py.File(path, "r") as source, h5py.File(half_path, "w") as target:
            target.attrs.update(source.attrs)
            source.visititems(copy)
    except BaseException:
        half_path.unlink(missing_ok=True)
        raise
    half_path.replace(path)


def file_digest(path: Path) -> str:
    """Short sha256 of a file: names the weights that cached embeddings were computed with."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def network_digest(weights_dir: Path) -> str:
    """"<backbone digest>-<head digest>": names the weights a stored embedding (the backbone's) and genre
    probabilities (the head's) were computed with, so that new weights are seen."""
    return f"{file_digest(Path(weights_dir) / BACKBONE_FILE)}-{file_digest(Path(weights_dir) / HEAD_FILE)}"
