"""The approximate index: recall against exact search, the same picks where it must be exact, and its
saved file (round trip, stale or damaged files refused, atomic writes); the `index` command and the
service's use of the saved index."""
import io
import subprocess
import sys

import numpy as np
import pytest

import model.index.ann as ann
from benchmarks.synthetic import synthetic_library
from conftest import REPO
from model.audio.decoding import decode
from model.index.ann import AnnKnn, IndexMismatch, load_index, save_index
from model.index.build import build_index, index_key, index_path, main as index_main
from model.index.knn import GenreKnn, SpaceScaler
from model.progress import Progress
from model.stores.demo_library import build
from model.stores.feature_store import Store

GENRES = ["blues", "jazz", "rock", "pop", "metal"]


@pytest.fixture(scope="module")
def library():
    """4000 clustered vectors (100 centres, 5 genres, noise of each genre's spread), standardised."""
    rng = np.random.default_rng(0)
    centre_genres = [GENRES[i % len(GENRES)] for i in range(100)]
    centres = rng.standard_normal((100, 36)) + 2 * rng.standard_normal((len(GENRES), 36))[np.arange(100) % 5]
    raw, genres = synthetic_library(centres, centre_genres, 4200, spread=0.5, seed=1)
    scaler = SpaceScaler().fit([raw[:4000]])
    X = scaler.transform([raw])
    return scaler, X[:4000], list(genres[:4000]), X[4000:], list(genres[4000:])


@pytest.mark.parametrize("scope", ["genre", "library"])
def test_recall_at_3_against_exact_search(library, scope):
    _, X, genres, queries, query_genres = library
    exact = GenreKnn(scope=scope).fit(X, genres)
    approximate = AnnKnn(scope=scope, min_rows=100, threads=1).fit(X, genres)
    assert len(approximate.graphs_) == (len(GENRES) if scope == "genre" else 1)   # the graphs are searched
    found = []
    for q, genre in zip(queries, query_genres):
        order = [genre] + [g for g in GENRES if g != genre]
        truth = {p.index for p in exact.query(q, order)}
        found.append(len(truth & {p.index for p in approximate.query(q, order)}) / 3)
    assert np.mean(found) >= 0.95


def test_same_picks_as_exact_search_where_the_graphs_are_small():
    # Graphs of a few rows are searched whole: the genre order, the fall-back to the next genres, genres
    # the order does not name, genres of fewer than k tracks and excluded rows must come out as GenreKnn's.
    rng = np.random.default_rng(2)
    for case in range(200):
        n = int(rng.integers(1, 30))
        genres = list(rng.choice(["a", "b", "c", "d"], size=n))
        X = rng.standard_normal((n, 4))
        order = list(rng.permutation(["a", "b", "c"])[:rng.integers(0, 4)])
        exclude = set(rng.choice(n, size=rng.integers(0, min(n, 5) + 1), replace=False).tolist())
        x = rng.standard_normal(4)
        for scope in ("genre", "library"):
            want = GenreKnn(scope=scope).fit(X, genres).query(x, order, exclude)
            got = AnnKnn(scope=scope, min_rows=1, threads=1).fit(X, genres).query(x, order, exclude)
            assert [p.index for p in got] == [p.index for p in want], (case, scope)
            assert np.allclose([p.distance for p in got], [p.distance for p in want], rtol=1e-5)


def test_fall_back_and_exclusion_through_graphs():
    genres = ["jazz"] + ["rock"] * 3 + ["pop"] * 3
    X = np.arange(7, dtype=float)[:, None] * [1.0, 0.0]
    index = AnnKnn(min_rows=1, threads=1).fit(X, genres)
    assert len(index.graphs_) == 3
    assert [p.index for p in index.query(np.zeros(2), ["jazz", "pop", "rock"])] == [0, 4, 5]
    assert [p.index for p in index.query(np.zeros(2), ["rock", "pop"], exclude={1, 2})] == [3, 4, 5]


def test_building_graphs_shows_progress(library, monkeypatch):
    _, X, genres, _, _ = library
    shown = io.StringIO()
    monkeypatch.setattr(ann, "Progress", lambda total, label: Progress(total, label, stream=shown))
    AnnKnn(min_rows=100).fit(X, genres, progress=True)
    assert all(f"index: graph of {g}" in shown.getvalue() for g in GENRES)


def test_a_saved_index_loads_with_the_same_picks(library, tmp_path):
    scaler, X, genres, queries, query_genres = library
    index = AnnKnn(min_rows=100, threads=1).fit(X, genres)
    save_index(tmp_path / "index.npz", scaler, index, {"tracks_digest": "abc", "scope": "genre"})
    loaded_scaler, loaded = load_index(tmp_path / "index.npz", {"tracks_digest": "abc", "scope": "genre"})
    assert loaded.graphs_.keys() == index.graphs_.keys() and loaded.X_.dtype == np.float32
    assert np.allclose(loaded_scaler.transform([queries]), scaler.transform([queries]))
    for q, genre in zip(queries[:50], query_genres):
        assert loaded.query(q, [genre], exclude={0}) == index.query(q, [genre], exclude={0})


def test_a_stale_missing_or_damaged_index_is_refused_with_the_reason(library, tmp_path):
    scaler, X, genres, _, _ = library
    path = tmp_path / "index.npz"
    with pytest.raises(IndexMismatch, match="no saved index"):
        load_index(path, {})
    save_index(path, scaler, AnnKnn(min_rows=100).fit(X, genres), {"tracks_digest": "abc", "scope": "genre"})
    with pytest.raises(IndexMismatch, match="stale.*tracks_digest: saved 'abc', needed 'xyz'"):
        load_index(path, {"tracks_digest": "xyz", "scope": "genre"})
    with pytest.raises(IndexMismatch, match="stale.*features: saved None, needed 'mix'"):
        load_index(path, {"tracks_digest": "abc", "scope": "genre", "features": "mix"})
    with np.load(path) as saved:
        arrays = dict(saved)
    graph = next(name for name in arrays if name.startswith("graph_"))
    arrays[graph] = arrays[graph][:len(arrays[graph]) // 2]   # a graph cut short inside an intact file
    np.savez(path, **arrays)
    with pytest.raises(IndexMismatch, match="unreadable"):
        load_index(path, {"tracks_digest": "abc", "scope": "genre"})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(IndexMismatch, match="unreadable"):
        load_index(path, {"tracks_digest": "abc", "scope": "genre"})


def test_a_save_that_fails_midway_leaves_the_previous_index_and_no_partial_file(library, tmp_path, monkeypatch):
    scaler, X, genres, queries, _ = library
    path = tmp_path / "index.npz"
    old = AnnKnn(scope="library", min_rows=100).fit(X[:2000], genres[:2000])
    save_index(path, scaler, old, {"v": 1})

    def write_half_then_fail(f, **arrays):
        f.write(b"PK\x03\x04" + bytes(10000))
        raise OSError("No space left on device")

    monkeypatch.setattr(ann.np, "savez", write_half_then_fail)
    with pytest.raises(OSError, match="No space"):
        save_index(path, scaler, AnnKnn(scope="library", min_rows=100).fit(X, genres), {"v": 2})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["index.npz"]
    _, loaded = load_index(path, {"v": 1})
    assert len(loaded.X_) == 2000 and loaded.query(queries[0]) == old.query(queries[0])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    data = tmp_path_factory.mktemp("store")
    build(data, per_genre=2, seconds=4.0, workers=1)
    return Store(data)


def test_the_index_command_saves_an_index_for_the_store_and_keeps_a_current_one(store, capsys):
    assert index_main(["--data", str(store.root), "--scope", "genre"]) == 0
    path = index_path(store.root, "chroma", "genre")
    _, index = load_index(path, index_key(store.tracks(), "chroma", "genre", None))
    assert len(index.X_) == len(store)
    written = path.stat().st_mtime_ns
    assert build_index(store.root, "genre") == path and path.stat().st_mtime_ns == written
    assert "up to date" in capsys.readouterr().err
    # Another store's tracks: the saved index is not theirs.
    with pytest.raises(IndexMismatch, match="tracks_digest"):
        load_index(path, index_key(store.tracks()[1:], "chroma", "genre", None))


def test_the_index_command_fails_cleanly_without_a_store(tmp_path, capsys):
    assert index_main(["--data", str(tmp_path / "nowhere")]) == 2
    assert "no feature store" in capsys.readouterr().err


def test_the_service_loads_the_saved_index_instead_of_fitting_one(store, monkeypatch):
    from model.network.classifier import GenreClassifier
    from model.service import library as service
    from model.service.settings import from_env

    build_index(store.root, "library", progress=False)
    saved = load_index(index_path(store.root, "chroma", "library"),
                       index_key(store.tracks(), "chroma", "library", None))[1]

    def no_fitting(*args, **kwargs):
        raise AssertionError("the index was fitted, not loaded")

    monkeypatch.setattr(service, "fit_index", no_fitting)
    weights = from_env().weights_dir
    library = service.Library(store, GenreClassifier.load(weights), weights, scope="library")
    assert np.array_equal(library.index.X_, saved.X_)
    track = store.tracks()[0]
    analysis = library.analyse(decode(track.source))
    assert analysis.match == track and len(analysis.recommendations) == 3


@pytest.mark.parametrize("first, then", [("model.index.ann", "model.network.onnx_runtime"),
                                         ("model.network.onnx_runtime", "model.index.ann")])
def test_the_index_and_the_network_runtime_import_together_in_either_order(first, then):
    # The service loads both; with usearch as the graph library, importing it before onnxruntime
    # crashed the process (segmentation fault), so this runs in a fresh process each way.
    code = f"import {first}, {then}; import numpy as np; print('ok')"
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
