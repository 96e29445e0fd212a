"""Key estimation (Krumhansl-Schmuckler on the mean chroma), on synthetic audio of known key."""
import numpy as np
import pytest

from model.audio.features import chromagram
from model.index.key import PITCH_NAMES, estimate_key, estimate_keys
from model.index.knn import chroma_summary
from model.params import SAMPLE_RATE


def cadence(tonic: int, mode: str, seconds: float = 12.0, seed: int = 0) -> np.ndarray:
    """i-iv-V-i (minor) or I-IV-V-I (major) in the key of pitch class `tonic`: triads of harmonic-rich tones
    over the root in the bass, each chord a quarter of the clip, with a little noise."""
    third = 3 if mode == "minor" else 4
    t = np.arange(int(seconds / 4 * SAMPLE_RATE)) / SAMPLE_RATE
    chords = []
    for root, chord_third in ((0, third), (5, third), (7, 4), (0, third)):
        y = np.zeros_like(t)
        for interval in (0, chord_third, 7):
            f = 220.0 * 2 ** ((tonic - 9 + root + interval) / 12)   # A3 = 220 Hz is pitch class 9
            y += sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 5))
        y += np.sin(2 * np.pi * 110.0 * 2 ** ((tonic - 9 + root) / 12) * t)
        chords.append(y * np.exp(-t))
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t) * 4)
    return (0.1 * np.concatenate(chords) + noise).astype(np.float32)


@pytest.mark.parametrize("tonic, mode", [(9, "minor"), (2, "major"), (0, "major"), (4, "minor"), (7, "major"),
                                         (11, "minor"), (3, "major"), (6, "minor")])
def test_the_key_of_a_cadence_is_found(tonic, mode):
    key = estimate_key(chroma_summary(chromagram(cadence(tonic, mode)))[:12])
    assert key is not None and (key.tonic, key.mode) == (tonic, mode), key
    assert key.name == f"{PITCH_NAMES[tonic]} {mode}"


def test_noise_has_no_key():
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 10 * SAMPLE_RATE).astype(np.float32)
    assert estimate_key(chroma_summary(chromagram(noise))[:12]) is None


def test_keys_of_many_tracks_at_once_and_a_flat_chroma():
    means = np.array([chroma_summary(chromagram(cadence(9, "minor")))[:12], np.full(12, 0.3)])
    keys = estimate_keys(means)
    assert keys[0].name == "A minor" and keys[1] is None
    with pytest.raises(ValueError):
        estimate_keys(np.zeros((2, 13)))
