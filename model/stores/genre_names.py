"""Which of the ten genres (model.params.GENRES) a folder name or a genre tag means, if any.

A small, documented mapping (docs/own-music.md): a name is lower-cased, its '_' and '-' become spaces,
and it is looked up among the genres and ALIASES; a name of several genres ("Rock; Pop", "Pop/Rock")
means its first that maps. Otherwise a name ending in a genre's word ("Southern Rock", "Death Metal",
"Acid Jazz") means that genre. Anything else ("Ambient", "Electronic", "Soundtrack") means none: such
a track is placed by the classifier.
"""
from __future__ import annotations

import re

from model.params import GENRES

ALIASES: dict[str, str] = {
    "hip hop": "hiphop", "hiphop": "hiphop", "rap": "hiphop", "trap": "hiphop", "gangsta rap": "hiphop",
    "boom bap": "hiphop", "grime": "hiphop",
    "hard rock": "rock", "rock and roll": "rock", "rock n roll": "rock", "rock & roll": "rock", "punk": "rock",
    "grunge": "rock", "indie": "rock", "alternative": "rock", "britpop": "rock",
    "heavy metal": "metal", "thrash": "metal", "metalcore": "metal", "doom": "metal",
    "baroque": "classical", "opera": "classical", "symphony": "classical",
    "orchestral": "classical", "chamber music": "classical", "romantic": "classical",
    "bebop": "jazz", "swing": "jazz", "big band": "jazz", "bossa nova": "jazz", "fusion": "jazz",
    "delta blues": "blues", "chicago blues": "blues",
    "bluegrass": "country", "americana": "country", "country & western": "country", "honky tonk": "country",
    "disco": "disco", "nu disco": "disco", "eurodisco": "disco",
    "ska": "reggae", "dub": "reggae", "dancehall": "reggae", "rocksteady": "reggae", "roots reggae": "reggae",
    "synthpop": "pop", "k pop": "pop", "j pop": "pop", "kpop": "pop", "jpop": "pop", "dance pop": "pop",
    "electropop": "pop", "teen pop": "pop",
}
# The words a longer name may end in: "Southern Rock", "Death Metal", "Acid Jazz", "Chicago Blues".
_LAST_WORDS = {**{g: g for g in GENRES}, "hop": "hiphop", "rap": "hiphop", "reggae": "reggae"}
_SEPARATORS = re.compile(r"\s*(?:;|/|,|\|)\s*")
# ID3v1's numbered genres, as some taggers still write them ("(17)"), for the ones that map.
_ID3V1 = {0: "blues", 1: "classic rock", 2: "country", 4: "disco", 7: "hip hop", 8: "jazz", 9: "metal",
          13: "pop", 16: "reggae", 17: "rock", 32: "classical", 79: "hard rock"}


def _normal(name: str) -> str:
    name = re.sub(r"[_\-]+", " ", name.strip().lower())
    return re.sub(r"\s+", " ", name)


def _one(name: str) -> str | None:
    name = _normal(name)
    number = re.fullmatch(r"\(?(\d{1,3})\)?", name)
    if number:
        name = _ID3V1.get(int(number.group(1)), "")
    if not name:
        return None
    if name in GENRES:
        return name
    if name in ALIASES:
        return ALIASES[name]
    words = name.split(" ")
    if len(words) > 1:
        last = _LAST_WORDS.get(words[-1]) or ALIASES.get(words[-1])
        if last:
            return last
    return None


def genre_of(name: str | None) -> str | None:
    """The genre of GENRES that `name` (a folder name or a genre tag) means, or None."""
    if not name:
        return None
    for part in _SEPARATORS.split(name):
        genre = _one(part)
        if genre:
            return genre
    return None
