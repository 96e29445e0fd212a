"""k-nearest-neighbour picks over per-track feature vectors, searched genre by genre.

The vectors summarise a whole track, so that where a clip starts does not matter: a chromagram
becomes statistics over time (`chroma_summary`), not frames at fixed time positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

import numpy as np

from model.params import N_CHROMA

K = 3
SCOPES = ("genre", "library")


def chroma_summary(chroma: np.ndarray) -> np.ndarray:
    """A (3 * N_CHROMA,) float64 vector of a (N_CHROMA, frames) chromagram: per pitch class, the mean
    and standard deviation over time and the mean absolute frame-to-frame change.

    Every statistic is a mean over frames, so reordering or shifting frames in time leaves it
    (up to the frames at the edges) unchanged."""
    chroma = np.asarray(chroma, dtype=np.float64)
    if chroma.ndim != 2 or chroma.shape[0] != N_CHROMA or chroma.shape[1] < 2:
        raise ValueError(f"expected a ({N_CHROMA}, frames >= 2) chromagram, got shape {chroma.shape}")
    change = np.abs(np.diff(chroma, axis=1)).mean(axis=1)
    return np.concatenate([chroma.mean(axis=1), chroma.std(axis=1), change])


class SpaceScaler:
    """Standardises each feature space (a block of columns) over the library and joins them.

    Each block is also divided by the square root of its width, so that a 200-d embedding does
    not drown a 36-d chroma summary: with weights w, a space's share of a squared distance is
    about proportional to its w squared."""

    def __init__(self, weights: Sequence[float] | None = None) -> None:
        self.weights = weights

    def fit(self, blocks: Sequence[np.ndarray]) -> "SpaceScaler":
        weights = self.weights if self.weights is not None else [1.0] * len(blocks)
        if len(weights) != len(blocks):
            raise ValueError(f"{len(blocks)} feature spaces but {len(weights)} weights")
        self.mean_ = [np.mean(b, axis=0) for b in blocks]
        # A feature constant over the library carries no distance: scale 1 avoids dividing by 0.
        self.scale_ = [np.where(s > 1e-12, s, 1.0) for s in (np.std(b, axis=0) for b in blocks)]
        self.factor_ = [w / np.sqrt(np.shape(b)[1]) for w, b in zip(weights, blocks)]
        return self

    def transform(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        """(n, sum of widths) standardised rows; 1-d blocks (one track) give one row."""
        parts = [(np.atleast_2d(b) - m) / s * f for b, m, s, f in zip(blocks, self.mean_, self.scale_, self.factor_)]
        return np.hstack(parts)


@dataclass(frozen=True)
class Pick:
    index: int        # row of the library matrix
    distance: float   # Euclidean, in the standardised space


class GenreKnn:
    """Exact k-NN (Euclidean) whose search is confined to the most probable genre's tracks (scope "genre"), or
    covers the whole library (scope "library").

    With scope "genre", genres are searched in the order given at query time (most probable
    first) until k tracks are found: a genre holding fewer than k tracks is topped up from the
    next. Library genres not in that order (a folder of one's own music) come last, nearest first."""

    dtype = np.float64   # of the library matrix X_

    def __init__(self, k: int = K, scope: str = "genre") -> None:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
        self.k, self.scope = k, scope

    def fit(self, X: np.ndarray, genres: Sequence[str]) -> "GenreKnn":
        X = np.asarray(X, dtype=self.dtype)
        if len(X) != len(genres):
            raise ValueError(f"{len(X)} rows but {len(genres)} genres")
        groups: dict[str, list[int]] = {}
        for row, genre in enumerate(genres):
            groups.setdefault(genre if self.scope == "genre" else "", []).append(row)
        self.X_ = X
        self.rows_ = {g: np.array(rows) for g, rows in groups.items()}
        return self

    def _nearest(self, group: str, x: np.ndarray, wanted: int, exclude: Collection[int]) -> list[Pick]:
        # Exhaustive search: for a library of thousands of tracks it takes well under a millisecond,
        # where scikit-learn's NearestNeighbors spends ~15 ms starting OpenMP threads that then
        # fight the network's threads for the cores.
        rows = self.rows_[group]
        if exclude:
            rows = rows[~np.isin(rows, list(exclude))]
        distances = np.linalg.norm(self.X_[rows] - x, axis=1)
        order = np.argsort(distances, kind="stable")[:wanted]
        return [Pick(int(rows[i]), float(distances[i])) for i in order]

    def query(self, x: np.ndarray, genre_order: Sequence[str] = (), exclude: Collection[int] = (),
              k: int | None = None) -> list[Pick]:
        """The k nearest library rows to the vector `x` (fewer only when the library holds fewer),
        leaving out the rows in `exclude`. `genre_order` ranks genres, most probable first; `k`: how
        many (default: the index's own k)."""
        x = np.asarray(x, dtype=np.float64).ravel()
        exclude = set(exclude)
        k = k or self.k
        if self.scope == "library":
            return self._nearest("", x, k, exclude)
        picks: list[Pick] = []
        ranked = [g for g in genre_order if g in self.rows_]
        for genre in ranked:
            picks += self._nearest(genre, x, k - len(picks), exclude)
            if len(picks) == k:
                return picks
        rest = [p for g in self.rows_ if g not in ranked for p in self._nearest(g, x, k - len(picks), exclude)]
        return picks + sorted(rest, key=lambda p: p.distance)[:k - len(picks)]
