"""Finding the tracks of a music collection: GTZAN in its real layouts, or any <genre>/ folders."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.stores.feature_store import safe_name

# What is offered to the decoder; what it cannot decode (m4a without ffmpeg, say) is reported.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".au", ".snd", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".m4a", ".aac", ".wma",
})
# Files at the top of a plain music folder have no genre folder: they are filed under this one.
UNSORTED = "unsorted"
# Where GTZAN keeps its genre folders, relative to what a user may point at.
_GTZAN_ROOTS = ("Data/genres_original", "genres_original", "genres")


@dataclass(frozen=True)
class Candidate:
    genre: str
    id: str
    path: Path


def _is_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def genre_root(source: Path) -> Path:
    """The folder whose sub-folders are genres: the Kaggle copy's `Data/genres_original`, the tarball's
    `genres`, or `source` itself."""
    for relative in _GTZAN_ROOTS:
        if (source / relative).is_dir():
            return source / relative
    return source


def discover(source: Path) -> tuple[list[Candidate], list[tuple[Path, str]]]:
    """Candidates under `source`, sorted by genre and id, and the files passed over with a reason.

    A track's id is its file name without extension (GTZAN's `blues.00012`), made safe for URLs;
    ids are unique across the collection, so a second file with the same id is passed over."""
    source = Path(source).resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder")
    root = genre_root(source)
    found: list[tuple[str, Path]] = [(UNSORTED, p) for p in sorted(root.iterdir()) if _is_audio(p)]
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        genre = safe_name(folder.name.lower())
        found += [(genre, p) for p in sorted(folder.rglob("*")) if _is_audio(p)]
    candidates: dict[str, Candidate] = {}
    passed_over: list[tuple[Path, str]] = []
    for genre, path in found:
        track_id = safe_name(path.stem)
        if track_id in candidates:
            passed_over.append((path, f"duplicate id {track_id!r} (also {candidates[track_id].path})"))
            continue
        candidates[track_id] = Candidate(genre, track_id, path)
    return sorted(candidates.values(), key=lambda c: (c.genre, c.id)), passed_over
