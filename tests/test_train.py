"""Training the genre head: cross-validation grouped by artist (never one artist on both sides), features
that cannot tell a clip's length, a deterministic run that reports the artist-grouped figures, the
calibration and the unsure threshold, and writes a head the service runs."""
import csv
import json
import shutil

import h5py
import numpy as np
import pytest

from conftest import tone, write_audio
from model.corpus import artist_folds, artist_groups, gtzan_dev
from model.network.classifier import GenreClassifier
from model.network.head import SUMMARIES, summarise
from model.network.weights import BACKBONE_FILE, DEFAULT_WEIGHTS_DIR, HEAD_FILE, HEAD_INFO_FILE
from model.params import GENRES
import model.train
from model.train import cross_validate, main as train_main


def test_no_head_is_fitted_on_an_artist_it_is_then_tested_on(monkeypatch):
    rng = np.random.default_rng(0)
    artists = rng.integers(0, 12, 60)
    genres = artists % 3
    mask = np.eye(len(GENRES), dtype=bool)[genres]
    folds = artist_folds(artists, genres, 4)
    # Each clip's features carry its number, so the fit can say which clips it was given.
    served = [np.full((2, 3), float(i)) for i in range(60)]
    trained_on = []
    real_fit = model.train.fit

    def spy(rows, masks, weight, c):
        trained_on.append({int(round(r[0])) for r in rows})
        return real_fit(rows, masks, weight, c)

    monkeypatch.setattr(model.train, "fit", spy)
    cross_validate(served, None, mask, folds, 1.0, log=lambda line: None)
    assert len(trained_on) == 4
    for fold, clips in enumerate(trained_on):
        held = set(np.flatnonzero(folds == fold))
        assert not clips & held and not {artists[i] for i in clips} & {artists[i] for i in held}


def test_the_head_reads_nothing_that_tells_a_clips_length():
    # A 2-3 s excerpt is one patch, a long clip several: drawn from one genre's patches, both must give
    # the head the same features on average, or it learns length for genre (a spread over patches is
    # zero for one patch: issue 15's trap, where held-out long rock clips were called other genres).
    patches = np.random.default_rng(0).normal(1.0, 0.5, size=(4000, 8)).astype(np.float32)
    one = np.mean([np.asarray(summarise(p[None], SUMMARIES)) for p in patches[:2000]], axis=0)
    five = np.mean([np.asarray(summarise(patches[i:i + 5], SUMMARIES)) for i in range(2000, 4000, 5)], axis=0)
    np.testing.assert_allclose(one, five, atol=0.05)


def write_corpus(root, rows, header):
    root.mkdir(parents=True)
    for row in rows:
        seconds, seed = row.pop("_seconds"), row.pop("_seed")
        write_audio(root / row["file"], tone(seconds, seed=seed), 22050)
    with open(root / "MANIFEST.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("recipe", ["--no-fine-tune", "--fine-tune"])
def test_training_is_deterministic_reports_by_artist_and_writes_a_usable_head(tmp_path, capsys, recipe):
    genres = GENRES[:3]
    gtzan = [{"file": f"{g}/{g}.{i:05d}.flac", "genre": g, "artist": f"{g} artist {i % 3}" if i < 6 else "",
              "duration_s": 2.5 if i == 0 else 3.5, "_seconds": 2.5 if i == 0 else 3.5, "_seed": 10 * k + i}
             for k, g in enumerate(genres) for i in range(7)]
    write_corpus(tmp_path / "gtzan", gtzan, ["file", "genre", "artist", "duration_s"])
    more = [{"file": f"partial/m{i}.flac", "genre": "", "candidates": "blues|country", "artist": f"other {i}",
             "duration_s": 3.5, "_seconds": 3.5, "_seed": 100 + i} for i in range(3)]
    write_corpus(tmp_path / "more", more, ["file", "genre", "candidates", "artist", "duration_s"])
    infos, heads = [], []
    for run in range(2):
        weights = tmp_path / f"weights{run}"
        weights.mkdir()
        shutil.copyfile(DEFAULT_WEIGHTS_DIR / BACKBONE_FILE, weights / BACKBONE_FILE)
        args = ["--gtzan", str(tmp_path / "gtzan"), "--more", str(tmp_path / "more"), "--weights", str(weights),
                "--cache", str(tmp_path / "cache"), "--folds", "3", "--sets", recipe]
        assert train_main(args) == 0
        out = capsys.readouterr().out
        assert "grouped by artist" in out and "confusion" in out and "temperature" in out and "unsure" in out
        info = json.loads((weights / HEAD_INFO_FILE).read_text())
        infos.append(info)
        assert ("fine_tune" in info["training"]) == (recipe == "--fine-tune")
        heads.append(GenreClassifier.load(weights, runtime="keras").network.head.get_weights())
        # Stored in half precision (half the file), read back into float32.
        with h5py.File(weights / HEAD_FILE) as f:
            stored: list = []
            f.visititems(lambda _, item: stored.append(item.dtype) if isinstance(item, h5py.Dataset) else None)
        assert set(stored) == {np.dtype(np.float16)} and len(stored) == len(heads[-1])
        assert {w.dtype for w in heads[-1]} == {np.dtype(np.float32)}
        batch = np.random.default_rng(run).uniform(0, 3, size=(3, 187, 96)).astype(np.float32)
        # The service's ONNX export is written with the head, and computes what the head computes.
        for a, b in zip(*(GenreClassifier.load(weights, runtime=r).analyse_patches(batch) for r in ("onnx", "keras"))):
            np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, np.abs(b).max()), rtol=0)
    assert "gtzan 10s_or_longer" not in infos[0]["held_out_by_artist"]   # every clip here is shorter than 10 s
    excerpts = infos[0]["held_out_by_artist"]["gtzan 2-3s"]
    assert excerpts["tracks"] == 3 and set(excerpts["per_genre_count"]) == set(genres)
    assert infos[0]["trained_on"]["several_candidates"] == 3 and 0.2 <= infos[0]["unsure"]["threshold"] <= 0.95
    assert infos[0]["held_out_by_artist"] == infos[1]["held_out_by_artist"]
    assert infos[0]["temperature"] == infos[1]["temperature"]
    for a, b in zip(*heads):
        np.testing.assert_array_equal(a, b)
    # Every artist's clips were held out together (3 artists per genre and the unknown ones on their own).
    groups = artist_groups(gtzan_dev(tmp_path / "gtzan"))
    assert len(np.unique(groups)) == 3 * 3 + 3


def test_a_clips_augmented_patches_share_its_weight():
    served = [np.zeros((3, 2)), np.ones((1, 2)), np.full((2, 2), 2.0)]
    crops = [np.zeros((3, 2)), np.ones((1, 2)), np.full((2, 2), 2.0)]
    augmented = [a + 0.5 for a in served]
    mask = np.eye(len(GENRES), dtype=bool)[[0, 0, 1]]
    rows, masks, weight = model.train.training_sets(served, crops, mask, augmented)
    # clip 0: served, 3 crops, augmented; clip 1 (one patch: its own crop): served, augmented; clip 2: 1 + 2 + 1
    assert [len(r) for r in rows] == [3, 1, 1, 1, 3, 1, 1, 2, 1, 1, 2]
    assert np.array_equal(rows[4], augmented[0]) and np.array_equal(rows[10], augmented[2])
    plain = model.train.training_sets(served, crops, mask)[2]
    # Each clip's share of the whole is what it was without them; genres weigh the same (clip 2 alone is genre 1).
    for with_aug, without in [(weight[:5], plain[:4]), (weight[5:7], plain[4:5]), (weight[7:], plain[5:])]:
        assert np.isclose(with_aug.sum() / weight.sum(), without.sum() / plain.sum())
    assert np.isclose(weight[:7].sum(), weight[7:].sum()) and masks[7:, 1].all()
