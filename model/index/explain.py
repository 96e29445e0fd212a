"""Why a pick was chosen, in a few words, from the features that chose it.

A pick's genre says whether it came from the upload's predicted genre (or, the genre holding too
few tracks, from the next most likely one). Each feature space the search used (chroma summaries:
harmony and key profile; the network's embedding: timbre) is named when the pick is among the
CLOSE_SHARE of library tracks nearest to the upload in that space alone.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# A space is named for a pick that is nearer the upload in it than this share of the library.
CLOSE_SHARE = 0.25
# Rows (evenly spaced over the library) that share is estimated from in a larger library: comparing an
# upload with all 10^6 tracks would take longer than finding its picks; the quartile of 10^4 distances
# is off by well under 1% of the library.
SHARE_SAMPLE = 10000
SPACE_WORDS = {"chroma": "close harmony/key profile", "embedding": "close timbre"}


def reasons(query: np.ndarray, library: np.ndarray, spaces: Sequence[tuple[str, slice]], picks: Sequence[int],
            pick_genres: Sequence[str], genre_order: Sequence[str], exclude: Sequence[int] = ()) -> list[list[str]]:
    """For each picked library row, its reasons.

    `query` and `library` are rows of the search space, whose columns `spaces` names (space name,
    columns); `genre_order` is the upload's genres, most probable first; rows in `exclude` (copies
    of the upload) are left out of the comparison."""
    others = np.arange(0, len(library), max(1, len(library) // SHARE_SAMPLE))
    others = others[~np.isin(others, np.asarray(exclude, dtype=int))]
    thresholds = {}
    for name, columns in spaces:
        distances = np.linalg.norm(library[others][:, columns] - query[columns], axis=1)
        thresholds[name] = np.quantile(distances, CLOSE_SHARE) if len(distances) else -np.inf
    result = []
    for row, genre in zip(picks, pick_genres):
        why = []
        if genre_order and genre == genre_order[0]:
            why.append(f"same genre ({genre})")
        elif genre in genre_order[1:]:
            why.append(f"{genre}, the next most likely genre")
        why += [SPACE_WORDS[name] for name, columns in spaces
                if np.linalg.norm(library[row, columns] - query[columns]) <= thresholds[name]]
        result.append(why)
    return result
