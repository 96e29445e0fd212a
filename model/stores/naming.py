"""How a library track is named wherever it is shown: by its tags' title and artist; a GTZAN clip
without tags by Sturm's index (model.stores.gtzan_names); otherwise by its file name."""
from __future__ import annotations

import re
from pathlib import PurePath

from model.stores.feature_store import Track
from model.stores.gtzan_names import gtzan_name


def _line(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


def title_and_artist(track: Track) -> tuple[str, str]:
    """(title, artist) of `track`: the artist may be "" (unknown), the title never is."""
    if track.title:
        return track.title, track.artist
    known = gtzan_name(track.id)
    if known is not None:
        artist, title = known
        return title or track.id, artist
    stem = PurePath(track.path or track.source).stem
    return _line(stem) or track.id, track.artist


def display_name(track: Track) -> str:
    """"Artist – Title", or the title alone where the artist is unknown."""
    title, artist = title_and_artist(track)
    return f"{artist} – {title}" if artist else title


def describe(track: Track) -> dict:
    """What the API and the page say of a track."""
    title, artist = title_and_artist(track)
    return {"id": track.id, "genre": track.genre, "title": title, "artist": artist, "album": track.album,
            "year": track.year, "track_no": track.track_no, "duration_s": track.duration_s,
            "genre_route": track.route or None, "name": display_name(track)}
