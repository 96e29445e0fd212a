"""The embeddings cache: reused for unchanged tracks and weights, recomputed otherwise."""
import numpy as np

from conftest import tone, write_audio
from model.network.embeddings import patch_embeddings
from model.stores.feature_store import Store
from model.stores.ingest import ingest


def test_cache_is_keyed_by_weights_patch_selection_and_content(tmp_path):
    source = tmp_path / "src"
    for i, seconds in enumerate((2.0, 7.0, 20.0)):
        write_audio(source / "rock" / f"rock.{i:05d}.wav", tone(seconds, seed=i), 22050)
    ingest(source, tmp_path / "data", workers=1, progress=False)
    store = Store(tmp_path / "data")
    tracks = store.tracks()
    calls = []

    def embed(batch):
        calls.append(len(batch))
        return batch.mean(axis=(1, 2))[:, None] * np.ones((1, 4), np.float32)

    first = patch_embeddings(store, tracks, embed, "weightsA", None, progress=False)
    assert [len(e) for e in first] == [1, 2, 6] and sum(calls) == 9
    again = patch_embeddings(Store(tmp_path / "data"), tracks, embed, "weightsA", None, progress=False)
    assert sum(calls) == 9 and all(np.array_equal(a, b) for a, b in zip(first, again))
    patch_embeddings(store, tracks, embed, "weightsA", 5, progress=False)  # another patch selection
    patch_embeddings(store, tracks, embed, "weightsB", None, progress=False)  # other weights
    assert sum(calls) == 9 + (1 + 2 + 5) + 9
    # A track whose content changed (same id) is recomputed; the others are not.
    write_audio(source / "rock" / "rock.00000.wav", tone(2.0, seed=99), 22050)
    for shard in (tmp_path / "data" / "rock").glob("part-*.parquet"):   # the store forgets the genre's tracks
        shard.unlink()
    ingest(source, tmp_path / "data", workers=1, progress=False)
    before = sum(calls)
    patch_embeddings(Store(tmp_path / "data"), Store(tmp_path / "data").tracks(), embed, "weightsA", None,
                     progress=False)
    assert sum(calls) - before == 1
