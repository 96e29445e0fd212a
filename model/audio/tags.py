"""A music file's tags (title, artist, album, track number, year, genre) and duration, read with PyAV
(FFmpeg's demuxers: ID3 in MP3, Vorbis comments in FLAC/Ogg/Opus, iTunes atoms in M4A, RIFF INFO in
WAV). PyAV is already a dependency (model.audio.av_decode), so no tag library is added."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av

# FFmpeg's names for each field, first found wins (ID3's TPE1 is "artist", TPE2 "album_artist").
_FIELDS = {
    "title": ("title",),
    "artist": ("artist", "album_artist", "performer", "composer"),
    "album": ("album",),
    "track": ("track", "tracknumber"),
    "year": ("date", "year", "originaldate", "tdrc", "tyer"),
    "genre": ("genre",),
}
MAX_TEXT = 200   # characters kept of a tag: a page and a playlist line stay readable


@dataclass(frozen=True)
class Tags:
    title: str = ""
    artist: str = ""
    album: str = ""
    track_no: int | None = None
    year: int | None = None
    genre: str = ""
    duration_s: float | None = None


def _text(value: str) -> str:
    # Control characters (a newline in a title) would break a playlist line or a header.
    return re.sub(r"[\x00-\x1f\x7f]+", " ", str(value)).strip()[:MAX_TEXT]


def _number(value: str, low: int, high: int) -> int | None:
    match = re.match(r"\s*(\d+)", value or "")
    number = int(match.group(1)) if match else None
    return number if number is not None and low <= number <= high else None


def read_tags(source: Path | str | BinaryIO) -> Tags:
    """The tags of a file (a path, or a binary file object such as an upload's bytes); empty Tags where it
    has none or FFmpeg cannot open it (the audio is decoded, and refused with its reason, elsewhere)."""
    try:
        with av.open(source if hasattr(source, "read") else str(source), metadata_errors="ignore") as container:
            found: dict[str, str] = {}
            # Ogg and Opus keep their comments on the stream, the other containers on the file.
            for metadata in [container.metadata, *(s.metadata for s in container.streams.audio[:1])]:
                for key, value in metadata.items():
                    found.setdefault(key.lower(), value)
            duration = container.duration / av.time_base if container.duration else None
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return Tags()

    def first(field: str) -> str:
        return next((_text(found[k]) for k in _FIELDS[field] if _text(found.get(k, ""))), "")

    return Tags(title=first("title"), artist=first("artist"), album=first("album"),
                track_no=_number(first("track"), 0, 9999), year=_number(first("year"), 1000, 9999),
                genre=first("genre"), duration_s=duration)
