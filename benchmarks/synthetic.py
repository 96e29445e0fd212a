"""Synthetic track vectors for benchmarking the index at catalogue sizes no real collection here has.

Real chroma summaries are clustered: tracks of a genre, of an artist, of a key sit near each other.
The synthetic library keeps that shape: each synthetic track is a real clip's summary (a centre,
from ../shared/gtzan-dev) plus Gaussian noise whose per-feature spread is that of the clips of the
centre's genre, and it takes the centre's genre as its label.

    python benchmarks/synthetic.py      # computes and caches the shared clips' summaries
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import REPO, SHARED_GTZAN  # noqa: E402

CENTRES_CACHE = REPO / "benchmarks" / ".cache" / "gtzan_dev_summaries.npz"


def clip_summaries(folder: Path = SHARED_GTZAN, cache: Path = CENTRES_CACHE) -> tuple[np.ndarray, list[str]]:
    """The chroma summary (model.index.knn.chroma_summary) of every clip under `folder`'s <genre>/
    folders, and the clips' genres; computed once (about a minute), then read from `cache`."""
    if cache.exists():
        with np.load(cache) as saved:
            return saved["summaries"], [str(g) for g in saved["genres"]]
    from model.atomic import atomic_write
    from model.audio.decoding import decode
    from model.audio.features import chromagram
    from model.index.knn import chroma_summary

    clips = sorted(p for p in folder.glob("*/*") if p.suffix.lower() in {".flac", ".wav", ".au"})
    if not clips:
        raise FileNotFoundError(f"no clips under {folder}: the synthetic library's centres are real clips' summaries")
    summaries = []
    for i, clip in enumerate(clips, 1):
        summaries.append(chroma_summary(chromagram(decode(clip).samples)))
        print(f"\rcentres: {i}/{len(clips)} clips", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    genres = [clip.parent.name for clip in clips]
    with atomic_write(cache) as f:
        np.savez(f, summaries=np.array(summaries), genres=np.array(genres))
    return np.array(summaries), genres


def synthetic_library(centres: np.ndarray, centre_genres: Sequence[str], n_tracks: int, spread: float = 1.0,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n_tracks` (n_tracks, d) float32 vectors and their genre labels (a numpy array of str).

    Each row is a centre drawn uniformly, plus noise whose standard deviation per feature is
    `spread` times the standard deviation of that feature over the centres of the centre's genre."""
    centres = np.asarray(centres, dtype=np.float64)
    labels = np.asarray(centre_genres)
    if len(centres) != len(labels):
        raise ValueError(f"{len(centres)} centres but {len(labels)} genres")
    genre_names, genre_of_centre = np.unique(labels, return_inverse=True)
    sigma = np.stack([centres[genre_of_centre == g].std(axis=0) for g in range(len(genre_names))])
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(centres), size=n_tracks)
    X = np.empty((n_tracks, centres.shape[1]), dtype=np.float32)
    for start in range(0, n_tracks, 100_000):   # blocks: float64 noise for 10^6 rows would take 288 MB at once
        rows = which[start:start + 100_000]
        noise = rng.standard_normal((len(rows), centres.shape[1]))
        X[start:start + len(rows)] = centres[rows] + spread * sigma[genre_of_centre[rows]] * noise
    return X, labels[which]


if __name__ == "__main__":
    summaries, genres = clip_summaries()
    print(f"{len(summaries)} clip summaries of {len(set(genres))} genres, cached in {CENTRES_CACHE}")
