"""A track's key, estimated from its mean chroma: the Krumhansl-Schmuckler key-finding algorithm.

The 12-d mean of a chromagram (pitch classes from C, as librosa orders them: the first 12 values of
`model.index.knn.chroma_summary`) is correlated with the Krumhansl-Kessler probe-tone profiles of the
24 major and minor keys; the key with the highest correlation is the estimate. Where no key
correlates at least MIN_CORRELATION (drums, noise, atonal music), no key is claimed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.params import N_CHROMA

# Krumhansl & Kessler (1982), probe-tone ratings of the pitch classes from the tonic up.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor")
# Below this correlation the chroma has no clear tonal centre: no key is named.
MIN_CORRELATION = 0.5


def _profiles() -> np.ndarray:
    """(24, 12) key profiles, standardised: rows 0-11 C..B major, 12-23 C..B minor."""
    rows = [np.roll(profile, tonic) for profile in (MAJOR_PROFILE, MINOR_PROFILE) for tonic in range(N_CHROMA)]
    rows = np.array(rows)
    return (rows - rows.mean(axis=1, keepdims=True)) / rows.std(axis=1, keepdims=True)


PROFILES = _profiles()


@dataclass(frozen=True)
class Key:
    tonic: int          # pitch class, 0 = C
    mode: str           # "major" | "minor"
    correlation: float  # with the key's profile, -1..1

    @property
    def name(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    def relative(self) -> tuple[int, str]:
        """The relative key (same notes, other tonic): A minor for C major, and back."""
        return ((self.tonic + 9) % 12, "minor") if self.mode == "major" else ((self.tonic + 3) % 12, "major")


def key_correlations(chroma_means: np.ndarray) -> np.ndarray:
    """(n, 24) correlations of (n, 12) mean chromas with the 24 key profiles (rows of PROFILES)."""
    x = np.atleast_2d(np.asarray(chroma_means, dtype=np.float64))
    if x.shape[1] != N_CHROMA:
        raise ValueError(f"expected (n, {N_CHROMA}) mean chromas, got shape {x.shape}")
    spread = x.std(axis=1, keepdims=True)
    x = (x - x.mean(axis=1, keepdims=True)) / np.where(spread > 1e-12, spread, 1.0)
    return x @ PROFILES.T / N_CHROMA


def estimate_keys(chroma_means: np.ndarray) -> list[Key | None]:
    """The key of each (n, 12) mean chroma, or None where none correlates at least MIN_CORRELATION."""
    r = key_correlations(chroma_means)
    best = np.argmax(r, axis=1)
    return [Key(int(b % 12), MODES[b // 12], float(c)) if c >= MIN_CORRELATION else None
            for b, c in zip(best, r[np.arange(len(r)), best])]


def estimate_key(chroma_mean: np.ndarray) -> Key | None:
    """The key of one 12-d mean chroma (`estimate_keys`)."""
    return estimate_keys(np.asarray(chroma_mean)[None, :])[0]
