"""Training the genre head: blocks of ids never straddle the split; a run is deterministic."""
import json
import shutil

import numpy as np

from conftest import tone, write_audio
from model.classifier import GenreClassifier
from model.ingest import ingest
from model.params import GENRES
from model.store import Track
from model.train import block_folds, main as train_main
from model.weights import BACKBONE_FILE, DEFAULT_WEIGHTS_DIR, HEAD_INFO_FILE


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
        assert train_main(["--data", str(tmp_path / "data"), "--weights", str(weights),
                           "--folds", "2", "--epochs", "3", "--seed", "7"]) == 0
        out = capsys.readouterr().out
        assert "held-out track accuracy" in out and "confusion" in out
        info = json.loads((weights / HEAD_INFO_FILE).read_text())
        reports.append(info["held_out"])
        heads.append(GenreClassifier.load(weights).head.get_weights())
    assert reports[0] == reports[1] and reports[0]["tracks"] == 12
    assert all(np.array_equal(a, b) for a, b in zip(*heads))
