"""GTZAN clips' artists and titles, from Sturm's index shipped in model/stores/data/GTZANindex.txt
(see the README there for its source and citation), matched by GTZAN id (`blues.00012`)."""
from __future__ import annotations

import functools
import re
from pathlib import Path

INDEX_FILE = Path(__file__).resolve().parent / "data" / "GTZANindex.txt"
GTZAN_ID = re.compile(r"(blues|classical|country|disco|hiphop|jazz|metal|pop|reggae|rock)\.\d{5}")


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, tuple[str, str]]:
    names: dict[str, tuple[str, str]] = {}
    for line in INDEX_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("##") or ":::" not in line:
            continue
        clip, artist, title = ([p.strip() for p in line.split(":::")] + ["", ""])[:3]
        track_id = clip.removesuffix(".wav")
        if GTZAN_ID.fullmatch(track_id) and (artist or title):
            names[track_id] = (artist, title)
    return names


def gtzan_name(track_id: str) -> tuple[str, str] | None:
    """(artist, title) of the GTZAN clip `track_id` (either may be "" where Sturm's index lacks it),
    or None for an id that is not GTZAN's or a clip the index does not identify."""
    return _index().get(track_id) if GTZAN_ID.fullmatch(track_id) else None
