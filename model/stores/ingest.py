"""Building a feature store from a music collection, on every core (or a Ray cluster), resumable at any point."""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

from model.audio import numba_cache
from model.audio.decoding import AudioError, decode
from model.audio.features import track_features, warm_up
from model.index.fingerprint import fingerprint
from model.index.knn import chroma_summary
from model.progress import Progress
from model.stores.collection import Candidate, discover
from model.stores.feature_store import Entry, Store, Track


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


def process(mel_root: Path | None, candidate: Candidate) -> tuple[Entry, bool]:
    """Decode one file once and compute its store row (and, given `mel_root`, write its full features
    file under it); raises AudioError for bad audio. The one per-track function of every engine.
    Returns the row and whether the file broke off (what decoded of it is stored)."""
    audio = decode(candidate.path)
    features = track_features(audio.samples)
    if mel_root is not None:
        Store.write_features_at(mel_root, candidate.genre, candidate.id, **features)
    track = Track(id=candidate.id, genre=candidate.genre, source=str(candidate.path),
                  duration_s=round(audio.duration_s, 3), content_hash=audio.content_hash)
    return Entry(track, chroma_summary(features["chroma"]), fingerprint(features["mel"])), audio.truncated


def limit_threads() -> None:
    """One worker per core: nested BLAS or numba threads would only fight over the same cores."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)


def _init_worker() -> None:
    limit_threads()
    # A worker dies with the process that started it (even one killed with kill -9), instead of
    # finishing its queued tracks for a store nobody will commit them to.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_when_gone, args=(parent.sentinel,), daemon=True).start()


def _exit_when_gone(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


Result = Union[tuple[Entry, bool], str]   # a row and its truncation flag, or why the file was skipped
Record = Callable[[Candidate, Result], None]


def attempt(mel_root: Path | None, candidate: Candidate) -> Result:
    """`process`, with what makes a file unusable returned as the reason it is skipped."""
    try:
        return process(mel_root, candidate)
    except AudioError as error:
        return str(error)
    except Exception as error:  # a worker must report, never die: the run goes on with the other files
        return f"failed: {type(error).__name__}: {error}"


class EngineError(RuntimeError):
    """The engine that runs the per-track function could not start (e.g. Ray is not installed)."""


ENGINES = ("local", "ray")


def ingest(source: Path, data_dir: Path, workers: int | None = None, progress: bool = True,
           log_mel: bool | None = None, engine: str = "local", address: str | None = None) -> Summary:
    """Store every track under `source` that `data_dir` does not hold yet.

    `log_mel`: keep each track's full features (default: as the store was built; a new store keeps them).
    `engine`: "local" (processes on this machine) or "ray" (Ray Data tasks, on the Ray cluster at
    `address`, else on a local Ray started here); `workers`: processes, or concurrent Ray tasks."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    start = time.perf_counter()
    candidates, passed_over = discover(source)
    store = Store(data_dir, create=True, log_mel=log_mel)
    with store.writer():
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

        def record(candidate: Candidate, result: Result) -> None:
            if isinstance(result, tuple):
                entry, truncated = result
                store.add(entry)
                summary.stored += 1
                if truncated:
                    summary.truncated.append(str(candidate.path))
            else:
                summary.skipped.append((str(candidate.path), result))
            if bar:
                bar.update(note=candidate.id)

        mel_root = store.root if store.keeps_mel else None
        if todo and engine == "ray":
            from model.stores.ray_engine import run
            run(attempt, mel_root, todo, record, workers, address)
        elif todo:
            _run_local(mel_root, todo, record, workers)
    summary.seconds = time.perf_counter() - start
    return summary


def _run_local(mel_root: Path | None, todo: list[Candidate], record: Record, workers: int | None) -> None:
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    if workers == 1:
        for c in todo:
            record(c, attempt(mel_root, c))
        return
    if not numba_cache.seeded():
        warm_up()   # compiled once here and shared, rather than by every worker at once
    context = multiprocessing.get_context("spawn" if os.name == "nt" else "forkserver")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
    try:
        futures = {pool.submit(attempt, mel_root, c): c for c in todo}
        for future in as_completed(futures):
            record(futures[future], future.result())
    except BaseException:
        # Interrupted (Ctrl-C, docker stop's SIGTERM) or failed: the tracks not done are dropped at once, where
        # leaving the pool's `with` would wait for every queued one; what was recorded is kept by the writer.
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in multiprocessing.active_children():
            worker.terminate()
        raise
    pool.shutdown()
