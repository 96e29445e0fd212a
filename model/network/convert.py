"""Convert the `MSD_musicnn` and `MTT_musicnn` TF1 checkpoints of the musicnn 0.1.0 wheel into `weights/`.

    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn && unzip -o /tmp/musicnn/*.whl -d /tmp/musicnn
    python -m model.network.convert /tmp/musicnn/musicnn/MSD_musicnn /tmp/musicnn/musicnn/MTT_musicnn

Only the checkpoint's variables are read (with TensorFlow's checkpoint reader); none of the
wheel's TF1 code runs. The wheel's ISC licence is copied beside the weights.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from model.network.musicnn import build_musicnn
from model.network.weights import BACKBONE_CHECKPOINTS, LICENCE_FILE, atomic_save_weights, backbone_file

_BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def read_checkpoint(checkpoint_dir: Path) -> dict[str, np.ndarray]:
    """All variables of a TF1 checkpoint directory (the wheel's checkpoints have an empty prefix)."""
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(str(checkpoint_dir) + "/")
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def convert(checkpoint_dir: Path, weights_dir: Path) -> Path:
    """Load the checkpoint into the Keras port and save its weights; returns the weights path."""
    names = {checkpoint: name for name, checkpoint in BACKBONE_CHECKPOINTS.items()}
    if checkpoint_dir.name not in names:
        raise ValueError(f"{checkpoint_dir} is none of the ported checkpoints {sorted(names)}")
    variables = read_checkpoint(checkpoint_dir)
    model = build_musicnn(name=checkpoint_dir.name.lower())
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.__class__.__name__ == "BatchNormalization":
            values = [variables[f"{layer.name}/{v}"] for v in _BN_VARIABLES]
        else:
            kernel = variables[f"{layer.name}/kernel"]
            # The mid-end's TF1 conv2d kernels (7, features, 1, 64) are Conv1D kernels (7, features, 64).
            values = [kernel.reshape(layer.kernel.shape), variables[f"{layer.name}/bias"]]
        layer.set_weights(values)
    weights_dir.mkdir(parents=True, exist_ok=True)
    target = weights_dir / backbone_file(names[checkpoint_dir.name])
    atomic_save_weights(model, target)
    licence = checkpoint_dir.parent.parent / "musicnn-0.1.0.dist-info" / "LICENSE.md"
    if licence.exists():
        shutil.copyfile(licence, weights_dir / LICENCE_FILE)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint_dirs", type=Path, nargs="+",
                        help="the wheel's musicnn/MSD_musicnn and/or musicnn/MTT_musicnn folders")
    parser.add_argument("--weights", type=Path, default=Path("weights"), help="output folder (default: weights)")
    args = parser.parse_args(argv)
    for checkpoint_dir in args.checkpoint_dirs:
        print(f"wrote {convert(checkpoint_dir, args.weights)}")


if __name__ == "__main__":
    main()
