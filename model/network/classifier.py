"""The genre classifier: MusiCNN backbones, and a calibrated softmax head over GTZAN's genres on their
pooled features, summarised over a track's patches (the head and what it reads: `model.network.head`).

It runs on one of two runtimes (`RUNTIMES`): "onnx", the whole classifier exported to one ONNX graph
(`model.network.onnx_export`) and run by ONNX Runtime, which the service uses on CPU hosts (a tenth of
TensorFlow's memory, see docs/model.md); or "keras", the Keras models on TensorFlow (training, GPU hosts).
Keras is imported only by the functions that need it, so that the ONNX runtime never loads TensorFlow.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from model.audio.features import log_mel_patches, patches
from model.network.head import HeadInput, load_head, read_head_info
from model.network.weights import BACKBONE_CHECKPOINTS, DEFAULT_WEIGHTS_DIR, WeightsError, backbone_file
from model.params import GENRES, HOP_LENGTH, MAX_PATCHES, PATCH_FRAMES, SAMPLE_RATE

if TYPE_CHECKING:
    import keras

RUNTIMES = ("onnx", "keras")
# A batch of log-mel patches (n, frames, mels) of one track -> its genre probabilities (genres,) and
# its patches' MSD embeddings (n, EMBEDDING_DIM).
Network = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# What the network sees of a clip at once: a shorter one is looped to fill it (a 2-3 s excerpt).
FULL_VIEW_S = PATCH_FRAMES * HOP_LENGTH / SAMPLE_RATE   # ~2.99 s


def load_backbone(weights_dir: Path = DEFAULT_WEIGHTS_DIR, name: str = "msd") -> keras.Model:
    path = Path(weights_dir) / backbone_file(name)
    if not path.exists():
        raise WeightsError(f"no MusiCNN weights at {path}: see docs/model.md (python -m model.network.convert)")
    from model.network.musicnn import build_musicnn

    backbone = build_musicnn(name=BACKBONE_CHECKPOINTS[name].lower())
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
    """Track-level genre probabilities and the recommender's embedding (the MSD backbone's mean
    200-d embedding), from a log-mel's patches, computed by `network` (either runtime's)."""

    def __init__(self, network: Network, head_input: HeadInput = HeadInput(), genres: tuple[str, ...] = GENRES,
                 unsure_below: float = 0.0) -> None:
        self.network, self.head_input, self.genres = network, head_input, tuple(genres)
        # The top probability below which an answer is flagged unsure: chosen by model.train from the
        # calibrated probabilities of clips of artists the head had not heard (the head's json).
        self.unsure_below = unsure_below
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
        unsure_below = float(info["unsure"]["threshold"])
        if runtime == "onnx":
            from model.network.onnx_runtime import OnnxNetwork

            return cls(OnnxNetwork.load(weights_dir, info, threads=threads, alone=alone), head_input,
                       unsure_below=unsure_below)
        from model.network.keras_runtime import KerasNetwork
        from model.network.tensorflow_import import import_tensorflow

        import_tensorflow()   # before Keras loads it, so that its start-up chatter stays out of the log
        head = load_head(weights_dir, head_input)
        # The MSD backbone also gives the recommender's embedding.
        backbones = {name: load_backbone(weights_dir, name) for name in dict.fromkeys(("msd",) + head_input.backbones)}
        return cls(KerasNetwork(backbones, head, head_input, info.get("temperature", 1.0),
                                info.get("temperature_one_patch")), head_input,
                   unsure_below=unsure_below)

    def analyse_patches(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The genre probabilities (genres,) of a track made of these patches, and their MSD
        embeddings (n, EMBEDDING_DIM)."""
        return self.network(np.asarray(batch, dtype=np.float32))

    def analyse(self, y: np.ndarray, max_patches: int | None = MAX_PATCHES) -> tuple[np.ndarray, np.ndarray]:
        """A track's genre probabilities (summing to 1) and mean embedding, from its 16 kHz samples.

        At most `max_patches` patches, spread over the track, are looked at (and only their
        log-mel is computed): a long song costs no more than a 30 s clip."""
        return self._track(log_mel_patches(y, max_patches, loop=self.head_input.loop_short))

    def analyse_mel(self, mel: np.ndarray, max_patches: int | None = MAX_PATCHES) -> tuple[np.ndarray, np.ndarray]:
        """`analyse` of a track whose whole (frames, N_MELS) log-mel is at hand (a store that keeps them):
        its patches are cut from it."""
        return self._track(patches(mel, max_patches, loop=self.head_input.loop_short))

    def _track(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, embedding = self.analyse_patches(batch)
        return (probs / probs.sum()).astype(np.float32), embedding.mean(axis=0)

    def unsure(self, probs: np.ndarray, duration_s: float) -> str | None:
        """Why an answer of these probabilities, for a clip of `duration_s`, is unsure (a sentence), or None."""
        if duration_s < FULL_VIEW_S:
            return (f"the clip is {duration_s:.1f} s long, shorter than the {FULL_VIEW_S:.0f} s the network "
                    f"listens to at once")
        top = float(np.max(probs))
        if top < self.unsure_below:
            return (f"the likeliest genre is only {top:.0%} likely; below {self.unsure_below:.0%}, answers "
                    f"on artists the model had not heard were wrong more often than right")
        return None

    def warm_up(self) -> None:
        """Run the network once at its largest batch, so the first request is not the slow one."""
        self.analyse(np.zeros(30 * SAMPLE_RATE, np.float32))
