"""Finding the tracks of a music collection: GTZAN in its real layouts, <genre>/ folders, or a library laid
out as players and taggers lay it out (Artist/Album/NN Title.ext, loose files, any script).

A track is known by its path relative to the collection; its id is made from that path (`track_ids`):
GTZAN's `blues.00012` stays `blues.00012`, and no file is lost to a name it shares with another.
"""
from __future__ import annotations

import hashlib
import os
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from model.stores.feature_store import Entry, safe_name
from model.stores.genre_names import genre_of

# What is offered to the decoder; what it cannot decode is reported with its reason.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".au", ".snd", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".m4a", ".aac", ".wma",
})
# With `--genres folders`, files at the top of a plain music folder have no genre folder: they are filed here.
UNSORTED = "unsorted"
# Where GTZAN keeps its genre folders, relative to what a user may point at.
_GTZAN_ROOTS = ("Data/genres_original", "genres_original", "genres")
# How a track's genre is chosen (preprocess.py --genres): its top folder's name, whatever it is ("folders",
# as GTZAN and <genre>/ collections are laid out); its genre tag; the classifier; or "auto": a folder on its
# path named like one of the ten genres, else its tag when that maps to one, else the classifier.
GENRE_ROUTES = ("auto", "folders", "tags", "model")
# An id's most UTF-8 bytes: a features file `<id>.npz` and its temporary `.<id>.npz.XXXXXXXX.tmp` then stay
# well within the 255 bytes a file name may have. Longer ids are cut and given a hash suffix.
MAX_ID_BYTES = 120
PATH_SEPARATOR = "~"   # between a path's folders in an id (unreserved in URLs, rare in file names)


@dataclass(frozen=True)
class Candidate:
    genre: str | None    # from its folder; None: placed by its genre tag or the classifier
    id: str
    path: Path           # absolute, as found (a link is not resolved)
    relative: str = ""   # its path relative to the collection, '/'-separated
    # A stored track analysed again only in part (model.stores.ingest): the parts ("chroma", "fingerprint",
    # "network") to compute, and its stored row, whose other parts are kept. None: all of it is analysed.
    redo: frozenset[str] | None = None
    previous: Entry | None = None


@dataclass
class Walk:
    files: list[tuple[Path, str]] = field(default_factory=list)          # (path, relative) of audio files
    passed_over: list[tuple[Path, str]] = field(default_factory=list)    # (path, why)
    other_files: int = 0                                                 # not audio by their extension
    links_followed: int = 0                                              # links out of the collection


def genre_root(source: Path) -> Path:
    """The folder whose sub-folders are genres: the Kaggle copy's `Data/genres_original`, the tarball's
    `genres`, or `source` itself."""
    for relative in _GTZAN_ROOTS:
        if (source / relative).is_dir():
            return source / relative
    return source


def _slug(text: str) -> str:
    """Letters and digits of any script (and their combining marks) kept, '.', '_' and '-' too; every
    other run of characters (spaces, '/', '%', '?', '#', controls) becomes one '_'."""
    out, gap = [], False
    for char in unicodedata.normalize("NFC", text):
        if unicodedata.category(char)[0] in "LMN" or char in "._-":
            out.append(char)
            gap = False
        elif not gap:
            out.append("_")
            gap = True
    return "".join(out).strip("._")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _fit(slug: str, relative: str) -> str:
    """`slug` within MAX_ID_BYTES (cut, with the path's hash added), or the hash alone for a name of no letters."""
    if not slug:
        return f"track-{_short_hash(relative)}"
    if len(slug.encode()) <= MAX_ID_BYTES:
        return slug
    cut = slug.encode()[:MAX_ID_BYTES - 9].decode("utf-8", "ignore").rstrip("._-")
    return f"{cut}-{_short_hash(relative)}"


def track_ids(relatives: list[str], known: Mapping[str, str] | None = None) -> dict[str, str]:
    """Ids for paths relative to a collection ('/'-separated, with their extension): readable, URL-safe,
    every script kept, unique, and at most MAX_ID_BYTES.

    A file's id is its name without extension (GTZAN's `blues.00012`) where no other file has that name
    (or the others are in deeper folders); else its whole relative path (`Delta_Ray~Night_Songs~01_Intro`);
    a clash left (names that differ only in punctuation or case) gets a hash of the path. `known` maps paths to the ids a store already gave
    them: those are kept, and no new id takes one of them."""
    known = dict(known or {})
    ids: dict[str, str] = {r: known[r] for r in relatives if r in known}
    taken = {i.casefold() for i in known.values()}
    new = [r for r in relatives if r not in ids]
    stems = [_fit(_slug(Path(r).stem), r) for r in new]
    # Of the files sharing a name, the one nearest the top keeps it (a GTZAN clip beside a nested copy).
    depths: dict[str, list[int]] = {}
    for relative, stem in zip(new, stems):
        depths.setdefault(stem.casefold(), []).append(relative.count("/"))
    for relative, stem in sorted(zip(new, stems)):
        shared = depths[stem.casefold()]
        if relative.count("/") == min(shared) and shared.count(min(shared)) == 1 and stem.casefold() not in taken:
            candidate = stem
        else:
            parts = [_slug(p) for p in Path(relative).with_suffix("").parts]
            candidate = _fit(PATH_SEPARATOR.join(p for p in parts if p), relative)
        if candidate.casefold() in taken:
            candidate = _fit(f"{candidate[:MAX_ID_BYTES - 9]}-{_short_hash(relative)}", relative)
        taken.add(candidate.casefold())
        ids[relative] = candidate
    return ids


def _unreadable(path: Path) -> str | None:
    try:
        with path.open("rb"):
            pass
    except PermissionError:
        return "cannot be read (permission denied)"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    return None


def walk(source: Path) -> Walk:
    """Every audio file under `source` (its real folder), in a stable order, and what was passed over.

    Hidden files and folders, FIFOs, sockets and devices, broken and looping links are passed over with
    their reason. A link to a folder or file inside the collection is not followed (its tracks are found
    at their own place, once); a link out of it is followed once."""
    root = Path(source).resolve()
    found = Walk()
    seen = {root}

    def inside(real: Path) -> bool:
        return real == root or root in real.parents

    def visit(folder: Path, relative: Path) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except PermissionError:
            found.passed_over.append((folder, "folder cannot be read (permission denied)"))
            return
        for entry in entries:
            path, rel = Path(entry.path), relative / entry.name
            if entry.name.startswith("."):
                found.passed_over.append((path, "hidden folder" if entry.is_dir(follow_symlinks=False)
                                          else "hidden file"))
                continue
            if entry.is_symlink():
                try:
                    real = path.resolve(strict=True)
                except FileNotFoundError:
                    found.passed_over.append((path, "broken link (its target does not exist)"))
                    continue
                except (RuntimeError, OSError):
                    found.passed_over.append((path, "link loop (the link leads back to itself)"))
                    continue
                if inside(real) or real in seen:
                    found.passed_over.append((path, f"link into the collection, not followed (its "
                                              f"{'tracks are' if real.is_dir() else 'file is'} indexed at {real})"))
                    continue
                found.links_followed += 1
            try:
                mode = os.stat(path).st_mode
            except OSError as error:
                found.passed_over.append((path, f"cannot be read ({error.strerror or error})"))
                continue
            if stat.S_ISDIR(mode):
                real = path.resolve()
                if real in seen and not entry.is_symlink():
                    continue
                seen.add(real)
                visit(path, rel)
            elif not stat.S_ISREG(mode):
                kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
                found.passed_over.append((path, f"not a regular file ({kind})"))
            elif path.suffix.lower() not in AUDIO_EXTENSIONS:
                found.other_files += 1
            else:
                found.files.append((path, rel.as_posix()))

    if not root.is_dir():
        raise FileNotFoundError(f"{source} is not a folder")
    visit(root, Path())
    return found


def folder_genre(relative: str, genres: str) -> str | None:
    """The genre a file's folders give it under the route `genres` (GENRE_ROUTES), or None."""
    folders = Path(relative).parts[:-1]
    if genres == "folders":
        return (genre_of(folders[0]) or safe_name(folders[0].lower())) if folders else UNSORTED
    if genres == "auto":
        return next((g for g in map(genre_of, folders) if g), None)
    return None


def discover(source: Path, genres: str = "folders", known: Mapping[str, str] | None = None,
             walked: Walk | None = None) -> tuple[list[Candidate], list[tuple[Path, str]]]:
    """Candidates under `source`, sorted by path, and the files passed over with a reason.

    Paths are relative to the genre root (`genre_root`) for ids and folder genres; `known` maps
    absolute paths to the ids a store already gave them (kept)."""
    if genres not in GENRE_ROUTES:
        raise ValueError(f"genres must be one of {GENRE_ROUTES}, not {genres!r}")
    source = Path(source).resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder")
    found = walked or walk(genre_root(source))
    passed_over = list(found.passed_over)
    files = []
    for path, relative in found.files:
        reason = _unreadable(path)
        if reason is None and path.stat().st_size == 0:
            reason = "empty file"
        if reason:
            passed_over.append((path, reason))
        else:
            files.append((path, relative))
    by_path = {relative: path for path, relative in files}
    ids = track_ids(list(by_path), {r: (known or {})[str(p)] for r, p in by_path.items() if str(p) in (known or {})})
    candidates = [Candidate(folder_genre(r, genres), ids[r], p, r) for p, r in files]
    return sorted(candidates, key=lambda c: c.relative), passed_over
