"""The training augmentation: another recording chain (a gain, a tilt, often a low-pass) applied to a
log-mel, the same at every frame, seeded, and silence left silent."""
import numpy as np
import pytest

from model.audio.augment import (BAND_LIMIT_P, CUTOFF_HZ, GAIN_DB, STOP_DB, TILT_DB, band_centres_hz,
                                 recording_chain)
from model.params import LOG_MEL_SCALE, N_MELS, SAMPLE_RATE


def level_change_db(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per frame and band, how many dB `after`'s mel power is above `before`'s."""
    def power(m):
        return (10.0 ** m.astype(np.float64) - 1.0) / LOG_MEL_SCALE
    return 10.0 * np.log10(power(after) / power(before))


def test_a_chain_is_a_fixed_filter_within_its_bounds_and_seeded():
    mel = np.random.default_rng(0).uniform(0.5, 3.0, size=(50, N_MELS)).astype(np.float32)
    out = recording_chain(mel, np.random.default_rng(7))
    assert out.shape == mel.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, recording_chain(mel, np.random.default_rng(7)))
    change = level_change_db(mel, out)
    # The same change in every frame (a filter, not a time-varying effect), up to float32 rounding.
    np.testing.assert_allclose(change, np.broadcast_to(change.mean(axis=0), change.shape), atol=0.05)
    assert change.max() <= GAIN_DB + TILT_DB + 0.05 and change.min() >= -(GAIN_DB + TILT_DB + STOP_DB) - 0.05
    assert not np.array_equal(out, recording_chain(mel, np.random.default_rng(8)))
    silence = np.zeros((10, N_MELS), np.float32)
    np.testing.assert_array_equal(recording_chain(silence, np.random.default_rng(7)), silence)


def test_about_the_chosen_share_of_chains_cut_the_highs():
    mel = np.full((1, N_MELS), 2.0, np.float32)
    centres = band_centres_hz(N_MELS, SAMPLE_RATE)
    low, high = np.argmin(np.abs(centres - 1000.0)), np.flatnonzero(centres > CUTOFF_HZ[1] - 300.0)[0]
    assert centres[high] < SAMPLE_RATE / 2
    cut = []
    for seed in range(400):
        change = level_change_db(mel, recording_chain(mel, np.random.default_rng(seed)))[0]
        # Without a low-pass the top band differs from 1 kHz's by the tilt alone (at most 2 TILT_DB).
        cut.append(change[high] < change[low] - 2 * TILT_DB - 1.0)
    assert abs(np.mean(cut) - BAND_LIMIT_P) < 0.1


def test_a_log_mel_of_other_bands_is_refused():
    with pytest.raises(ValueError, match="log-mel"):
        recording_chain(np.zeros((10, 40), np.float32), np.random.default_rng(0))
