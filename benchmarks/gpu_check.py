"""The network on an NVIDIA GPU: its outputs against the CPU's, and its throughput (`make gpu-check`).

    python benchmarks/gpu_check.py [--tracks 40] [--batches 64 256 1024]

Runs the genre classifier on TensorFlow (SOUNDALIKE_RUNTIME=keras, as the Docker image does) on the GPU and on
the CPU with the same patches; fails where the probabilities or embeddings differ beyond tolerance (TF32
off for the comparison: on Ampere and later it rounds matmuls to 10 bits). Then prints the GPU's and the
CPU's throughput: patches/s of the network alone, per batch size, and tracks/s of preprocessing with the
genre pass (a 30 s clip's store features and its genre probabilities, one process), medians of 5 runs.
Where TensorFlow sees no GPU it says so and exits 3: nothing was checked.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import median_seconds  # noqa: E402

NO_GPU = 3
PROBABILITY_ATOL = 1e-4   # float32 sums in another order: ~1e-6 seen on CPUs; a wrong kernel differs by far more
EMBEDDING_RTOL = 1e-3     # of the embedding's norm


def clips(n: int, seconds: float = 30.0, seed: int = 0) -> list[np.ndarray]:
    """Deterministic 16 kHz clips: a few harmonic notes and noise, different in each."""
    from model.params import SAMPLE_RATE

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    out = []
    for _ in range(n):
        notes = 110.0 * 2 ** (rng.integers(0, 36, size=5) / 12)
        y = sum(0.1 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * rng.uniform(0.5, 4) * t)) for f in notes)
        out.append((y + 0.02 * rng.standard_normal(len(t))).astype(np.float32))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=40, help="clips for the comparison and the tracks/s")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024], help="patches per batch")
    args = parser.parse_args(argv)

    from model.network.tensorflow_import import import_tensorflow
    import_tensorflow()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print(f"gpu-check: TensorFlow {tf.__version__} sees no GPU (built with CUDA: "
              f"{tf.test.is_built_with_cuda()}): nothing checked. On a GPU host: pip install '.[gpu]'.")
        return NO_GPU
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    details = tf.config.experimental.get_device_details(gpus[0])
    print(f"gpu-check: {details.get('device_name', gpus[0].name)} (compute capability "
          f"{details.get('compute_capability')}), TensorFlow {tf.__version__}")

    from model.audio.features import log_mel_patches, track_features
    from model.network.classifier import GenreClassifier

    audio = clips(args.tracks)
    patches = [log_mel_patches(y) for y in audio]
    classifiers = {}
    for device in ("CPU", "GPU"):
        with tf.device(f"/{device}:0"):   # the network's variables and its traced graph on that device
            classifiers[device] = GenreClassifier.load(runtime="keras")

    def run(device: str, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with tf.device(f"/{device}:0"):
            return classifiers[device].analyse_patches(batch)

    tf.config.experimental.enable_tensor_float_32_execution(False)
    worst_p = worst_e = 0.0
    for batch in patches:
        (p_cpu, e_cpu), (p_gpu, e_gpu) = run("CPU", batch), run("GPU", batch)
        worst_p = max(worst_p, float(np.abs(p_cpu - p_gpu).max()))
        worst_e = max(worst_e, float((np.linalg.norm(e_cpu - e_gpu, axis=1) / np.linalg.norm(e_cpu, axis=1)).max()))
    used = tf.config.experimental.get_memory_info("GPU:0")["peak"]
    print(f"outputs, GPU against CPU over {len(patches)} clips: probabilities differ by at most {worst_p:.2e} "
          f"(tolerance {PROBABILITY_ATOL:g}), embeddings by {worst_e:.2e} of their norm ({EMBEDDING_RTOL:g}); "
          f"GPU memory peak {used / 1e6:.0f} MB")
    ok = worst_p <= PROBABILITY_ATOL and worst_e <= EMBEDDING_RTOL and used > 0
    tf.config.experimental.enable_tensor_float_32_execution(True)

    pool = np.concatenate(patches)
    for size in args.batches:
        batch = np.resize(pool, (size,) + pool.shape[1:])
        rates = {d: size / median_seconds(lambda d=d: run(d, batch), repeats=5)[0] for d in ("GPU", "CPU")}
        print(f"network, {size} patches a batch: GPU {rates['GPU']:.0f} patches/s, CPU {rates['CPU']:.0f} patches/s")
    for device in ("GPU", "CPU"):
        def one_pass(device: str = device) -> None:
            for y in audio:
                track_features(y)
                with tf.device(f"/{device}:0"):
                    classifiers[device].analyse(y)

        seconds = median_seconds(one_pass, repeats=5, warmup=1)[0]
        print(f"preprocessing with the genre pass, one process: {device} {len(audio) / seconds:.1f} tracks/s")
    if not ok:
        print("gpu-check: FAILED: the GPU's outputs differ from the CPU's beyond tolerance, or it used no GPU memory")
        return 1
    print("gpu-check: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
