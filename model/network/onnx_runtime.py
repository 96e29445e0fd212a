"""The genre classifier's network on ONNX Runtime: the service's runtime on CPU hosts (SOUNDALIKE_RUNTIME=onnx).

It runs the graph `model.network.onnx_export` wrote beside the Keras weights, and imports neither
TensorFlow nor Keras nor onnx: a serving process holds about a tenth of the memory (docs/model.md)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.network.head import HeadInput
from model.network.weights import HEAD_FILE, ONNX_FILE, WeightsError, backbone_file, file_digest

METADATA_KEY = "soundalike"


def export_record(weights_dir: Path, info: dict) -> dict:
    """What an export of `weights_dir`'s classifier is made from (its head's json record `info`):
    the weights files' digests, the head's input and its temperatures."""
    head_input = HeadInput.from_json(info["input"])
    return {"head": file_digest(weights_dir / HEAD_FILE),
            "backbones": {name: file_digest(weights_dir / backbone_file(name))
                          for name in dict.fromkeys(("msd",) + head_input.backbones)},
            "input": head_input.to_json(), "temperature": info.get("temperature", 1.0),
            **({"temperature_one_patch": info["temperature_one_patch"]} if "temperature_one_patch" in info else {})}


class OnnxNetwork:
    """Patches (n, frames, mels) -> the track's genre probabilities and the patches' MSD embeddings
    (`model.network.classifier.Network`), from the exported graph. One session serves concurrent
    calls (ONNX Runtime's `run` is thread-safe); its `threads` intra-op threads are shared by them."""

    def __init__(self, path: Path, threads: int | None = None, alone: bool = False) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        options.log_severity_level = 3   # errors only: its warnings are about graph rewrites, not for operators
        # Unless the network runs `alone`, its threads do not spin-wait after each node for the next
        # one: that would take the core that a request's chromagram and fingerprint (computed beside
        # the network pass) and the other analyses need: a 30 s clip's analysis took 1.24 s with
        # spinning, 0.97 s without (2 shared cores). Alone (model.predict), spinning saves the
        # threads' wake-ups: ~5-10 % of a prediction.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if alone else "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.record = json.loads(self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}"))

    @classmethod
    def load(cls, weights_dir: Path, info: dict, threads: int | None = None, alone: bool = False) -> "OnnxNetwork":
        """The export in `weights_dir`, refused unless it was made from the weights and head record there."""
        path = weights_dir / ONNX_FILE
        how = f"python -m model.network.onnx_export --weights {weights_dir}"
        if not path.exists():
            raise WeightsError(f"no ONNX export of the classifier at {path}: make it with {how} "
                               f"(or serve on TensorFlow with SOUNDALIKE_RUNTIME=keras)")
        network = cls(path, threads, alone)
        if network.record != export_record(weights_dir, info):
            raise WeightsError(f"the ONNX export {path} was made from other weights or another head record "
                               f"than those in {weights_dir}: export it again with {how}")
        return network

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, embedding = self.session.run(["probabilities", "embedding"], {"log_mel": batch})
        return probs, embedding
