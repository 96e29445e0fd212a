"""The Keras port against golden outputs of the wheel's original TF1 graph (tests/golden/make_golden.py)."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_audio
from golden.make_golden import SYNTHETIC, SYNTHETIC_RATE, synthetic_pcm
from model.audio import decode, resample
from model.features import log_mel, patches
from model.musicnn import EMBEDDING_DIM, N_TAGS

GOLDEN = json.loads((Path(__file__).parent / "golden" / "musicnn_msd.json").read_text())
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def backbone(classifier):
    return classifier.backbone


def outputs(backbone, path: Path) -> tuple[np.ndarray, np.ndarray]:
    audio = decode(path)
    # Every consecutive patch, as the reference cuts them.
    result = backbone(patches(log_mel(resample(audio.samples, audio.sample_rate))), training=False)
    return result["tags"].numpy().mean(axis=0), result["embedding"].numpy().mean(axis=0)


def check(backbone, path: Path, key: str) -> None:
    tags, embedding = outputs(backbone, path)
    golden = GOLDEN[key]
    assert tags.shape == (N_TAGS,) and embedding.shape == (EMBEDDING_DIM,)
    np.testing.assert_allclose(tags, golden["tags"], atol=TOLERANCE, rtol=0)
    # The 200-d embedding's values reach ~10: compare it relative to its scale.
    np.testing.assert_allclose(embedding, golden["embedding"], atol=TOLERANCE * max(1.0, np.abs(embedding).max()))


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_port_matches_the_original_graph_on_generated_audio(backbone, tmp_path, name):
    check(backbone, write_audio(tmp_path / name, synthetic_pcm(name), SYNTHETIC_RATE), f"synthetic/{name}")


@pytest.mark.parametrize("key", sorted(k for k in GOLDEN if not k.startswith("synthetic/")))
def test_port_matches_the_original_graph_on_real_clips(backbone, shared_gtzan, key):
    check(backbone, shared_gtzan / key, key)


def test_golden_values_are_not_trivial():
    tags = np.array([GOLDEN[k]["tags"] for k in GOLDEN])
    assert tags.shape == (len(GOLDEN), N_TAGS) and tags.max() > 0.3 and np.ptp(tags, axis=0).max() > 0.2
