"""The feature store: per genre, Parquet shards of what the service needs of each track, and (where
the store keeps them) each track's full chromagram and log-mel; a manifest records the parameters
everything was computed with.

    DATA/manifest.json                     format, feature and fingerprint parameters, library versions, log_mel
    DATA/<genre>/part-<n>.parquet          one row per track: id, source, duration_s, content_hash,
                                           chroma_summary (3 * N_CHROMA float64), fingerprint_hashes (uint32 list),
                                           fingerprint_times (int32 list); and (rows written since tags and
                                           rescans came: null in older shards) path, title, artist, album,
                                           track_no, year, route, size, mtime_ns, network, probabilities
                                           (float32 list, one per genre), embedding (float32 list), written_ns,
                                           removed; and (rows since tempos came) tempo_bpm; and (since rescans
                                           re-analyse only what a change touches) analysis: `analysis_key` of the
                                           parameters it was computed with
    DATA/<genre>/features/<id>.npz         mel (frames, N_MELS), chroma (N_CHROMA, frames): only with log_mel

A row is about 8 kB for a 30 s clip and 60-70 kB for a 4-minute song (the fingerprint, mostly) where the
features file of a 30 s clip is 0.75 MB (a 4-minute song's, 5.6 MB), so a collection is kept without the
features files (`log_mel` false) unless it trains the network: the service serves it (chroma summaries,
fingerprints, the stored embedding), while training needs the log-mels.

A track's latest row wins (`written_ns`, across genres: a re-analysed track may move genre); a row with
`removed` set says its track is gone. So a rescan changes a store by adding rows, and shards stay immutable.

Rows are buffered by the writer and written as one new shard per genre at most FLUSH_S after they
were computed: a temporary file, renamed, after every features file it names. So a writer killed at
any moment leaves a readable store; what it had not written is computed again by the next run.
Shards are never changed; small ones are merged into a new one, whose rows readers take once.
A store of format 1 (a tracks.csv table per genre; feature version 1) is refused: it is built again.

The manifest's parameters are those every row was computed with; each row also records them (`analysis`,
empty in a row written before: the manifest's). Where this version's differ (a new FEATURE_VERSION, chroma
or fingerprint parameters), reading the store is refused until a rescan (`Store(..., rescan=True)`, what
preprocess.py opens) has analysed again the parts of each row they touch (`changed_parts`); then the
manifest records the new parameters. So rows of other parameters are never used.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import sys
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
from model.params import N_CHROMA, feature_params, tempo_params

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
_TAG_FIELDS = [("path", pa.string()), ("title", pa.string()), ("artist", pa.string()), ("album", pa.string()),
               ("track_no", pa.int32()), ("year", pa.int32()), ("route", pa.string()), ("size", pa.int64()),
               ("mtime_ns", pa.int64()), ("network", pa.string()), ("written_ns", pa.int64()),
               ("tempo_bpm", pa.float64()), ("analysis", pa.string())]
_TRACK_COLUMNS = ["id", "source", "duration_s", "content_hash", *(name for name, _ in _TAG_FIELDS)]
SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("duration_s", pa.float64()), ("content_hash", pa.string()),
    ("chroma_summary", pa.list_(pa.float64(), SUMMARY_SIZE)),
    ("fingerprint_hashes", pa.list_(pa.uint32())), ("fingerprint_times", pa.list_(pa.int32())),
    *_TAG_FIELDS,
    ("probabilities", pa.list_(pa.float32())), ("embedding", pa.list_(pa.float32())), ("removed", pa.bool_()),
])
_STRING_FIELDS = {name for name, kind in _TAG_FIELDS if kind == pa.string()}
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# The numeric types of SCHEMA's columns (list offsets are int32), as numpy reads them.
_NUMPY_TYPES = {pa.float64(): np.dtype(np.float64), pa.uint32(): np.dtype(np.uint32), pa.int32(): np.dtype(np.int32)}


def _read_shard(path: Path, columns: list[str] | None = None) -> pa.Table:
    """`columns` (default: all of SCHEMA) of a shard; those a shard written before them lacks are nulls."""
    # A ParquetFile, not pq.read_table: that one goes through pyarrow.dataset, whose import pulls in
    # pandas (0.7 s of the service's start).
    wanted = columns or SCHEMA.names
    with pq.ParquetFile(path) as f:
        present = set(f.schema_arrow.names)
        table = f.read(columns=[c for c in wanted if c in present])
    for name in wanted:
        if name not in present:
            table = table.append_column(SCHEMA.field(name), pa.nulls(table.num_rows, SCHEMA.field(name).type))
    return table.select(wanted)


def _shard_rows(path: Path) -> int:
    with pq.ParquetFile(path) as f:
        return f.metadata.num_rows


class StoreError(RuntimeError):
    """A store that is missing, damaged, or built with other parameters."""


@dataclass(frozen=True, slots=True)   # slots: 10^5 tracks are held by the service
class Track:
    id: str
    genre: str
    source: str          # absolute path of the audio file it was computed from
    duration_s: float
    content_hash: str    # model.audio.decoding.Audio.content_hash
    path: str = ""       # relative to the collection it was found in, '/'-separated ("": an older row)
    title: str = ""      # tags (model.audio.tags), "" where the file has none
    artist: str = ""
    album: str = ""
    track_no: int | None = None
    year: int | None = None
    route: str = ""      # how its genre was chosen: "folder", "tag" or "model" ("": an older row)
    size: int | None = None        # the file's bytes and modification time when it was analysed: a rescan
    mtime_ns: int | None = None    # re-analyses it when either changes (None: an older row, left as it is)
    network: str = ""    # model.network digests of the weights its embedding and probabilities came from
    written_ns: int = 0  # when the row was written: a track's latest row wins
    tempo_bpm: float | None = None   # model.audio.features.tempo of its middle excerpt; 0.0: no pulse heard;
                                     # None: a row stored before tempos were
    analysis: str = ""   # `analysis_key` of the parameters its row was computed with ("": the manifest's)


@dataclass(frozen=True)
class Entry:
    """A track's row: what the service needs of it without its full features."""
    track: Track
    chroma_summary: np.ndarray   # (SUMMARY_SIZE,) float64, model.index.knn.chroma_summary
    fingerprint: Fingerprint     # model.index.fingerprint.fingerprint of its log-mel
    probabilities: np.ndarray | None = None   # (genres,) float32: the classifier's, over model.params.GENRES
    embedding: np.ndarray | None = None       # (EMBEDDING_DIM,) float32: the network's mean embedding
    removed: bool = False                     # a tombstone: the track is gone


def safe_name(text: str) -> str:
    """A name fit for a file and a URL: letters, digits, '.', '_' and '-'."""
    return _SAFE.sub("_", text).strip("._") or "_"


def store_params() -> dict:
    """What a store's rows and features depend on: the feature and the fingerprint parameters."""
    return {**feature_params(), "fingerprint": fingerprint_params()}


# The parts of a row a parameter change may touch alone, and the parameters (of `store_params`) each depends
# on beyond the log-mel's. "mel" is every other parameter: the log-mel that the network, the fingerprint and
# a features file are computed from, so a change there re-analyses all of a track. The network's part is
# named by its weights' digest, which each row records (`Track.network`).
PART_PARAMS = {"chroma": ("feature_version", "excerpt_s", "chroma_n_fft", "chroma_hop", "n_chroma"),
               "fingerprint": ("feature_version", "excerpt_s", "fingerprint")}


def _digest(value: dict) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def analysis_key(params: dict) -> str:
    """"mel=<digest>,chroma=<digest>,fingerprint=<digest>": what each part of a row computed with the store
    parameters `params` depends on."""
    own = {name for names in PART_PARAMS.values() for name in names}
    parts = {"mel": {k: v for k, v in params.items() if k not in own},
             **{part: {k: params.get(k) for k in names} for part, names in PART_PARAMS.items()}}
    return ",".join(f"{part}={_digest(value)}" for part, value in parts.items())


def changed_parts(recorded: str, current: str) -> set[str]:
    """The parts ("mel", "chroma", "fingerprint") whose parameters differ between two `analysis_key`s."""
    old, new = (dict(item.split("=", 1) for item in key.split(",")) for key in (recorded, current))
    return {part for part, digest in new.items() if old.get(part) != digest}


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

    def optional(arrays: list[np.ndarray | None]) -> pa.Array:
        return pa.array([None if a is None else np.asarray(a, np.float32) for a in arrays], pa.list_(pa.float32()))

    tracks = [e.track for e in entries]
    summaries = np.concatenate([np.asarray(e.chroma_summary, np.float64) for e in entries])
    return pa.Table.from_arrays([
        pa.array([t.id for t in tracks], pa.string()), pa.array([t.source for t in tracks], pa.string()),
        pa.array([t.duration_s for t in tracks], pa.float64()), pa.array([t.content_hash for t in tracks], pa.string()),
        pa.FixedSizeListArray.from_arrays(pa.array(summaries), SUMMARY_SIZE),
        lists([e.fingerprint.hashes for e in entries], np.uint32), lists([e.fingerprint.times for e in entries], np.int32),
        *(pa.array([getattr(t, name) for t in tracks], kind) for name, kind in _TAG_FIELDS),
        optional([e.probabilities for e in entries]), optional([e.embedding for e in entries]),
        pa.array([e.removed for e in entries], pa.bool_()),
    ], schema=SCHEMA)


def _latest_of_each_id(table: pa.Table) -> pa.Table:
    """Each id's latest row only (the first of equals): a merge killed before it removed its inputs
    leaves rows twice, and a re-analysed track has an older row. Tombstones stay: an older row of their
    track may be in another shard."""
    latest: dict[str, tuple[int, int]] = {}
    written = table.column("written_ns").to_pylist()
    for row, track_id in enumerate(table.column("id").to_pylist()):
        if track_id not in latest or (written[row] or 0) > latest[track_id][0]:
            latest[track_id] = (written[row] or 0, row)
    rows = sorted(row for _, row in latest.values())
    return table.take(rows) if len(rows) < table.num_rows else table


def _track(genre: str, row: dict) -> Track:
    values = {k: ("" if v is None and k in _STRING_FIELDS else v) for k, v in row.items()}
    values["written_ns"] = values.get("written_ns") or 0
    # Shared by every row of the same weights and parameters: one string each, not one per track.
    values["network"], values["analysis"] = sys.intern(values["network"]), sys.intern(values["analysis"])
    return Track(genre=genre, **values)


class Store:
    """A feature store rooted at a folder. Opening one checks its manifest against `store_params()`.

    `log_mel` (only when the store is created): keep every track's full log-mel and chromagram.
    `rescan`: open a store built with other parameters, to analyse its rows again (`stale_parts`); reading
    one is otherwise refused."""

    def __init__(self, root: Path | str, create: bool = False, log_mel: bool | None = None,
                 rescan: bool = False) -> None:
        self.root = Path(root)
        self._pending: dict[str, list[Entry]] = {}
        self._flushed_at = time.monotonic()
        manifest_path = self.root / MANIFEST
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            self.manifest = self._check(manifest, rescan)
            if log_mel is not None and log_mel != self.keeps_mel:
                raise StoreError(f"the store at {self.root} was built {self._mel_words()}: build a store "
                                 f"{'with' if log_mel else 'without'} them in another folder")
        elif create:
            self.manifest = {"format": STORE_FORMAT, "params": store_params(), "versions": _versions(),
                             "log_mel": True if log_mel is None else log_mel, "tempo": tempo_params()}
            self._write_manifest()
        else:
            raise StoreError(f"no feature store at {self.root} (no {MANIFEST}): build one with preprocess.py")
        self.analysis_key = analysis_key(store_params())   # what a row computed now records
        self._recorded_key = analysis_key(self.manifest["params"])   # what a row that records none was computed with
        self._load_tables()

    def _write_manifest(self) -> None:
        with atomic_write(self.root / MANIFEST, "w") as f:
            json.dump(self.manifest, f, indent=2)

    @property
    def tempos_known(self) -> bool:
        """Whether every row's tempo was estimated as this version estimates it (`tempo_params`): a store
        built before tempos were (or with another recipe) serves without them until preprocess.py is
        run on its collection again (`record_tempos`)."""
        return self.manifest.get("tempo") == tempo_params()

    def record_tempos(self) -> None:
        """Record that every row's tempo is now of this version's recipe (ingest, once it has estimated them all)."""
        self.manifest = {**self.manifest, "tempo": tempo_params()}
        self._write_manifest()

    @property
    def keeps_mel(self) -> bool:
        """Whether every track's full log-mel and chromagram are stored (`load`)."""
        return bool(self.manifest["log_mel"])

    def _mel_words(self) -> str:
        return "with log-mels" if self.keeps_mel else "without log-mels (preprocess.py --no-keep-mel)"

    def _check(self, manifest: dict, rescan: bool) -> dict:
        if manifest.get("format") != STORE_FORMAT:
            raise StoreError(f"the store at {self.root} has format {manifest.get('format')}, "
                             f"this version reads format {STORE_FORMAT}: rebuild it with preprocess.py into an "
                             "empty folder")
        expected, recorded = store_params(), manifest.get("params", {})
        diff = [f"{k}={recorded.get(k)!r} (needs {v!r})" for k, v in expected.items() if recorded.get(k) != v]
        if diff and not rescan:
            raise StoreError(f"the store at {self.root} was built with other feature parameters: "
                             f"{', '.join(diff)}; run preprocess.py on its collection again: the rescan analyses "
                             "again the parts of each track they change")
        return manifest

    def stale_parts(self, track: Track) -> set[str]:
        """The parts of a track's row ("mel", "chroma", "fingerprint") computed with other parameters than
        this version's (`changed_parts`)."""
        return changed_parts(track.analysis or self._recorded_key, self.analysis_key)

    @property
    def of_current_params(self) -> bool:
        """Whether the manifest records this version's parameters (`store_params`)."""
        return self.manifest["params"] == store_params()

    def record_params(self) -> bool:
        """Record this version's parameters in the manifest once every track's row is of them (after a
        rescan); returns whether the manifest now records them."""
        if self.of_current_params:
            return True
        if any(self.stale_parts(t) for t in self.tracks()):
            return False
        self.manifest = {**self.manifest, "params": store_params(), "versions": _versions()}
        self._recorded_key = self.analysis_key
        with atomic_write(self.root / MANIFEST, "w") as f:
            json.dump(self.manifest, f, indent=2)
        return True

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
        self._last_written = 0
        genres = sorted({p.parent.name for p in self.root.glob(f"*/{SHARD_PREFIX}*{SHARD_SUFFIX}")})
        latest: dict[str, tuple[Track, bool]] = {}    # each id's latest row, across genres; is it a tombstone
        for genre in genres:
            self._tables[genre] = {}
            for part in self._read(genre, [*_TRACK_COLUMNS, "removed"]):
                for row in part.to_pylist():
                    removed = bool(row.pop("removed"))
                    track = _track(genre, row)
                    if track.id not in latest or track.written_ns > latest[track.id][0].written_ns:
                        latest[track.id] = (track, removed)
                    self._last_written = max(self._last_written, track.written_ns)
            self._rows[genre] = {p: _shard_rows(p) for p in self._shard_paths(genre)}
        for track, removed in latest.values():
            if not removed:
                self._tables[track.genre][track.id] = track

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
        # A track's row in its genre is the latest there (an older one is of a file since changed).
        by_id: dict[tuple[str, str], tuple[int, list]] = {}
        for genre in sorted({t.genre for t in tracks}):
            for part in self._read(genre, ["id", "written_ns", *converts]):
                values = [convert(part.column(name)) for name, convert in converts.items()]
                written = part.column("written_ns").to_pylist()
                for track_id, written_ns, *row in zip(part.column("id").to_pylist(), written, *values):
                    key = (genre, track_id)
                    if key not in by_id or (written_ns or 0) > by_id[key][0]:
                        by_id[key] = (written_ns or 0, row)
        try:
            rows = [by_id[(t.genre, t.id)][1] for t in tracks]
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

    def vectors(self, tracks: list[Track], name: str) -> list[np.ndarray | None]:
        """Each track's stored `name` ("embedding" or "probabilities"), float32; None where its row has none."""
        def arrays(column: pa.ChunkedArray) -> list[np.ndarray | None]:
            return [None if v is None else np.asarray(v, np.float32) for v in column.to_pylist()]

        [rows] = self._columns({name: arrays}, tracks)
        return rows

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
        written = self._enter(entry)
        self._tables.setdefault(track.genre, {})[track.id] = written

    def remove(self, track: Track) -> None:
        """Take a track out of the store: a row saying so is written with the next shard."""
        tombstone = Track(track.id, track.genre, track.source, 0.0, "", path=track.path)
        self._enter(Entry(tombstone, np.zeros(SUMMARY_SIZE), Fingerprint(np.zeros(0, np.uint32), np.zeros(0, np.int32)),
                          removed=True))

    def _enter(self, entry: Entry) -> Track:
        # Later than every row before it, whatever the clock does: a track's latest row wins.
        self._last_written = max(time.time_ns(), self._last_written + 1)
        entry = dataclasses.replace(entry, track=dataclasses.replace(entry.track, written_ns=self._last_written))
        for table in self._tables.values():   # a re-analysed track may have moved genre
            table.pop(entry.track.id, None)
        self._pending.setdefault(entry.track.genre, []).append(entry)
        if time.monotonic() - self._flushed_at >= FLUSH_S:
            self.flush()
        return entry.track

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
            merged = _latest_of_each_id(pa.concat_tables([_read_shard(p) for p in parts]))
            self._write_shard(genre, merged)   # before its parts go: a kill in between leaves rows twice
            for path in parts:
                path.unlink()
                del self._rows[genre][path]
