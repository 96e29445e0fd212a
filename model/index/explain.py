"""Why a pick was chosen, from the features that chose it, and how close it is, in words a listener reads.

Closeness is a share of the library: a pick "closer than 97 % of the library" is nearer the upload in the
search space than 97 % of the library's other tracks that could have been picked. The same share is
taken in each aspect of the search space: in the chroma summary, its mean (which notes and chords
sound) and its spread and frame-to-frame change (how the harmony moves); in the network's embedding,
the sound (instruments, production). An aspect is named for a pick that is nearer the upload in it than
CLOSE_SHARE of the library is; the nearest of them is the pick's main reason. A pick's genre, key
(model.index.key, from the same chroma means) and tempo (stored at preprocessing) are said beside them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from model.index.key import Key

# An aspect is named for a pick that is nearer the upload in it than this share of the library.
CLOSE_SHARE = 0.75
# Tempos within this share of each other are the same (the estimate's lag resolution is about 2 %).
TEMPO_SAME = 0.04
# Rows (evenly spaced over the library) the shares are estimated from in a larger library: comparing an
# upload with all 10^6 tracks would take longer than finding its picks; a share of 10^4 rows is off by
# well under 1 % of the library.
SHARE_SAMPLE = 10000
ASPECT_WORDS = {"notes": "similar notes and chords", "movement": "harmony that moves at a similar pace",
                "sound": "similar sound (instruments, production)"}


@dataclass(frozen=True)
class Reason:
    kind: str                      # "genre", "key" or an aspect of ASPECT_WORDS
    text: str                      # for the page
    main: bool = False             # the aspect that brought the pick closest
    values: dict[str, Any] = field(default_factory=dict)   # the facts behind the text, for the API

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "main": self.main, **self.values}


def aspects(spaces: Sequence[tuple[str, slice]]) -> list[tuple[str, slice]]:
    """The aspects (name, columns) of a search space whose feature spaces `spaces` names: a chroma
    summary's first 12 columns are its mean, the rest how it moves (model.index.knn.chroma_summary)."""
    out = []
    for name, columns in spaces:
        if name == "chroma":
            middle = columns.start + 12
            out += [("notes", slice(columns.start, middle)), ("movement", slice(middle, columns.stop))]
        else:
            out.append(("sound", columns))
    return out


def sample_rows(n_rows: int, eligible: np.ndarray) -> np.ndarray:
    """Up to about SHARE_SAMPLE rows, evenly spaced over a library of `n_rows`, of those `eligible` (a mask)."""
    rows = np.arange(0, n_rows, max(1, n_rows // SHARE_SAMPLE))
    return rows[eligible[rows]]


def closeness(query: np.ndarray, library: np.ndarray, picks: Sequence[int], compared: np.ndarray,
              parts: Sequence[tuple[str, slice]]) -> tuple[list[float], list[dict[str, float]]]:
    """For each picked row: the percentage of the rows `compared` (picks left out) farther from `query`
    than it, in the whole space and in each part (name, columns) of `parts`."""
    compared = compared[~np.isin(compared, np.asarray(picks, dtype=int))]
    diff_others = library[compared] - query
    diff_picks = library[np.asarray(picks, dtype=int)] - query

    def share(columns: slice) -> np.ndarray:
        others = np.linalg.norm(diff_others[:, columns], axis=1)
        mine = np.linalg.norm(diff_picks[:, columns], axis=1)
        if not len(others):
            return np.full(len(mine), 100.0)
        return 100.0 * (others[None, :] > mine[:, None]).mean(axis=1)

    overall = share(slice(None))
    by_part = {name: share(columns) for name, columns in parts}
    return [float(p) for p in overall], [{name: float(v[i]) for name, v in by_part.items()} for i in range(len(picks))]


def key_reason(pick: Key | None, yours: Key | None) -> Reason | None:
    """The pick's key against the upload's, where both have one."""
    if pick is None or yours is None:
        return None
    values = {"key": pick.name, "your_key": yours.name}
    if (pick.tonic, pick.mode) == (yours.tonic, yours.mode):
        return Reason("key", f"same key ({pick.name})", values=values)
    if (pick.tonic, pick.mode) == yours.relative():
        return Reason("key", f"relative key: {pick.name}, yours {yours.name} (the same notes)", values=values)
    return Reason("key", f"key {pick.name}, yours {yours.name}", values=values)


def tempo_reason(pick_bpm: float | None, your_bpm: float | None) -> Reason | None:
    """The pick's tempo against the upload's, where both have one (model.audio.features.tempo); twice or
    half the other (within TEMPO_SAME) is said as such: a tempo estimate often lands an octave off."""
    if not pick_bpm or not your_bpm:
        return None
    pick, yours = round(pick_bpm), round(your_bpm)
    values = {"bpm": pick, "your_bpm": yours}
    if abs(pick_bpm / your_bpm - 1) <= TEMPO_SAME:
        return Reason("tempo", f"same tempo ({pick} BPM)" if pick == yours else f"tempo {pick} BPM, yours {yours}",
                      values=values)
    for ratio, words in ((2.0, "double time"), (0.5, "half time")):
        if abs(pick_bpm / your_bpm / ratio - 1) <= TEMPO_SAME:
            return Reason("tempo", f"tempo {pick} BPM, yours {yours} ({words})", values=values)
    return Reason("tempo", f"tempo {pick} BPM, yours {yours}", values=values)


def reasons(pick_genre: str, genre_order: Sequence[str], shares: dict[str, float], pick_key: Key | None,
            your_key: Key | None, pick_bpm: float | None = None, your_bpm: float | None = None) -> list[Reason]:
    """A pick's reasons: its genre against the upload's (`genre_order`, most probable first), the aspects
    it is close in (`shares`: percentages from `closeness`), the nearest of them marked main, its key and its
    tempo."""
    why = []
    if genre_order and pick_genre == genre_order[0]:
        why.append(Reason("genre", f"same genre ({pick_genre})", values={"genre": pick_genre}))
    elif pick_genre in genre_order[1:]:
        why.append(Reason("genre", f"{pick_genre}, the next most likely genre", values={"genre": pick_genre}))
    close = sorted((s, name) for name, s in shares.items() if s >= 100 * CLOSE_SHARE)
    for rank, (s, name) in enumerate(reversed(close)):
        why.append(Reason(name, ASPECT_WORDS[name], main=rank == 0, values={"percentile": round(s, 1)}))
    return why + [r for r in (key_reason(pick_key, your_key), tempo_reason(pick_bpm, your_bpm)) if r]
