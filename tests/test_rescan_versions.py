"""Rescans after an upgrade: new network weights, a new genre head, new chroma, fingerprint or log-mel
parameters re-analyse only the parts of each row that depend on them, say so, and a store of other
parameters is never read as if it were of these."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import tone, write_audio
from model.network.classifier import GenreClassifier
from model.network.weights import network_digest
from model.params import GENRES
from model.service.settings import from_env
from model.stores import feature_store, ingest as ingest_module
from model.stores.feature_store import MANIFEST, Store, StoreError, store_params
from model.stores.ingest import ingest
from tagged_media import song, write_tagged

# Three tracks placed by their genre tag, three by the classifier (no tag), one by its folder.
FILES = [("A/One/01 Intro.flac", {"genre": "Rock"}), ("A/One/02 Two.flac", {}), ("B/Two/01 Intro.flac", {}),
         ("B/Two/02 Four.flac", {"genre": "Reggae"}), ("Jazz/03 Five.flac", {}), ("six.flac", {"genre": "Pop"}),
         ("seven.flac", {})]


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("upgrade") / "music"
    for n, (relative, tags) in enumerate(FILES):
        write_tagged(root / relative, song(4.0, seed=300 + n, rate=22050), 22050, tags)
    return root


@pytest.fixture(scope="module")
def built(music, tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("upgrade-data") / "data"
    ingest(music, data, workers=1, progress=False)
    return data


@pytest.fixture
def counted(monkeypatch) -> Counter:
    """How often a rescan decodes a file and computes each part of a row (workers=1: in this process)."""
    calls = Counter()

    def count(name, function):
        def counting(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return counting

    for name in ("decode", "chromagram", "fingerprint"):
        monkeypatch.setattr(f"model.stores.ingest.{name}", count(name, getattr(ingest_module, name)))
    monkeypatch.setattr(GenreClassifier, "analyse_patches", count("network", GenreClassifier.analyse_patches))
    return calls


def _rows(data: Path) -> dict[str, tuple]:
    """Each track's row, by path: (track, chroma summary, fingerprint hashes, probabilities, embedding)."""
    store = Store(data)
    tracks = store.tracks()
    return {t.path: (t, s, f.hashes, p, e) for t, s, f, p, e in zip(
        tracks, store.chroma_summaries(tracks), store.fingerprints(tracks), store.vectors(tracks, "probabilities"),
        store.vectors(tracks, "embedding"))}


def _other_params(monkeypatch, **changes) -> None:
    """This version's store parameters, as an upgrade would change them (a key of "fingerprint." changes the
    fingerprint's own)."""
    params = json.loads(json.dumps(store_params()))
    for key, value in changes.items():
        if key.startswith("fingerprint_"):
            params["fingerprint"][key[len("fingerprint_"):]] = value
        else:
            params[key] = value
    monkeypatch.setattr(feature_store, "store_params", lambda: json.loads(json.dumps(params)))


@pytest.mark.parametrize("change", ["weights", "head"])
def test_new_network_weights_re_analyse_only_the_network_part_and_move_only_tracks_the_classifier_placed(
        music, built, tmp_path, monkeypatch, counted, change):
    data = tmp_path / "data"
    shutil.copytree(built, data)
    before = _rows(data)
    backbone, head = network_digest(from_env().weights_dir).split("-")
    new = f"{backbone}-retrained" if change == "head" else "another-backbone"
    monkeypatch.setattr("model.stores.ingest.network_digest", lambda weights_dir: new)
    # Weights whose probabilities are the old ones shifted by a genre: every track placed by the classifier moves.
    analyse_patches = GenreClassifier.analyse_patches
    monkeypatch.setattr(GenreClassifier, "analyse_patches",
                        lambda self, batch: (lambda p, e: (np.roll(p, 1, axis=-1), e))(*analyse_patches(self, batch)))
    counted.clear()
    summary = ingest(music, data, workers=1, progress=False)
    assert (summary.stored, summary.updated, summary.removed, summary.already) == (0, len(FILES), 0, 0)
    cause = "a new genre head" if change == "head" else "new network weights"
    assert (f"re-analysed {len(FILES)} tracks for {cause}: the network's embedding and genre probabilities only"
            in summary.report())
    # Decoded once each for the network's patches; no chromagram or fingerprint computed.
    assert (counted["decode"], counted["chromagram"], counted["fingerprint"]) == (len(FILES), 0, 0)
    after = _rows(data)
    moved = 0
    for path, (track, summary_, hashes, probabilities, embedding) in after.items():
        old_track, old_summary, old_hashes, old_probabilities, old_embedding = before[path]
        assert track.network == new and track.id == old_track.id and track.route == old_track.route
        np.testing.assert_array_equal(summary_, old_summary)
        np.testing.assert_array_equal(hashes, old_hashes)
        np.testing.assert_allclose(probabilities, np.roll(old_probabilities, 1), atol=1e-5)
        if track.route == "model":   # placed again by the new probabilities
            assert track.genre == GENRES[int(np.argmax(probabilities))] != old_track.genre
            moved += 1
        else:                        # a folder or a tag placed it: it stays
            assert track.genre == old_track.genre
    assert moved == 3 and "3 tracks placed by the classifier moved genre" in summary.report()
    # Done: nothing is left to re-analyse.
    assert ingest(music, data, workers=1, progress=False).already == len(FILES)


@pytest.mark.parametrize("changes, parts, cause", [
    ({"feature_version": 99}, ("chromagram", "fingerprint"), "new chroma and fingerprint parameters"),
    ({"chroma_hop": 1024}, ("chromagram",), "new chroma parameters"),
    ({"fingerprint_fan_out": 7}, ("fingerprint",), "new fingerprint parameters"),
])
def test_new_feature_parameters_re_analyse_only_the_parts_they_change(music, built, tmp_path, monkeypatch, counted,
                                                                       changes, parts, cause):
    data = tmp_path / "data"
    shutil.copytree(built, data)
    before = _rows(data)
    _other_params(monkeypatch, **changes)
    # A store of other parameters is never read as if it were of these: only a rescan opens it.
    changed = "fingerprint" if next(iter(changes)).startswith("fingerprint_") else next(iter(changes))
    with pytest.raises(StoreError, match=f"{changed}=.*run preprocess.py on its collection again"):
        Store(data)
    counted.clear()
    summary = ingest(music, data, workers=1, progress=False)
    assert (summary.stored, summary.updated, summary.already) == (0, len(FILES), 0)
    assert f"re-analysed {len(FILES)} tracks for {cause}:" in summary.report()
    assert counted["network"] == 0 and all(counted[p] == len(FILES) for p in parts)
    assert all(counted[p] == 0 for p in {"chromagram", "fingerprint"} - set(parts))
    # The manifest now records the new parameters, and every row says what it was computed with.
    assert json.loads((data / MANIFEST).read_text())["params"] == feature_store.store_params()
    after = _rows(data)
    for path, (track, *_, probabilities, embedding) in after.items():
        assert track.analysis == Store(data).analysis_key and track.genre == before[path][0].genre
        np.testing.assert_array_equal(probabilities, before[path][3])
        np.testing.assert_array_equal(embedding, before[path][4])
    assert ingest(music, data, workers=1, progress=False).already == len(FILES)


def test_new_log_mel_parameters_re_analyse_everything(music, built, tmp_path, monkeypatch, counted):
    data = tmp_path / "data"
    shutil.copytree(built, data)
    _other_params(monkeypatch, hop_length=128)
    summary = ingest(music, data, workers=1, progress=False)
    assert summary.updated == len(FILES) and f"updated: {len(FILES)} for new log-mel parameters" in summary.report()
    assert counted["chromagram"] == counted["fingerprint"] == counted["network"] == len(FILES)
    assert Store(data).manifest["params"]["hop_length"] == 128


def test_an_unfinished_rescan_leaves_the_store_refused_and_another_collection_keeps_it_so(music, built, tmp_path,
                                                                                           monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(built, data)
    other = tmp_path / "other"
    write_audio(other / "rock" / "rock.00000.wav", tone(3.0, seed=5), 22050)
    ingest(other, data, workers=1, progress=False)
    _other_params(monkeypatch, chroma_hop=1024)
    summary = ingest(music, data, workers=1, progress=False)
    assert summary.updated == len(FILES)
    # The other collection's track is still of the old parameters: the store is not read until it is rescanned.
    with pytest.raises(StoreError, match="chroma_hop"):
        Store(data)
    assert ingest(other, data, workers=1, progress=False).updated == 1
    assert len(Store(data)) == len(FILES) + 1


def _model_placed_clips(root: Path) -> Path:
    for n in range(4):
        write_audio(root / f"clip{n}.wav", tone(4.0, seed=40 + n), 22050)
    return root


def test_a_store_with_log_mels_re_analyses_the_network_from_them_without_decoding(tmp_path, monkeypatch, counted):
    music = _model_placed_clips(tmp_path / "music")
    data = tmp_path / "data"
    ingest(music, data, workers=1, progress=False, log_mel=True, genres="model")
    before = {t.id: t for t in Store(data).tracks()}
    mels = {t.id: Store(data).load(t)["mel"] for t in before.values()}
    monkeypatch.setattr("model.stores.ingest.network_digest", lambda weights_dir: "another-backbone")
    analyse_patches = GenreClassifier.analyse_patches
    monkeypatch.setattr(GenreClassifier, "analyse_patches",
                        lambda self, batch: (lambda p, e: (np.roll(p, 3, axis=-1), e))(*analyse_patches(self, batch)))
    counted.clear()
    summary = ingest(music, data, workers=1, progress=False)
    assert summary.updated == 4 and counted["decode"] == 0 and counted["chromagram"] == counted["fingerprint"] == 0
    store = Store(data)
    for track in store.tracks():   # moved with their features file, which reads as before
        assert track.genre != before[track.id].genre
        np.testing.assert_array_equal(store.load(track)["mel"], mels[track.id])
    # A new chroma recipe: the excerpt is decoded again, the stored log-mel kept.
    _other_params(monkeypatch, chroma_hop=1024)
    counted.clear()
    assert ingest(music, data, workers=1, progress=False).updated == 4
    assert counted["decode"] == counted["chromagram"] == 4 and counted["network"] == counted["fingerprint"] == 0
    # What the move left behind (the features files of the genres they left) is cleared by the next run.
    assert len(list(data.glob("*/features/*.npz"))) == 4
    # A features file gone: its track is analysed whole again, not lost.
    store = Store(data)
    store.features_path(store.tracks()[0].genre, store.tracks()[0].id).unlink()
    monkeypatch.setattr("model.stores.ingest.network_digest", lambda weights_dir: "third-backbone")
    summary = ingest(music, data, workers=1, progress=False)
    assert (summary.updated, summary.removed, summary.skipped) == (4, 0, [])
    store = Store(data)
    assert len(store) == 4 and all(store.features_path(t.genre, t.id).exists() for t in store.tracks())
