"""The labelled collections the genre head is trained and measured on: GTZAN's development clips
(`../shared/gtzan-dev`) and more-genres (`../shared/more-genres`), read from their MANIFEST.csv.

Every clip carries its artist, because the only figure we quote is cross-validated by artist (a
model that has heard an artist recognises the artist, not the genre), and a set of candidate genres:
one genre for GTZAN, several where more-genres' source names a coarser class (AllMusic's one
"Pop/Rock" = pop, rock or metal), which the head learns as "any of these" (`model.head_fit`).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.params import GENRES

# more-genres' coarse candidates, in the genres they stand for.
COARSE = {"pop/rock/metal": ("pop", "rock", "metal")}


class CorpusError(ValueError):
    """A collection that is missing or whose manifest this version cannot read."""


@dataclass(frozen=True)
class Clip:
    path: Path
    candidates: tuple[int, ...]   # indices into GENRES; one for a labelled clip
    artist: str                   # "" where unknown: such a clip is an artist group of its own
    duration_s: float
    source: str                   # "gtzan" or "more-genres"

    @property
    def key(self) -> str:
        """Names the clip in caches: its collection and path inside it."""
        return f"{self.source}/{self.path.parent.name}/{self.path.name}"

    @property
    def label(self) -> int:
        """Its genre, or -1 where it has several candidates."""
        return self.candidates[0] if len(self.candidates) == 1 else -1


def _manifest(root: Path) -> list[dict]:
    path = Path(root) / "MANIFEST.csv"
    if not path.exists():
        raise CorpusError(f"no MANIFEST.csv in {root}")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def gtzan_dev(root: Path) -> list[Clip]:
    """GTZAN's development clips, with the artist of Sturm's index (`artist` column)."""
    return [Clip(Path(root) / row["file"], (GENRES.index(row["genre"]),), row["artist"].strip(),
                 float(row["duration_s"]), "gtzan") for row in _manifest(root)]


def more_genres(root: Path) -> list[Clip]:
    """more-genres' clips; `candidates` ("a|b", "pop/rock/metal") become sets of genres."""
    clips = []
    for row in _manifest(root):
        names = [g for c in row["candidates"].split("|") for g in COARSE.get(c, (c,))]
        unknown = [n for n in names if n not in GENRES]
        if unknown or not names:
            raise CorpusError(f"{root}: {row['file']} names genres this version does not know: {unknown}")
        clips.append(Clip(Path(root) / row["file"], tuple(sorted({GENRES.index(n) for n in names})),
                          row["artist"].strip(), float(row["duration_s"]), "more-genres"))
    return clips


def artist_groups(clips: list[Clip]) -> np.ndarray:
    """A group number per clip: one per artist (names compared case-insensitively, across both
    collections), and one per clip of unknown artist."""
    numbers: dict[str, int] = {}
    groups = np.empty(len(clips), dtype=int)
    for i, clip in enumerate(clips):
        name = " ".join(clip.artist.casefold().split())
        key = name if name else f"\0unknown {i}"
        groups[i] = numbers.setdefault(key, len(numbers))
    return groups


def artist_folds(groups: np.ndarray, strata: np.ndarray, n_folds: int) -> np.ndarray:
    """Fold of each clip, such that no artist group is in two folds, and the folds hold each stratum
    (genre, or a set of candidates) about evenly: scikit-learn's StratifiedGroupKFold, unshuffled
    (deterministic). A group's stratum is that of most of its clips."""
    from sklearn.model_selection import StratifiedGroupKFold

    _, strata = np.unique(strata, return_inverse=True)
    folds = np.empty(len(groups), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=n_folds)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(groups)), strata, groups)):
        folds[held] = fold
    return folds
