"""The approximate k-NN index at catalogue sizes: build time, size on disk and in memory, start-up,
query latency inside a genre and over the whole library, and recall@3 against exact search.

    python benchmarks/bench_index.py [--tracks 100000 1000000] [--backends faiss usearch]

The library is synthetic (benchmarks/synthetic.py: the shared clips' chroma summaries as centres,
plus noise of each genre's spread), standardised as the service does. Queries are other vectors of
the same generator, searched with their own genre first. The service's backend is faiss
(model.index.ann); usearch's HNSW can be measured beside it up to --compare-up-to tracks. First, the size
from which a graph beats numpy's exhaustive search (model.params.ANN_MIN_ROWS).
Targets (for 10^6 tracks on 2 cores): recall@3 >= 0.95, query p50 <= 5 ms, start-up <= 10 s,
memory <= 1 GB for the index and the per-track records.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from benchmarks.common import REPO, verdict  # noqa: E402
from benchmarks.synthetic import clip_summaries, synthetic_library  # noqa: E402
from model.atomic import atomic_write  # noqa: E402
from model.index.ann import AnnKnn, save_index  # noqa: E402
from model.index.knn import K, GenreKnn, SpaceScaler  # noqa: E402
from model.params import HNSW_CONNECTIVITY, HNSW_EXPANSION_ADD, HNSW_EXPANSION_SEARCH  # noqa: E402
from model.stores.feature_store import Track  # noqa: E402
from serving import rss_mb  # noqa: E402

TARGETS = {"recall": 0.95, "p50_ms": 5.0, "start_s": 10.0, "memory_mb": 1024.0}
CROSSOVER_SIZES = (500, 1000, 2000, 5000, 10000, 20000, 50000)


class UsearchKnn(AnnKnn):
    """AnnKnn with usearch's HNSW (same M, ef_construction and ef) in place of faiss's: the backend
    measured beside it (`pip install usearch`; not a dependency: imported before onnxruntime, its
    library makes onnxruntime's import crash, docs/catalogue.md)."""

    def _build_graph(self, group, rows, progress):
        from usearch.index import Index
        graph = Index(ndim=self.X_.shape[1], metric="l2sq", dtype="f32", connectivity=self.connectivity,
                      expansion_add=self.expansion_add, expansion_search=self.expansion_search)
        graph.add(rows, self.X_[rows], threads=self.threads)
        return graph

    def _search_graph(self, group, x, count):
        return self.graphs_[group].search(x.astype(np.float32), count, threads=1).keys.astype(np.int64)


def save_usearch(path: Path, index: UsearchKnn) -> None:
    arrays = {"X": index.X_, "groups": np.array(json.dumps(list(index.rows_)))}
    for i, (group, rows) in enumerate(index.rows_.items()):
        arrays[f"rows_{i}"] = rows
        if group in index.graphs_:
            arrays[f"graph_{i}"] = np.frombuffer(index.graphs_[group].save(), dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def load_usearch(path: Path) -> UsearchKnn:
    from usearch.index import Index
    index = UsearchKnn()
    with np.load(path) as saved:
        index.X_ = saved["X"]
        index.rows_, index.graphs_ = {}, {}
        for i, group in enumerate(json.loads(str(saved["groups"]))):
            index.rows_[group] = saved[f"rows_{i}"]
            if f"graph_{i}" in saved.files:
                index.graphs_[group] = Index.restore(saved[f"graph_{i}"])
                index.graphs_[group].expansion_search = HNSW_EXPANSION_SEARCH
    return index


def load_in_new_process(backend: str, path: Path) -> dict:
    """Start-up as the service sees it: a fresh process loads the saved index (the file is in the page
    cache, as after a restart). Its load time and resident memory growth."""
    code = (f"import os, sys, time; sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]\n"
            "from benchmarks.bench_index import load_usearch\n"
            "from serving import rss_mb\n"
            "from model.index.ann import load_index\n"
            f"import {backend}\n"   # imported before the measurement: the service has it loaded
            "before = rss_mb(os.getpid()); start = time.perf_counter()\n"
            f"index = load_usearch({str(path)!r}) if {backend!r} == 'usearch' else load_index({str(path)!r}, KEY)\n"
            "print(time.perf_counter() - start, rss_mb(os.getpid()) - before)\n").replace("KEY", "{'bench': 1}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"load_s": float(out[-2]), "rss_mb": float(out[-1])}


def exact_top(X: np.ndarray, queries: np.ndarray, rows: np.ndarray, k: int = K) -> np.ndarray:
    """(queries, k) library rows nearest each query among `rows`, by one matrix product per block."""
    sub = X[rows].astype(np.float64)
    norms = (sub ** 2).sum(axis=1)
    top = []
    for start in range(0, len(queries), 32):   # 32 x 10^6 distances (256 MB) at a time
        q = queries[start:start + 32]
        d2 = norms[None, :] - 2 * q @ sub.T
        nearest = np.argpartition(d2, k, axis=1)[:, :k]
        top.append(rows[nearest])
    return np.vstack(top)


def timed_queries(index: GenreKnn, queries: np.ndarray, orders: list[list[str]]) -> tuple[list[float], list[list[int]]]:
    for q, order in zip(queries[:20], orders):   # warm-up
        index.query(q, order)
    seconds, picks = [], []
    for q, order in zip(queries, orders):
        start = time.perf_counter()
        found = index.query(q, order)
        seconds.append(time.perf_counter() - start)
        picks.append([p.index for p in found])
    return seconds, picks


def ms(seconds: list[float], q: float) -> float:
    return float(np.quantile(seconds, q)) * 1000


def recall(picks: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(p) & set(t)) / K for p, t in zip(picks, truth)]))


def crossover(X: np.ndarray) -> None:
    """Query time of one group searched exhaustively and by a graph, by the group's size."""
    print("one group, exhaustive (numpy) against graph (faiss) search, p50 of 200 queries:")
    queries = X[-200:] + 0.01
    for n in CROSSOVER_SIZES:
        rows = X[:n]
        times = {}
        for name, index in (("exact", GenreKnn(scope="library")), ("graph", AnnKnn(scope="library", min_rows=0))):
            index.fit(rows, [""] * n)
            seconds, _ = timed_queries(index, queries, [[]] * len(queries))
            times[name] = statistics.median(seconds) * 1000
        print(f"  {n:>6} rows: exact {times['exact']:.3f} ms, graph {times['graph']:.3f} ms")


def track_records_mb(n: int) -> float:
    """Resident memory of `n` Track records as the service's Library holds them (one per library row)."""
    gc.collect()
    before = rss_mb(os.getpid())
    tracks = [Track(id=f"track.{i:07d}", genre="country", source=f"/srv/music/country/track.{i:07d}.flac",
                    duration_s=30.0 + i % 7, content_hash=f"{i:064x}") for i in range(n)]
    grown = rss_mb(os.getpid()) - before
    del tracks
    return grown


def bench_size(n: int, backends: list[str], centres: np.ndarray, centre_genres: list[str], n_queries: int,
               folder: Path) -> None:
    raw, genres = synthetic_library(centres, centre_genres, n, seed=0)
    scaler = SpaceScaler().fit([raw])
    X = scaler.transform([raw]).astype(np.float32)
    del raw
    raw_queries, query_genres = synthetic_library(centres, centre_genres, n_queries, seed=1)
    queries = scaler.transform([raw_queries])
    names = sorted(set(genres))
    orders = [[g] + [h for h in names if h != g] for g in query_genres]
    truth = {"library": exact_top(X, queries, np.arange(n))}
    truth["genre"] = np.empty((n_queries, K), dtype=np.int64)
    for g in names:
        asked = np.flatnonzero(query_genres == g)
        truth["genre"][asked] = exact_top(X, queries[asked], np.flatnonzero(genres == g))
    print(f"\n== {n} tracks, {len(names)} genres, {n_queries} queries ==")
    for scope in ("genre", "library"):
        some = min(n_queries, 100 if n <= 100_000 else 20)   # exhaustive search of 10^6 rows: ~0.2 s a query
        seconds, _ = timed_queries(GenreKnn(scope=scope).fit(X, genres), queries[:some], orders[:some])
        print(f"exact search ({scope} scope), {some} queries: p50 {ms(seconds, 0.5):.2f} ms, p99 {ms(seconds, 0.99):.2f} ms")
    for backend in backends:
        print(f"-- {backend}: M={HNSW_CONNECTIVITY}, ef_construction={HNSW_EXPANSION_ADD}, ef={HNSW_EXPANSION_SEARCH}")
        for scope in ("genre", "library"):
            gc.collect()
            before = rss_mb(os.getpid())
            start = time.perf_counter()
            index = (UsearchKnn if backend == "usearch" else AnnKnn)(scope=scope).fit(X, genres)
            build_s = time.perf_counter() - start
            grown = rss_mb(os.getpid()) - before
            path = folder / f"{backend}-{scope}-{n}.npz"
            if backend == "usearch":
                save_usearch(path, index)
            else:
                save_index(path, scaler, index, {"bench": 1})
            loaded = load_in_new_process(backend, path)
            seconds, picks = timed_queries(index, queries, orders)
            print(f"{scope} scope ({len(index.graphs_)} graphs): build {build_s:.1f} s, "
                  f"on disk {path.stat().st_size / 2**20:.0f} MB, RSS growth: build {grown:.0f} MB, "
                  f"loaded {loaded['rss_mb']:.0f} MB")
            print("  " + verdict("start-up (load in a new process)", loaded["load_s"], TARGETS["start_s"], "s"))
            print("  " + verdict("query p50", ms(seconds, 0.5), TARGETS["p50_ms"], "ms") +
                  f"; p99 {ms(seconds, 0.99):.2f} ms")
            print("  " + verdict("recall@3 vs exact, %", 100 * recall(picks, truth[scope]), 100 * TARGETS["recall"],
                                 "%", higher_is_better=True))
            print("  " + verdict("memory, loaded index + track records", loaded["rss_mb"] + track_records_mb(n),
                                 TARGETS["memory_mb"], "MB"))
            del index
            path.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--backends", nargs="+", choices=("faiss", "usearch"), default=["faiss"],
                        help="faiss: the service's; usearch: measured beside it, if installed")
    parser.add_argument("--compare-up-to", type=int, default=100_000,
                        help="larger libraries are measured with the first backend only (default 100000)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--no-crossover", action="store_true", help="skip the exhaustive-against-graph sizes")
    args = parser.parse_args()
    try:
        centres, centre_genres = clip_summaries()
    except FileNotFoundError as error:
        print(f"bench_index: {error}", file=sys.stderr)
        return 1
    if not args.no_crossover:
        raw, _ = synthetic_library(centres, centre_genres, max(CROSSOVER_SIZES) + 200, seed=2)
        crossover(SpaceScaler().fit([raw]).transform([raw]).astype(np.float32))
    print(f"track records (Library.tracks), 10^6: {track_records_mb(1_000_000):.0f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.tracks:
            backends = args.backends if n <= args.compare_up_to else args.backends[:1]
            bench_size(n, backends, centres, centre_genres, args.queries, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
