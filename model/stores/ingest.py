"""Building a feature store from a music collection, on every core, resumable at any point."""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from model.audio import numba_cache
from model.audio.decoding import AudioError, decode
from model.stores.collection import Candidate, discover
from model.audio.features import track_features, warm_up
from model.progress import Progress
from model.stores.feature_store import Store, Track


@dataclass
class Summary:
    stored: int = 0
    already: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    truncated: list[str] = field(default_factory=list)             # stored on what decodes of them
    seconds: float = 0.0

    def report(self) -> str:
        rate = self.stored / self.seconds if self.seconds > 0 else 0.0
        lines = [f"stored {self.stored} tracks, {self.already} already stored, {len(self.skipped)} skipped, "
                 f"in {self.seconds:.1f} s ({rate:.1f} tracks/s)"]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped]
        lines += [f"  truncated {path}: stored on what decodes of it" for path in self.truncated]
        return "\n".join(lines)


def process(store_root: Path, candidate: Candidate) -> tuple[Track, bool]:
    """Decode one file once, compute its features and write them; raises AudioError for bad audio.
    Returns the track and whether its file broke off (what decoded of it is stored)."""
    audio = decode(candidate.path)
    Store.write_features_at(store_root, candidate.genre, candidate.id, **track_features(audio.samples))
    track = Track(id=candidate.id, genre=candidate.genre, source=str(candidate.path),
                  duration_s=round(audio.duration_s, 3), content_hash=audio.content_hash)
    return track, audio.truncated


def _init_worker() -> None:
    # One process per core: nested BLAS or numba threads would only fight over the same cores.
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    # A worker dies with the process that started it (even one killed with kill -9), instead of
    # finishing its queued tracks for a store nobody will commit them to.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_when_gone, args=(parent.sentinel,), daemon=True).start()


def _exit_when_gone(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _attempt(store_root: Path, candidate: Candidate) -> tuple[Track, bool] | str:
    try:
        return process(store_root, candidate)
    except AudioError as error:
        return str(error)
    except Exception as error:  # a worker must report, never die: the run goes on with the other files
        return f"failed: {type(error).__name__}: {error}"


def ingest(source: Path, data_dir: Path, workers: int | None = None, progress: bool = True) -> Summary:
    """Store every track under `source` that `data_dir` does not hold yet."""
    start = time.perf_counter()
    candidates, passed_over = discover(source)
    store = Store(data_dir, create=True)
    with store.writer():
        return _ingest(store, candidates, passed_over, workers, progress, start)


def _ingest(store: Store, candidates: list[Candidate], passed_over: list[tuple[Path, str]], workers: int | None,
            progress: bool, start: float) -> Summary:
    summary = Summary(skipped=[(str(p), reason) for p, reason in passed_over])
    todo = []
    for c in candidates:
        if store.find(c.id) is None:
            todo.append(c)
        else:
            summary.already += 1
    for genre in sorted({c.genre for c in todo}):
        store.prepare(genre)
    bar = Progress(len(todo), label="preprocess") if progress and todo else None

    def record(candidate: Candidate, result: tuple[Track, bool] | str) -> None:
        if isinstance(result, tuple):
            track, truncated = result
            store.commit(track)
            summary.stored += 1
            if truncated:
                summary.truncated.append(str(candidate.path))
        else:
            summary.skipped.append((str(candidate.path), result))
        if bar:
            bar.update(note=candidate.id)

    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    if workers == 1:
        for c in todo:
            record(c, _attempt(store.root, c))
    else:
        if not numba_cache.seeded():
            warm_up()   # compiled once here and shared, rather than by every worker at once
        context = multiprocessing.get_context("spawn" if os.name == "nt" else "forkserver")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            futures = {pool.submit(_attempt, store.root, c): c for c in todo}
            for future in as_completed(futures):
                record(futures[future], future.result())
    summary.seconds = time.perf_counter() - start
    return summary
