"""The feature store: per-genre folders of per-track chromagrams and log-mels, with a track table
per genre and a manifest of the parameters the features were computed with.

    DATA/manifest.json                 feature parameters and library versions
    DATA/<genre>/tracks.csv            id, source, duration_s, content_hash
    DATA/<genre>/features/<id>.npz     mel (frames, N_MELS), chroma (N_CHROMA, frames)

Every file is written to a temporary file and renamed, features before the table row that names
them, so a writer killed at any moment leaves a readable store; tracks missing from a table are
simply computed again by the next run.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Iterator

import numpy as np

from model.atomic import atomic_write, remove_leftovers
from model.params import feature_params

MANIFEST = "manifest.json"
LOCK = ".writer.lock"
TABLE = "tracks.csv"
FEATURES = "features"
STORE_FORMAT = 1
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class StoreError(RuntimeError):
    """A store that is missing, damaged, or built with other parameters."""


@dataclass(frozen=True)
class Track:
    id: str
    genre: str
    source: str          # absolute path of the audio file it was computed from
    duration_s: float
    content_hash: str    # model.audio.decoding.Audio.content_hash


def safe_name(text: str) -> str:
    """A name fit for a file and a URL: letters, digits, '.', '_' and '-'."""
    return _SAFE.sub("_", text).strip("._") or "_"


def _versions() -> dict[str, str]:
    names = ("librosa", "numpy", "soundfile", "soxr")
    return {name: metadata.version(name) for name in names}


class Store:
    """A feature store rooted at a folder. Opening one checks its manifest against `feature_params()`."""

    def __init__(self, root: Path | str, create: bool = False) -> None:
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if manifest_path.exists():
            self.manifest = self._check(json.loads(manifest_path.read_text()))
        elif create:
            self.manifest = {"format": STORE_FORMAT, "params": feature_params(), "versions": _versions()}
            with atomic_write(manifest_path, "w") as f:
                json.dump(self.manifest, f, indent=2)
        else:
            raise StoreError(f"no feature store at {self.root} (no {MANIFEST}): build one with preprocess.py")
        self._load_tables()

    def _load_tables(self) -> None:
        self._tables: dict[str, dict[str, Track]] = {}
        for table in sorted(self.root.glob(f"*/{TABLE}")):
            genre = table.parent.name
            self._tables[genre] = {t.id: t for t in self._read_table(table, genre)}

    def _check(self, manifest: dict) -> dict:
        if manifest.get("format") != STORE_FORMAT:
            raise StoreError(f"the store at {self.root} has format {manifest.get('format')}, "
                             f"this version reads format {STORE_FORMAT}: rebuild it with preprocess.py")
        expected, recorded = feature_params(), manifest.get("params", {})
        diff = [f"{k}={recorded.get(k)!r} (needs {v!r})" for k, v in expected.items() if recorded.get(k) != v]
        if diff:
            raise StoreError(f"the store at {self.root} was built with other feature parameters: "
                             f"{', '.join(diff)}; rebuild it with preprocess.py into an empty folder")
        return manifest

    @staticmethod
    def _read_table(path: Path, genre: str) -> list[Track]:
        with path.open(newline="") as f:
            return [Track(id=row["id"], genre=genre, source=row["source"],
                          duration_s=float(row["duration_s"]), content_hash=row["content_hash"])
                    for row in csv.DictReader(f)]

    def _write_table(self, genre: str) -> None:
        columns = [f.name for f in fields(Track) if f.name != "genre"]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for track in self._tables[genre].values():
            row = asdict(track)
            del row["genre"]
            writer.writerow(row)
        with atomic_write(self.root / genre / TABLE, "w") as f:
            f.write(text.getvalue())

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

    def features_path(self, genre: str, track_id: str) -> Path:
        return self.root / genre / FEATURES / f"{track_id}.npz"

    def load(self, track: Track) -> dict[str, np.ndarray]:
        """A track's stored features: `mel` (frames, N_MELS) and `chroma` (N_CHROMA, frames)."""
        try:
            with np.load(self.features_path(track.genre, track.id)) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError, KeyError) as error:
            raise StoreError(f"features of {track.genre}/{track.id} are unreadable: {error}") from error

    # Writing (one writer at a time)

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the store's writer lock: a second writer would overwrite the first one's table rows."""
        try:
            import fcntl
        except ImportError:  # no advisory locks (Windows): one writer at a time is then the user's care
            yield
            return
        with (self.root / LOCK).open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"another process is writing the store at {self.root}") from None
            self._load_tables()  # what a writer that finished before the lock was taken added
            yield

    def prepare(self, genre: str) -> None:
        """Make a genre's folders and clear what a killed writer left there: half-written files, and
        features that no table row names (written by a worker after its run was killed)."""
        features = self.root / genre / FEATURES
        features.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.root / genre)
        remove_leftovers(features)
        table = self._tables.setdefault(genre, {})
        for path in features.glob("*.npz"):
            if path.stem not in table:
                path.unlink(missing_ok=True)

    @staticmethod
    def write_features_at(root: Path, genre: str, track_id: str, mel: np.ndarray, chroma: np.ndarray) -> None:
        """Write a track's features file. Worker processes call this: it touches no table."""
        with atomic_write(Path(root) / genre / FEATURES / f"{track_id}.npz") as f:
            np.savez(f, mel=mel, chroma=chroma)

    def commit(self, track: Track) -> None:
        """Enter a track whose features are written into its genre's table."""
        if not self.features_path(track.genre, track.id).exists():
            raise StoreError(f"no features written for {track.genre}/{track.id}")
        self._tables.setdefault(track.genre, {})[track.id] = track
        self._write_table(track.genre)
