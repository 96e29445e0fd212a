"""The network's two runtimes: the ONNX export computes what the Keras models compute (within 1e-4
of each output's scale), a stale or missing export is refused, and the service on ONNX Runtime never
imports TensorFlow."""
import json
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from conftest import REPO, tone
from model.audio.features import log_mel_patches
from model.network.classifier import GenreClassifier, load_backbone
from model.network.head import HeadInput, new_head
from model.network.weights import WeightsError
from model.network.weights import BACKBONE_CHECKPOINTS, DEFAULT_WEIGHTS_DIR, HEAD_FILE, HEAD_INFO_FILE, ONNX_FILE
from model.params import MAX_PATCHES, SAMPLE_RATE
from model.stores.demo_library import write_clips
from model.stores.ingest import ingest

from model.network.keras_runtime import KerasNetwork

TOLERANCE = 1e-4


def close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Within TOLERANCE of the output's own scale (pooled features reach ~60, embeddings ~15)."""
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE * max(1.0, float(np.abs(expected).max())))


def patches_of(seconds: float, seed: int) -> np.ndarray:
    return log_mel_patches(tone(seconds, SAMPLE_RATE, seed=seed), MAX_PATCHES)


@pytest.fixture(scope="module")
def exporter():
    """model.network.onnx_export, where the `export` extra (onnx) is installed: serving needs no onnx."""
    pytest.importorskip("onnx")
    from model.network import onnx_export

    return onnx_export


@pytest.fixture(scope="module")
def runtimes():
    return {runtime: GenreClassifier.load(runtime=runtime) for runtime in ("onnx", "keras")}


@pytest.mark.parametrize("name", sorted(BACKBONE_CHECKPOINTS))
def test_the_exported_backbone_matches_keras_pooled_and_embedding(exporter, name):
    backbone = load_backbone(name=name)
    session = ort.InferenceSession(exporter.backbone_model(backbone).SerializeToString(), providers=["CPUExecutionProvider"])
    batch = np.concatenate([patches_of(30.0, 1), patches_of(2.5, 2)])
    pooled, embedding = session.run(["pooled", "embedding"], {"log_mel": batch})
    expected = backbone(batch, training=False)
    close(pooled, expected["pooled"].numpy())
    close(embedding, expected["embedding"].numpy())
    assert np.ptp(embedding, axis=0).max() > 0.1   # not a constant that would match anything


@pytest.mark.parametrize("seconds, seed", [(30.0, 3), (12.0, 4), (2.5, 5), (600.0, 6)])
def test_the_shipped_export_gives_the_keras_probabilities_and_embeddings(runtimes, seconds, seed):
    batch = patches_of(seconds, seed)
    (onnx_probs, onnx_embedding), (keras_probs, keras_embedding) = (
        runtimes[r].analyse_patches(batch) for r in ("onnx", "keras"))
    close(onnx_probs, keras_probs)
    close(onnx_embedding, keras_embedding)
    assert abs(float(onnx_probs.sum()) - 1) < 1e-5


@pytest.mark.parametrize("head_input", [
    HeadInput(backbones=("msd", "mtt"), layer="pooled", summaries=("mean",)),
    HeadInput(backbones=("msd",), layer="pooled", summaries=("mean",), hidden=200),   # a fine-tuned back-end
])
def test_a_head_on_pooled_features_is_exported_as_keras_computes_it(exporter, head_input):
    head = new_head(head_input)
    rng = np.random.default_rng(0)
    head.set_weights([rng.normal(0, 0.01, w.shape).astype(np.float32) for w in head.get_weights()])
    backbones = {name: load_backbone(name=name) for name in dict.fromkeys(("msd",) + head_input.backbones)}
    model = exporter.classifier_model(backbones, head, head_input, temperature=0.8, metadata={})
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = patches_of(12.0, 7)
    probs, embedding = session.run(["probabilities", "embedding"], {"log_mel": batch})
    keras_probs, keras_embedding = KerasNetwork(backbones, head, head_input, temperature=0.8)(batch)
    close(probs, keras_probs)
    close(embedding, keras_embedding)
    assert probs.max() - probs.min() > 0.01   # a head that tells the genres apart, so the check has teeth


def test_a_track_of_one_patch_is_divided_by_its_own_temperature_in_both_runtimes(exporter):
    head_input = HeadInput(backbones=("msd",), layer="pooled", summaries=("mean",), hidden=200)
    head = new_head(head_input)
    rng = np.random.default_rng(1)
    head.set_weights([rng.normal(0, 0.01, w.shape).astype(np.float32) for w in head.get_weights()])
    backbones = {"msd": load_backbone(name="msd")}

    def both(temperature, one_patch, batch):
        model = exporter.classifier_model(backbones, head, head_input, temperature, {}, one_patch)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return (session.run(["probabilities"], {"log_mel": batch})[0],
                KerasNetwork(backbones, head, head_input, temperature, one_patch)(batch)[0])

    one, several = patches_of(2.5, 3), patches_of(12.0, 7)
    assert len(one) == 1 and len(several) > 1
    for batch, alone in ((one, 2.0), (several, 0.5)):   # the temperature that batch must be divided by
        expected = both(alone, None, batch)
        for probs in both(0.5, 2.0, batch):
            close(probs, expected[0])
            close(probs, expected[1])
    assert not np.allclose(both(0.5, None, one)[0], both(2.0, None, one)[0], atol=1e-3)   # the check has teeth


def test_random_patches_in_batches_as_the_store_embeds_them(runtimes):
    batch = np.random.default_rng(0).uniform(0, 3, size=(64, 187, 96)).astype(np.float32)
    for onnx_out, keras_out in zip(*(runtimes[r].analyse_patches(batch) for r in ("onnx", "keras"))):
        close(onnx_out, keras_out)


def test_the_shipped_export_is_what_the_export_command_writes(exporter, tmp_path):
    import onnx

    weights = shutil.copytree(DEFAULT_WEIGHTS_DIR, tmp_path / "weights")
    (weights / ONNX_FILE).unlink()
    written = onnx.load(str(exporter.export(weights)))
    shipped = onnx.load(str(DEFAULT_WEIGHTS_DIR / ONNX_FILE))
    assert written.graph == shipped.graph and written.metadata_props == shipped.metadata_props
    assert "Music Technology Group" in {p.key: p.value for p in shipped.metadata_props}["licence"]


def test_the_shipped_heads_weights_are_stored_in_half_precision_in_both_files():
    import h5py
    import onnx

    with h5py.File(DEFAULT_WEIGHTS_DIR / HEAD_FILE) as f:
        stored: list = []
        f.visititems(lambda _, item: stored.append(item.dtype) if isinstance(item, h5py.Dataset) else None)
    assert stored and set(stored) == {np.dtype(np.float16)}
    graph = onnx.load(str(DEFAULT_WEIGHTS_DIR / ONNX_FILE)).graph
    kinds = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.data_type) for i in graph.initializer}
    assert kinds["head/backend/kernel/half"] == kinds["head/genre/kernel/half"] == np.float16
    assert "head/backend/kernel" not in kinds   # only the half copy is in the file; it is cast when loaded


@pytest.mark.parametrize("change", [
    lambda i: i.update(temperature=2 * i["temperature"]),
    lambda i: i["input"].update(loop_short=not i["input"]["loop_short"]),
])
def test_an_export_of_another_head_record_is_refused(tmp_path, change):
    weights = shutil.copytree(DEFAULT_WEIGHTS_DIR, tmp_path / "weights")
    info = json.loads((weights / HEAD_INFO_FILE).read_text())
    change(info)
    (weights / HEAD_INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(WeightsError, match="export it again with python -m model.network.onnx_export"):
        GenreClassifier.load(weights, runtime="onnx")


def test_an_export_of_other_weights_is_refused_and_a_missing_one_named(tmp_path):
    weights = shutil.copytree(DEFAULT_WEIGHTS_DIR, tmp_path / "weights")
    shutil.copyfile(weights / "mtt_musicnn.weights.h5", weights / "msd_musicnn.weights.h5")
    with pytest.raises(WeightsError, match="made from other weights"):
        GenreClassifier.load(weights, runtime="onnx")
    (weights / ONNX_FILE).unlink()
    with pytest.raises(WeightsError, match="no ONNX export.*SOUNDALIKE_RUNTIME=keras"):
        GenreClassifier.load(weights, runtime="onnx")


def test_an_unknown_runtime_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SOUNDALIKE_RUNTIME", "torch")
    with pytest.raises(WeightsError, match="no runtime 'torch': SOUNDALIKE_RUNTIME is one of onnx, keras"):
        GenreClassifier.load()


# Runs in a fresh interpreter: this test process has TensorFlow loaded already.
_SERVE_WITHOUT_TENSORFLOW = """
import sys
from pathlib import Path
from app import create_app
root = Path(sys.argv[1])
app = create_app({"DATA_DIR": root / "data", "UPLOAD_DIR": root / "uploads", "RUNTIME": sys.argv[2]})
assert app.test_client().get("/api/health").status_code == 200
print(sorted(m for m in ("tensorflow", "keras", "onnx") if m in sys.modules))
# Slow imports the service does without (model.audio.features, model.stores.feature_store): 1.4 s of a start
# (librosa.feature's rhythm module, for the tempo, is loaded alone).
print(sorted(m for m in ("pandas", "librosa.feature.spectral", "librosa.core.pitch") if m in sys.modules))
"""


@pytest.mark.parametrize("runtime, loaded", [("onnx", []), ("keras", ["keras", "tensorflow"])])
def test_the_service_on_onnx_runtime_never_imports_tensorflow(tmp_path, runtime, loaded):
    write_clips(tmp_path / "audio", per_genre=1, seconds=4.0)
    ingest(tmp_path / "audio", tmp_path / "data", workers=1, progress=False)
    run = subprocess.run([sys.executable, "-c", _SERVE_WITHOUT_TENSORFLOW, str(tmp_path), runtime], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    runtime_modules, slow_imports = (json.loads(line.replace("'", '"')) for line in run.stdout.strip().splitlines()[-2:])
    assert runtime_modules == loaded
    if runtime == "onnx":   # TensorFlow itself imports pandas
        assert slow_imports == []
