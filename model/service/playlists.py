"""Playlists any player opens: extended M3U in UTF-8 (`.m3u8`).

    #EXTM3U
    #PLAYLIST:More like Delta Ray – Night Train
    #EXTINF:241,Delta Ray – Night Train
    http://host/audio/Delta_Ray~Night_Songs~02_Night_Train

One `#EXTINF:<whole seconds>,<artist – title>` line before each entry; an entry is a URL of the service's
audio or a path relative to the collection ('/'-separated, as players read it on every system).
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

from model.stores.feature_store import Track
from model.stores.naming import display_name

MIMETYPE = "audio/x-mpegurl"


def _one_line(text: str) -> str:
    # A line break inside a title or a path would start a new entry.
    return re.sub(r"[\r\n\x00-\x1f\x7f]+", " ", text).strip()


def m3u8(title: str, tracks: Sequence[Track], location: Callable[[Track], str]) -> str:
    """The playlist `title` of `tracks`, each entry at `location(track)`."""
    lines = ["#EXTM3U", f"#PLAYLIST:{_one_line(title)}"]
    for track in tracks:
        lines.append(f"#EXTINF:{max(0, round(track.duration_s))},{_one_line(display_name(track))}")
        lines.append(_one_line(location(track)))
    return "\n".join(lines) + "\n"
