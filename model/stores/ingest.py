"""Building a feature store from a music collection, on every core (or a Ray cluster), resumable at any point."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from model.audio.decoding import AudioError, decode
from model.audio.features import track_features
from model.index.fingerprint import fingerprint
from model.index.knn import chroma_summary
from model.progress import Progress
from model.stores import local_engine
from model.stores.collection import Candidate, discover
from model.stores.engine import Result, Run
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


def attempt(mel_root: Path | None, candidate: Candidate) -> Result:
    """`process`, with what makes a file unusable returned as the reason it is skipped."""
    try:
        return process(mel_root, candidate)
    except AudioError as error:
        return str(error)
    except Exception as error:  # a worker must report, never die: the run goes on with the other files
        return f"failed: {type(error).__name__}: {error}"


ENGINES = ("local", "ray")


def engine_run(engine: str) -> Run:
    """The engine named `engine` (one of ENGINES)."""
    if engine == "ray":
        from model.stores import ray_engine   # Ray is an optional extra: imported only for this engine
        return ray_engine.run
    return local_engine.run


def ingest(source: Path, data_dir: Path, workers: int | None = None, progress: bool = True,
           log_mel: bool | None = None, engine: str = "local", address: str | None = None) -> Summary:
    """Store every track under `source` that `data_dir` does not hold yet.

    `log_mel`: keep each track's full features (default: as the store was built; a new store keeps them).
    `engine`: "local" (processes on this machine) or "ray" (Ray Data tasks, on the Ray cluster at
    `address`, else on a local Ray started here); `workers`: processes, or concurrent Ray tasks.
    Raises model.stores.engine.EngineError where the engine cannot start."""
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
        if todo:
            engine_run(engine)(attempt, mel_root, todo, record, workers, address)
    summary.seconds = time.perf_counter() - start
    return summary
