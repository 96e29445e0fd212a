"""The feature store: per genre, Parquet shards of what the service needs of each track, and (where
the store keeps them) each track's full chromagram and log-mel; a manifest records the parameters
everything was computed with.

    DATA/manifest.json                     format, feature and fingerprint parameters, library versions, log_mel
    DATA/<genre>/part-<n>.parquet          one row per track: id, source, duration_s, content_hash,
                                           chroma_summary (3 * N_CHROMA float64), fingerprint_hashes (uint32 list),
                                           fingerprint_times (int32 list)
    DATA/<genre>/features/<id>.npz         mel (frames, N_MELS), chroma (N_CHROMA, frames): only with log_mel

A row is about 8 kB (the fingerprint, mostly) where the features file of a 30 s clip is 0.75 MB, so a
catalogue of millions of tracks is kept without the features files (`log_mel` false): the service
serves it (chroma summaries, fingerprints), while training and the network's embedding space need them.

Rows are buffered by the writer and written as one new shard per genre at most FLUSH_S after they
were computed: a temporary file, renamed, after every features file it names. So a writer killed at
any moment leaves a readable store; what it had not written is computed again by the next run.
Shards are never changed; small ones are merged into a new one, whose rows readers take once.
A store of format 1 (a tracks.csv table per genre; feature version 1) is refused: it is built again.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from model.atomic import atomic_write, remove_leftovers
from model.index.fingerprint import Fingerprint, fingerprint_params
from model.params import N_CHROMA, feature_params

MANIFEST = "manifest.json"
LOCK = ".writer.lock"
FEATURES = "features"
SHARD_PREFIX, SHARD_SUFFIX = "part-", ".parquet"
STORE_FORMAT = 2
SUMMARY_SIZE = 3 * N_CHROMA   # model.index.knn.chroma_summary
# Rows are written at least this often (s): what a killed run loses, at most.
FLUSH_S = 1.0
# Size-tiered merging: MERGE_AT shards of one tier (rows within a factor MERGE_AT) become one, so a
# genre holds O(MERGE_AT * log(rows)) shards whatever the flushes; shards of SHARD_ROWS rows or more
# stay as they are (a merge of those would rewrite gigabytes to save a few files).
MERGE_AT = 8
SHARD_ROWS = 50_000
_TRACK_COLUMNS = ["id", "source", "duration_s", "content_hash"]
SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("duration_s", pa.float64()), ("content_hash", pa.string()),
    ("chroma_summary", pa.list_(pa.float64(), SUMMARY_SIZE)),
    ("fingerprint_hashes", pa.list_(pa.uint32())), ("fingerprint_times", pa.list_(pa.int32())),
])
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# The numeric types of SCHEMA's columns (list offsets are int32), as numpy reads them.
_NUMPY_TYPES = {pa.float64(): np.dtype(np.float64), pa.uint32(): np.dtype(np.uint32), pa.int32(): np.dtype(np.int32)}


def _read_shard(path: Path, columns: list[str] | None = None) -> pa.Table:
    # A ParquetFile, not pq.read_table: that one goes through pyarrow.dataset, whose import pulls in
    # pandas (0.7 s of the service's start).
    with pq.ParquetFile(path) as f:
        return f.read(columns=columns)


def _shard_rows(path: Path) -> int:
    with pq.ParquetFile(path) as f:
        return f.metadata.num_rows


class StoreError(RuntimeError):
    """A store that is missing, damaged, or built with other parameters."""


@dataclass(frozen=True)
class Track:
    id: str
    genre: str
    source: str          # absolute path of the audio file it was computed from
    duration_s: float
    content_hash: str    # model.audio.decoding.Audio.content_hash


@dataclass(frozen=True)
class Entry:
    """A track's row: what the service needs of it without its full features."""
    track: Track
    chroma_summary: np.ndarray   # (SUMMARY_SIZE,) float64, model.index.knn.chroma_summary
    fingerprint: Fingerprint     # model.index.fingerprint.fingerprint of its log-mel


def safe_name(text: str) -> str:
    """A name fit for a file and a URL: letters, digits, '.', '_' and '-'."""
    return _SAFE.sub("_", text).strip("._") or "_"


def store_params() -> dict:
    """What a store's rows and features depend on: the feature and the fingerprint parameters."""
    return {**feature_params(), "fingerprint": fingerprint_params()}


def _versions() -> dict[str, str]:
    names = ("librosa", "numpy", "soundfile", "soxr")
    return {name: metadata.version(name) for name in names}


def _shard_number(path: Path) -> int:
    return int(path.name[len(SHARD_PREFIX):-len(SHARD_SUFFIX)])


def _numpy(array: pa.Array) -> np.ndarray:
    """A numeric array without nulls as a numpy view of its data buffer. (pyarrow's own to_numpy
    imports pandas, half a second of a service's start, for nothing the store holds.)"""
    if array.null_count:
        raise StoreError(f"a store column holds {array.null_count} missing values: rebuild the store")
    dtype = _NUMPY_TYPES[array.type]
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def _lists(column: pa.ChunkedArray) -> list[np.ndarray]:
    """A list column as one numpy array per row (views of one buffer)."""
    array = column.combine_chunks()
    offsets, values = _numpy(array.offsets), _numpy(array.values)
    return [values[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def _table(entries: list[Entry]) -> pa.Table:
    def lists(arrays: list[np.ndarray], dtype) -> pa.ListArray:
        offsets = np.cumsum([0] + [len(a) for a in arrays]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(arrays).astype(dtype)))

    tracks = [e.track for e in entries]
    summaries = np.concatenate([np.asarray(e.chroma_summary, np.float64) for e in entries])
    return pa.Table.from_arrays([
        pa.array([t.id for t in tracks], pa.string()), pa.array([t.source for t in tracks], pa.string()),
        pa.array([t.duration_s for t in tracks], pa.float64()), pa.array([t.content_hash for t in tracks], pa.string()),
        pa.FixedSizeListArray.from_arrays(pa.array(summaries), SUMMARY_SIZE),
        lists([e.fingerprint.hashes for e in entries], np.uint32), lists([e.fingerprint.times for e in entries], np.int32),
    ], schema=SCHEMA)


def _first_of_each_id(table: pa.Table) -> pa.Table:
    """Rows with an id seen before dropped: a merge killed before it removed its inputs leaves rows twice."""
    _, first = np.unique(np.asarray(table.column("id").to_pylist(), dtype=object), return_index=True)
    return table.take(np.sort(first)) if len(first) < table.num_rows else table


class Store:
    """A feature store rooted at a folder. Opening one checks its manifest against `store_params()`.

    `log_mel` (only when the store is created): keep every track's full log-mel and chromagram."""

    def __init__(self, root: Path | str, create: bool = False, log_mel: bool | None = None) -> None:
        self.root = Path(root)
        self._pending: dict[str, list[Entry]] = {}
        self._flushed_at = time.monotonic()
        manifest_path = self.root / MANIFEST
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            self.manifest = self._check(manifest)
            if log_mel is not None and log_mel != self.keeps_mel:
                raise StoreError(f"the store at {self.root} was built {self._mel_words()}: build a store "
                                 f"{'with' if log_mel else 'without'} them in another folder")
        elif create:
            self.manifest = {"format": STORE_FORMAT, "params": store_params(), "versions": _versions(),
                             "log_mel": True if log_mel is None else log_mel}
            with atomic_write(manifest_path, "w") as f:
                json.dump(self.manifest, f, indent=2)
        else:
            raise StoreError(f"no feature store at {self.root} (no {MANIFEST}): build one with preprocess.py")
        self._load_tables()

    @property
    def keeps_mel(self) -> bool:
        """Whether every track's full log-mel and chromagram are stored (`load`)."""
        return bool(self.manifest["log_mel"])

    def _mel_words(self) -> str:
        return "with log-mels" if self.keeps_mel else "without log-mels (preprocess.py --no-keep-mel)"

    def _check(self, manifest: dict) -> dict:
        if manifest.get("format") != STORE_FORMAT:
            raise StoreError(f"the store at {self.root} has format {manifest.get('format')}, "
                             f"this version reads format {STORE_FORMAT}: rebuild it with preprocess.py into an "
                             "empty folder")
        expected, recorded = store_params(), manifest.get("params", {})
        diff = [f"{k}={recorded.get(k)!r} (needs {v!r})" for k, v in expected.items() if recorded.get(k) != v]
        if diff:
            raise StoreError(f"the store at {self.root} was built with other feature parameters: "
                             f"{', '.join(diff)}; rebuild it with preprocess.py into an empty folder")
        return manifest

    def _shard_paths(self, genre: str) -> list[Path]:
        return sorted(self.root.glob(f"{genre}/{SHARD_PREFIX}*{SHARD_SUFFIX}"), key=_shard_number)

    def _read(self, genre: str, columns: list[str]) -> list[pa.Table]:
        """Columns of every shard of a genre. A writer's merge removes shards once their rows are in a
        new one: a shard gone meanwhile means listing again."""
        for _ in range(10):
            try:
                return [_read_shard(p, columns) for p in self._shard_paths(genre)]
            except FileNotFoundError:
                continue
        raise StoreError(f"the shards of {self.root / genre} keep changing: is a merge stuck in a loop?")

    def _load_tables(self) -> None:
        self._tables: dict[str, dict[str, Track]] = {}
        self._rows: dict[str, dict[Path, int]] = {}   # rows per shard, for merging
        genres = sorted({p.parent.name for p in self.root.glob(f"*/{SHARD_PREFIX}*{SHARD_SUFFIX}")})
        for genre in genres:
            table: dict[str, Track] = {}
            for part in self._read(genre, _TRACK_COLUMNS):
                for row in part.to_pylist():
                    table.setdefault(row["id"], Track(genre=genre, **row))
            self._tables[genre] = table
            self._rows[genre] = {p: _shard_rows(p) for p in self._shard_paths(genre)}

    # Reading

    @property
    def genres(self) -> list[str]:
        """Genres that hold at least one track, sorted."""
        return sorted(g for g, table in self._tables.items() if table)

    def tracks(self, genre: str | None = None) -> list[Track]:
        """All tracks (or one genre's), in a stable order: by genre, then id."""
        genres = [genre] if genre is not None else sorted(self._tables)
        return [t for g in genres for t in sorted(self._tables.get(g, {}).values(), key=lambda t: t.id)]

    def __len__(self) -> int:
        return sum(len(table) for table in self._tables.values())

    def find(self, track_id: str) -> Track | None:
        for table in self._tables.values():
            if track_id in table:
                return table[track_id]
        return None

    def _columns(self, converts: dict[str, Callable[[pa.ChunkedArray], list]], tracks: list[Track]) -> list[list]:
        """Columns' values for `tracks`, in their order, read in one pass over the shards: one list per
        column of `converts`, which maps each column's name to how a shard's column becomes a list."""
        by_id: dict[tuple[str, str], list] = {}
        for genre in sorted({t.genre for t in tracks}):
            for part in self._read(genre, ["id", *converts]):
                values = [convert(part.column(name)) for name, convert in converts.items()]
                for track_id, *row in zip(part.column("id").to_pylist(), *values):
                    by_id.setdefault((genre, track_id), row)
        try:
            rows = [by_id[(t.genre, t.id)] for t in tracks]
        except KeyError as error:
            raise StoreError(f"no row for {error.args[0]} in the store at {self.root}") from None
        return [[row[i] for row in rows] for i in range(len(converts))]

    def chroma_summaries(self, tracks: list[Track]) -> np.ndarray:
        """(len(tracks), SUMMARY_SIZE) float64: each track's `model.index.knn.chroma_summary`."""
        [rows] = self._columns(
            {"chroma_summary": lambda c: _numpy(c.combine_chunks().flatten()).reshape(-1, SUMMARY_SIZE)}, tracks)
        return np.array(rows, dtype=np.float64).reshape(len(tracks), SUMMARY_SIZE)

    def fingerprints(self, tracks: list[Track]) -> list[Fingerprint]:
        """Each track's fingerprint (`model.index.fingerprint.fingerprint` of its log-mel)."""
        hashes, times = self._columns({"fingerprint_hashes": _lists, "fingerprint_times": _lists}, tracks)
        return [Fingerprint(h, t) for h, t in zip(hashes, times)]

    def features_path(self, genre: str, track_id: str) -> Path:
        return self.root / genre / FEATURES / f"{track_id}.npz"

    def load(self, track: Track) -> dict[str, np.ndarray]:
        """A track's stored features: `mel` (frames, N_MELS) and `chroma` (N_CHROMA, frames)."""
        if not self.keeps_mel:
            raise StoreError(f"the store at {self.root} was built {self._mel_words()}: training and the "
                             "embedding feature space need them; build a store with --keep-mel")
        try:
            with np.load(self.features_path(track.genre, track.id)) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError, KeyError) as error:
            raise StoreError(f"features of {track.genre}/{track.id} are unreadable: {error}") from error

    # Writing (one writer at a time)

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the store's writer lock (a second writer would write the same tracks again); the rows
        added meanwhile are written when it ends, however it ends."""
        try:
            import fcntl
        except ImportError:  # no advisory locks (Windows): one writer at a time is then the user's care
            fcntl = None
        with (self.root / LOCK).open("w") as lock:
            if fcntl is not None:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise StoreError(f"another process is writing the store at {self.root}") from None
            self._load_tables()  # what a writer that finished before the lock was taken added
            try:
                yield
            finally:
                self.flush()

    def prepare(self, genre: str) -> None:
        """Make a genre's folders and clear what a killed writer left there: half-written files, and
        features that no row names (written by a worker after its run was killed)."""
        folder = self.root / genre
        folder.mkdir(parents=True, exist_ok=True)
        remove_leftovers(folder)
        self._tables.setdefault(genre, {})
        if not self.keeps_mel:
            return
        features = folder / FEATURES
        features.mkdir(exist_ok=True)
        remove_leftovers(features)
        for path in features.glob("*.npz"):
            if path.stem not in self._tables[genre]:
                path.unlink(missing_ok=True)

    @staticmethod
    def write_features_at(root: Path, genre: str, track_id: str, mel: np.ndarray, chroma: np.ndarray) -> None:
        """Write a track's features file. Worker processes call this: it touches no table."""
        with atomic_write(Path(root) / genre / FEATURES / f"{track_id}.npz") as f:
            np.savez(f, mel=mel, chroma=chroma)

    def add(self, entry: Entry) -> None:
        """Enter a track (whose features file is written, where the store keeps them); its row is
        written with the next shard, at most FLUSH_S later (or when the writer ends)."""
        track = entry.track
        if self.keeps_mel and not self.features_path(track.genre, track.id).exists():
            raise StoreError(f"no features written for {track.genre}/{track.id}")
        if np.shape(entry.chroma_summary) != (SUMMARY_SIZE,):
            raise ValueError(f"a chroma summary has {SUMMARY_SIZE} values, not {np.shape(entry.chroma_summary)}")
        self._tables.setdefault(track.genre, {})[track.id] = track
        self._pending.setdefault(track.genre, []).append(entry)
        if time.monotonic() - self._flushed_at >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the rows added since the last flush: one new shard per genre."""
        for genre, entries in self._pending.items():
            if entries:
                self._write_shard(genre, _table(entries))
                self._merge_small(genre)
        self._pending = {}
        self._flushed_at = time.monotonic()

    def _write_shard(self, genre: str, table: pa.Table) -> Path:
        shards = self._rows.setdefault(genre, {})
        number = 1 + max((_shard_number(p) for p in shards), default=0)
        path = self.root / genre / f"{SHARD_PREFIX}{number:08d}{SHARD_SUFFIX}"
        with atomic_write(path) as f:
            pq.write_table(table, f)
        shards[path] = table.num_rows
        return path

    def _merge_small(self, genre: str) -> None:
        """Merge MERGE_AT shards of one size tier into one (then the tier above, if it fills up)."""
        while True:
            tiers: dict[int, list[Path]] = {}
            for path, rows in self._rows[genre].items():
                if rows < SHARD_ROWS:
                    tiers.setdefault(int(math.log(max(rows, 1), MERGE_AT)), []).append(path)
            full = [paths for paths in tiers.values() if len(paths) >= MERGE_AT]
            if not full:
                return
            parts = full[0]
            merged = _first_of_each_id(pa.concat_tables([_read_shard(p) for p in parts]))
            self._write_shard(genre, merged)   # before its parts go: a kill in between leaves rows twice
            for path in parts:
                path.unlink()
                del self._rows[genre][path]
