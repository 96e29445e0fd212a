"""Approximate k-NN for large libraries: GenreKnn's search, each large genre searched by an HNSW graph.

The genre scope, the fall-back to the next genres and the exclusion of rows are GenreKnn's
(`query` is inherited); only the search inside one genre (or, with scope "library", the whole
library) changes. A genre of at least `min_rows` tracks gets a graph (faiss's HNSW, squared
Euclidean, float32); a smaller one is searched exhaustively, as GenreKnn does, where that is as
fast and exact. A graph cannot leave rows out, so it is asked for as many more candidates as
there are rows to exclude, and those are dropped.

A fitted index and the scaler that made its vectors are saved to one file, written atomically,
with a key (parameters, feature space, the store's tracks) that loading checks.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence, TypeVar

import faiss
import numpy as np

from model.atomic import atomic_write
from model.index.knn import K, GenreKnn, Pick, SpaceScaler
from model.params import ANN_MIN_ROWS, HNSW_CONNECTIVITY, HNSW_EXPANSION_ADD, HNSW_EXPANSION_SEARCH
from model.progress import Progress

# A graph saved by another major version of faiss may not load: the key records it.
BACKEND = f"faiss {faiss.__version__.split('.')[0]}"
T = TypeVar("T")
ADD_BLOCK = 20000   # rows added to a graph between two progress reports


class IndexMismatch(RuntimeError):
    """A saved index that is missing, unreadable, or built for other tracks or parameters."""


class AnnKnn(GenreKnn):
    """GenreKnn (same fit/query, same picks up to the graphs' misses) with an HNSW graph for each
    group of at least `min_rows` rows. The library matrix X_ is kept in float32."""

    dtype = np.float32

    def __init__(self, k: int = K, scope: str = "genre", min_rows: int = ANN_MIN_ROWS,
                 connectivity: int = HNSW_CONNECTIVITY, expansion_add: int = HNSW_EXPANSION_ADD,
                 expansion_search: int = HNSW_EXPANSION_SEARCH, threads: int = 0) -> None:
        super().__init__(k, scope)
        self.min_rows, self.connectivity = min_rows, connectivity
        self.expansion_add, self.expansion_search = expansion_add, expansion_search
        self.threads = threads   # building only (0: OpenMP's default, every core); a query of one vector runs
                                 # on its caller's thread

    def fit(self, X: np.ndarray, genres: Sequence[str], progress: bool = False) -> "AnnKnn":
        """`progress`: show a bar while each graph is built (minutes for 10^6 rows)."""
        super().fit(X, genres)
        self.graphs_ = {group: self._build_graph(group, rows, progress) for group, rows in self.rows_.items()
                        if len(rows) >= self.min_rows}
        return self

    def _build_graph(self, group: str, rows: np.ndarray, progress: bool) -> faiss.IndexHNSWFlat:
        # The graph's ids are positions in `rows` (faiss numbers what it is given from 0).
        graph = faiss.IndexHNSWFlat(self.X_.shape[1], self.connectivity)
        graph.hnsw.efConstruction, graph.hnsw.efSearch = self.expansion_add, self.expansion_search
        if self.threads:
            faiss.omp_set_num_threads(self.threads)
        bar = Progress(len(rows), f"index: graph of {group or 'the library'}") if progress else None
        for start in range(0, len(rows), ADD_BLOCK):
            block = rows[start:start + ADD_BLOCK]
            graph.add(np.ascontiguousarray(self.X_[block], dtype=np.float32))
            if bar:
                bar.update(len(block))
        return graph

    def _search_graph(self, group: str, x: np.ndarray, count: int) -> np.ndarray:
        """Library rows of about the `count` nearest in `group`'s graph."""
        positions = self.graphs_[group].search(x[None].astype(np.float32), count)[1][0]
        return self.rows_[group][positions[positions >= 0]]   # -1: fewer found than asked

    def _nearest(self, group: str, x: np.ndarray, wanted: int, exclude: Collection[int]) -> list[Pick]:
        if group not in self.graphs_:
            return super()._nearest(group, x, wanted, exclude)
        keys = self._search_graph(group, x, min(wanted + len(exclude), len(self.rows_[group])))
        keys = keys[~np.isin(keys, list(exclude))] if exclude else keys
        # Distances as the exhaustive search computes them, so that picks of both kinds sort together.
        distances = np.linalg.norm(self.X_[keys] - x, axis=1)
        order = np.argsort(distances, kind="stable")[:wanted]
        return [Pick(int(keys[i]), float(distances[i])) for i in order]


def save_index(path: Path, scaler: SpaceScaler, index: AnnKnn, key: Mapping) -> None:
    """Write `scaler` and `index` to one .npz file at `path` (a temporary file, then renamed), under
    `key`: what `load_index` will demand (JSON-serialisable)."""
    groups = list(index.rows_)
    meta = {"k": index.k, "scope": index.scope, "min_rows": index.min_rows, "connectivity": index.connectivity,
            "expansion_add": index.expansion_add, "groups": groups, "scaler_weights": scaler.weights,
            "scaler_factor": [float(f) for f in scaler.factor_]}
    arrays = {"key": np.array(json.dumps(dict(key), sort_keys=True)), "meta": np.array(json.dumps(meta)),
              "X": index.X_}
    for i, group in enumerate(groups):
        arrays[f"rows_{i}"] = index.rows_[group]
        if group in index.graphs_:
            arrays[f"graph_{i}"] = faiss.serialize_index(index.graphs_[group])
    for j, (mean, scale) in enumerate(zip(scaler.mean_, scaler.scale_)):
        arrays[f"scaler_mean_{j}"], arrays[f"scaler_scale_{j}"] = mean, scale
    with atomic_write(Path(path)) as f:
        np.savez(f, **arrays)


def _differences(recorded: Mapping, expected: Mapping) -> list[str]:
    return [f"{name}: saved {recorded.get(name)!r}, needed {value!r}" for name, value in expected.items()
            if recorded.get(name) != value] + [f"{name}: saved, not expected" for name in recorded
                                                if name not in expected]


def _check_key(path: Path, saved: Mapping[str, np.ndarray], key: Mapping) -> None:
    expected = json.loads(json.dumps(dict(key), sort_keys=True))   # as JSON gives it back: tuples become lists
    differences = _differences(json.loads(str(saved["key"])), expected)
    if differences:
        raise IndexMismatch(f"the saved index at {path} is stale ({'; '.join(differences)})")


def check_index(path: Path, key: Mapping) -> None:
    """Raise IndexMismatch unless `path` holds an index saved under `key` (reads its key alone)."""
    _open(path, lambda saved: _check_key(path, saved, key))


def load_index(path: Path, key: Mapping, expansion_search: int = HNSW_EXPANSION_SEARCH) -> tuple[SpaceScaler, AnnKnn]:
    """The scaler and index `save_index` wrote at `path`; IndexMismatch if there is none, or if it
    was saved under another key (other tracks, parameters or feature space)."""
    def read(saved: Mapping[str, np.ndarray]) -> tuple[SpaceScaler, AnnKnn]:
        _check_key(path, saved, key)
        meta = json.loads(str(saved["meta"]))
        index = AnnKnn(meta["k"], meta["scope"], meta["min_rows"], meta["connectivity"], meta["expansion_add"],
                       expansion_search)
        index.X_ = saved["X"]
        index.rows_, index.graphs_ = {}, {}
        for i, group in enumerate(meta["groups"]):
            index.rows_[group] = saved[f"rows_{i}"]
            if f"graph_{i}" in saved.files:
                graph = faiss.deserialize_index(saved[f"graph_{i}"])
                graph.hnsw.efSearch = expansion_search
                index.graphs_[group] = graph
        scaler = SpaceScaler(meta["scaler_weights"])
        n_spaces = len(meta["scaler_factor"])
        scaler.mean_ = [saved[f"scaler_mean_{j}"] for j in range(n_spaces)]
        scaler.scale_ = [saved[f"scaler_scale_{j}"] for j in range(n_spaces)]
        scaler.factor_ = meta["scaler_factor"]
        return scaler, index

    return _open(path, read)


def _open(path: Path, read: Callable[[Mapping[str, np.ndarray]], T]) -> T:
    path = Path(path)
    if not path.exists():
        raise IndexMismatch(f"no saved index at {path}")
    try:
        with np.load(path, allow_pickle=False) as saved:
            return read(saved)
    except IndexMismatch:
        raise
    # A damaged file: cut short, an array missing, a graph faiss cannot read (RuntimeError).
    except (OSError, ValueError, KeyError, RuntimeError, zipfile.BadZipFile) as error:
        raise IndexMismatch(f"the saved index at {path} is unreadable: {error}") from error
