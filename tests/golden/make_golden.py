"""Regenerate tests/golden/musicnn_<backbone>.json: MusiCNN outputs of the wheel's original TF1 graphs.

    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn && unzip -o /tmp/musicnn/*.whl -d /tmp/musicnn
    python tests/golden/make_golden.py /tmp/musicnn/musicnn [msd|mtt ...]   (default: both)

It runs ../shared/tools/musicnn_reference.py (the oracle) on generated clips (tests/conftest.py's
`tone`, so the test can regenerate them without the shared data) and on a few shared GTZAN clips.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from conftest import SHARED_GTZAN, tone, write_audio  # noqa: E402
from model.network.weights import BACKBONE_CHECKPOINTS  # noqa: E402

# (seconds, seed) of the generated clips: shorter than a patch, a few patches, an odd length.
SYNTHETIC = {"synth_a.wav": (2.0, 0), "synth_b.wav": (10.0, 1), "synth_c.wav": (7.3, 2)}
SYNTHETIC_RATE = 22050
SHARED = ["blues/blues.00000.flac", "classical/classical.00041.flac", "hiphop/hiphop.00003.flac",
          "metal/metal.00010.flac", "pop/pop.00012.flac", "reggae/reggae.00005.flac"]
REFERENCE = SHARED_GTZAN.parent / "tools" / "musicnn_reference.py"


def synthetic_pcm(name: str) -> np.ndarray:
    seconds, seed = SYNTHETIC[name]
    return (tone(seconds, SYNTHETIC_RATE, seed=seed) * 32767).astype(np.int16)


def golden_path(backbone: str) -> Path:
    return HERE / f"musicnn_{backbone}.json"


def main() -> None:
    wheel_dir = sys.argv[1]
    for backbone in sys.argv[2:] or list(BACKBONE_CHECKPOINTS):
        make(wheel_dir, backbone)


def make(wheel_dir: str, backbone: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "audio"
        for name in SYNTHETIC:
            write_audio(root / "synthetic" / name, synthetic_pcm(name), SYNTHETIC_RATE)
        for relative in SHARED:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).symlink_to(SHARED_GTZAN / relative)
        out = Path(tmp) / "ref.npz"
        subprocess.run([sys.executable, str(REFERENCE), wheel_dir, str(out), str(root)], check=True,
                       env={**os.environ, "MUSICNN_MODEL": BACKBONE_CHECKPOINTS[backbone]})
        ref = np.load(out)
        golden = {f"{g}/{n}": {"tags": t.round(7).tolist(), "embedding": e.round(6).tolist()}
                  for g, n, t, e in zip(ref["genre"], ref["name"], ref["tags"], ref["pen"])}
    golden_path(backbone).write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {len(golden)} golden entries to {golden_path(backbone)}")


if __name__ == "__main__":
    main()
