"""The store's rows (Parquet shards): what they hold, atomic shard writes, merging, stores without
log-mels, and the service serving one (kill -9 of a run: tests/test_preprocess.py, both kinds of store)."""
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from model.index.fingerprint import Fingerprint, fingerprint
from model.index.knn import chroma_summary
from model.stores import feature_store
from model.stores.demo_library import write_clips
from model.stores.feature_store import MERGE_AT, Entry, Store, StoreError, Track
from model.stores.ingest import ingest
from test_preprocess import make_collection


def entry(track_id: str, genre: str = "rock", seed: int = 0) -> Entry:
    rng = np.random.default_rng(seed)
    track = Track(track_id, genre, f"/music/{track_id}.flac", 30.0, f"hash-{track_id}")
    hashes = rng.integers(0, 2 ** 32, size=int(rng.integers(1, 50)), dtype=np.uint32)
    return Entry(track, rng.random(36), Fingerprint(hashes, np.arange(len(hashes), dtype=np.int32)))


def shards(root, genre="rock"):
    return sorted((root / genre).glob("part-*.parquet"))


def test_rows_hold_the_summaries_and_fingerprints_of_the_stored_features(tmp_path):
    source = make_collection(tmp_path / "src", genres=("jazz", "metal"), per_genre=3, seconds=6.0)
    ingest(source, tmp_path / "full", workers=1, progress=False)
    full = Store(tmp_path / "full")
    tracks = full.tracks()
    features = [full.load(t) for t in tracks]
    assert np.allclose(full.chroma_summaries(tracks), [chroma_summary(f["chroma"]) for f in features])
    for stored, f in zip(full.fingerprints(tracks), features):
        computed = fingerprint(f["mel"])
        assert np.array_equal(stored.hashes, computed.hashes) and np.array_equal(stored.times, computed.times)
    # Without log-mels: the same rows, no features files, and a clear error where they are needed.
    summary = ingest(source, tmp_path / "rows", workers=2, progress=False, log_mel=False)
    assert summary.stored == 6
    rows = Store(tmp_path / "rows")
    assert not rows.keeps_mel and not list((tmp_path / "rows").rglob("*.npz"))
    assert [(t.id, t.content_hash, t.duration_s) for t in rows.tracks()] == \
           [(t.id, t.content_hash, t.duration_s) for t in tracks]
    assert np.allclose(rows.chroma_summaries(tracks), full.chroma_summaries(tracks), atol=1e-6)
    with pytest.raises(StoreError, match="--keep-mel"):
        rows.load(tracks[0])
    # A run may not mix the two kinds in one store.
    with pytest.raises(StoreError, match="without log-mels"):
        ingest(source, tmp_path / "rows", workers=1, progress=False, log_mel=True)
    assert ingest(source, tmp_path / "rows", workers=1, progress=False).already == 6


def test_a_shard_write_that_fails_midway_leaves_no_shard(tmp_path, monkeypatch):
    store = Store(tmp_path, create=True, log_mel=False)

    def broken(table, where, **kwargs):
        where.write(b"PAR1 half a shard")
        raise OSError("disk full")

    monkeypatch.setattr(feature_store.pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        with store.writer():   # which writes what was added when it ends
            store.prepare("rock")
            store.add(entry("rock.00000"))
    monkeypatch.undo()
    assert shards(tmp_path) == [] and not list(tmp_path.rglob("*.tmp"))
    assert len(Store(tmp_path)) == 0   # the row is computed again by the next run
    store = Store(tmp_path)
    with store.writer():
        store.add(entry("rock.00000"))
    assert [t.id for t in Store(tmp_path).tracks()] == ["rock.00000"]


def test_small_shards_are_merged_and_every_row_is_read_once(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_store, "FLUSH_S", 0.0)   # a shard per row
    store = Store(tmp_path, create=True, log_mel=False)
    entries = [entry(f"rock.{i:05d}", seed=i) for i in range(3 * MERGE_AT)]
    with store.writer():
        store.prepare("rock")
        for e in entries:
            store.add(e)
    assert len(shards(tmp_path)) < MERGE_AT
    # A merge killed after writing its shard, before removing its parts, leaves rows twice: read once.
    parts = shards(tmp_path)
    shutil.copy(parts[0], tmp_path / "rock" / "part-99999999.parquet")
    store = Store(tmp_path)
    tracks = store.tracks()
    assert [t.id for t in tracks] == [e.track.id for e in entries]
    assert np.allclose(store.chroma_summaries(tracks), [e.chroma_summary for e in entries])
    assert all(np.array_equal(f.hashes, e.fingerprint.hashes) and f.hashes.dtype == np.uint32
               for f, e in zip(store.fingerprints(tracks), entries))
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in shards(tmp_path)) > len(entries)


def test_a_store_of_another_format_or_fingerprint_parameters_is_a_clear_error(tmp_path, monkeypatch):
    Store(tmp_path / "a", create=True)
    monkeypatch.setattr(feature_store, "fingerprint_params", lambda: {"fan_out": 99})
    with pytest.raises(StoreError, match="fan_out"):
        Store(tmp_path / "a")
    monkeypatch.undo()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text('{"format": 1, "params": {}}')
    with pytest.raises(StoreError, match="format 1.*rebuild"):
        Store(tmp_path / "old")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    write_clips(folder, per_genre=2, seconds=8.0)
    return folder


def test_the_service_serves_a_store_without_log_mels_as_it_serves_one_with_them(tmp_path, clips):
    from model.audio.decoding import decode
    from model.network.classifier import GenreClassifier
    from model.service.library import Library
    from model.service.settings import from_env

    weights = from_env().weights_dir
    classifier = GenreClassifier.load(weights)
    libraries = {}
    for keep in (True, False):
        ingest(clips, tmp_path / str(keep), workers=2, progress=False, log_mel=keep)
        libraries[keep] = Library(Store(tmp_path / str(keep)), classifier, weights)
    # The embedding space is served from each row's stored embedding: log-mels or not, the same picks.
    embedding = {keep: Library(Store(tmp_path / str(keep)), classifier, weights, features="embedding")
                 for keep in (True, False)}
    for track in libraries[True].tracks[::5]:
        assert [r.track.id for r in embedding[True].similar(track.id, 3)] == \
               [r.track.id for r in embedding[False].similar(track.id, 3)]
    for track in libraries[True].tracks[::4]:
        full, rows = (libraries[keep].analyse(decode(track.source)) for keep in (True, False))
        assert rows.match is not None and rows.match.id == track.id == full.match.id
        assert [r.track.id for r in rows.recommendations] == [r.track.id for r in full.recommendations]
        assert np.allclose([r.distance for r in rows.recommendations], [r.distance for r in full.recommendations],
                           atol=1e-6)
