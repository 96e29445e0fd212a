"""The Keras port of both checkpoints (MSD, MTT) against golden outputs of the wheel's original TF1
graphs (tests/golden/make_golden.py)."""
import json

import numpy as np
import pytest

from conftest import write_audio
from golden.make_golden import SYNTHETIC, SYNTHETIC_RATE, golden_path, synthetic_pcm
from model.audio.decoding import decode, resample
from model.audio.features import log_mel, patches
from model.network.classifier import load_backbone
from model.network.musicnn import EMBEDDING_DIM, N_TAGS
from model.network.weights import BACKBONE_CHECKPOINTS

GOLDEN = {name: json.loads(golden_path(name).read_text()) for name in BACKBONE_CHECKPOINTS}
TOLERANCE = 1e-3


@pytest.fixture(scope="module", params=sorted(BACKBONE_CHECKPOINTS))
def backbone(request):
    return request.param, load_backbone(name=request.param)


def outputs(backbone, path) -> tuple[np.ndarray, np.ndarray]:
    audio = decode(path)
    # Every consecutive patch, as the reference cuts them.
    result = backbone(patches(log_mel(resample(audio.samples, audio.sample_rate))), training=False)
    return result["tags"].numpy().mean(axis=0), result["embedding"].numpy().mean(axis=0)


def check(backbone, path, key: str) -> None:
    name, network = backbone
    tags, embedding = outputs(network, path)
    golden = GOLDEN[name][key]
    assert tags.shape == (N_TAGS,) and embedding.shape == (EMBEDDING_DIM,)
    np.testing.assert_allclose(tags, golden["tags"], atol=TOLERANCE, rtol=0)
    # The 200-d embedding's values reach ~10: compare it relative to its scale.
    np.testing.assert_allclose(embedding, golden["embedding"], atol=TOLERANCE * max(1.0, np.abs(embedding).max()))


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_port_matches_the_original_graph_on_generated_audio(backbone, tmp_path, name):
    check(backbone, write_audio(tmp_path / name, synthetic_pcm(name), SYNTHETIC_RATE), f"synthetic/{name}")


@pytest.mark.parametrize("key", sorted(k for k in GOLDEN["msd"] if not k.startswith("synthetic/")))
def test_port_matches_the_original_graph_on_real_clips(backbone, shared_gtzan, key):
    check(backbone, shared_gtzan / key, key)


@pytest.mark.parametrize("name", sorted(BACKBONE_CHECKPOINTS))
def test_golden_values_are_not_trivial(name):
    golden = GOLDEN[name]
    tags = np.array([golden[k]["tags"] for k in golden])
    assert tags.shape == (len(golden), N_TAGS) and tags.max() > 0.3 and np.ptp(tags, axis=0).max() > 0.2


def test_the_two_checkpoints_differ():
    msd, mtt = (np.array([GOLDEN[name][k]["tags"] for k in sorted(GOLDEN["msd"])]) for name in ("msd", "mtt"))
    assert np.abs(msd - mtt).max() > 0.1
