"""Training the genre head: blocks of ids never straddle the split; a run is deterministic and
reports the balanced held-out figures and the calibration."""
import json
import shutil

import numpy as np

from conftest import tone, write_audio
from model.network.classifier import GenreClassifier
from model.network.weights import BACKBONE_FILE, DEFAULT_WEIGHTS_DIR, HEAD_INFO_FILE
from model.params import GENRES
from model.stores.feature_store import Track
from model.stores.ingest import ingest
from model.train import block_folds, main as train_main


def test_folds_are_contiguous_blocks_of_ids_in_every_genre():
    tracks = [Track(f"{g}.{i:05d}", g, "", 30.0, "") for g in ("blues", "jazz") for i in [3, 0, 7, 1, 9, 4, 2, 8]]
    folds = block_folds(tracks, 4)
    for genre in ("blues", "jazz"):
        by_id = sorted((t.id, f) for t, f in zip(tracks, folds) if t.genre == genre)
        sequence = [f for _, f in by_id]
        assert sequence == sorted(sequence) and set(sequence) == {0, 1, 2, 3}


def test_training_command_is_deterministic_and_writes_a_usable_head(tmp_path, capsys):
    source = tmp_path / "src"
    for g in GENRES[:3]:
        for i in range(4):
            write_audio(source / g / f"{g}.{i:05d}.wav", tone(3.5, seed=10 * GENRES.index(g) + i), 22050)
    ingest(source, tmp_path / "data", workers=1, progress=False)
    reports, heads = [], []
    for run in range(2):
        weights = tmp_path / f"weights{run}"
        weights.mkdir()
        shutil.copyfile(DEFAULT_WEIGHTS_DIR / BACKBONE_FILE, weights / BACKBONE_FILE)
        assert train_main(["--data", str(tmp_path / "data"), "--weights", str(weights), "--folds", "2"]) == 0
        out = capsys.readouterr().out
        assert "balanced accuracy" in out and "confusion" in out and "temperature" in out
        info = json.loads((weights / HEAD_INFO_FILE).read_text())
        reports.append(info["held_out"]["all"])
        heads.append(GenreClassifier.load(weights, runtime="keras").network.head.get_weights())
        batch = np.random.default_rng(run).uniform(0, 3, size=(3, 187, 96)).astype(np.float32)
        # The service's ONNX export is written with the head, and computes what the head computes.
        for a, b in zip(*(GenreClassifier.load(weights, runtime=r).analyse_patches(batch) for r in ("onnx", "keras"))):
            np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, np.abs(b).max()), rtol=0)
    assert reports[0]["tracks"] == 12 and set(reports[0]["per_genre_recall"]) == set(GENRES[:3])
    assert abs(reports[0]["balanced_accuracy"] - reports[1]["balanced_accuracy"]) < 1e-9
    assert abs(reports[0]["ece"] - reports[1]["ece"]) < 1e-6
    for a, b in zip(*heads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_the_head_folds_the_standardised_regression_into_one_layer():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from model.evaluate import softmax
    from model.train import fit_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) * [1, 10, 0.1, 1, 3] + [0, 5, 0, -2, 0]
    for labels in (np.where(x[:, 0] > 0, 3, 7), np.where(x[:, 0] > 0.5, 3, np.where(x[:, 1] > 5, 7, 1))):
        weight = np.ones(len(x))
        scaled = StandardScaler().fit(x).transform(x)
        expected = LogisticRegression(C=0.5, max_iter=5000).fit(scaled, labels).predict_proba(scaled)
        probs = softmax(fit_head(x, labels, weight, 0.5)(x).numpy())
        classes = np.unique(labels)
        np.testing.assert_allclose(probs[:, classes], expected, atol=1e-4)
        assert probs[:, np.setdiff1d(np.arange(len(GENRES)), classes)].max() < 1e-6
