import numpy as np
import pytest

from conftest import tone
from model.audio.features import (
    chromagram, excerpt_span, log_mel, log_mel_patches, patch_spans, patch_starts, patches, track_features,
)
from model.params import CHROMA_HOP, EXCERPT_S, HOP_LENGTH, N_CHROMA, N_MELS, PATCH_FRAMES, SAMPLE_RATE


def test_feature_shapes_follow_the_parameters():
    y = tone(5.0, SAMPLE_RATE)
    features = track_features(y)
    assert features["mel"].shape == (1 + len(y) // HOP_LENGTH, N_MELS)
    assert features["chroma"].shape == (N_CHROMA, 1 + len(y) // CHROMA_HOP)
    assert features["mel"].dtype == features["chroma"].dtype == np.float32
    assert features["mel"].min() >= 0


def test_features_refuse_another_sample_rate():
    with pytest.raises(ValueError, match="16000 Hz"):
        log_mel(tone(2.0, 22050), sr=22050)
    with pytest.raises(ValueError, match="16000 Hz"):
        chromagram(tone(2.0, 22050), sr=22050)


def test_short_clip_is_one_zero_padded_patch():
    mel = np.ones((120, N_MELS), np.float32)
    batch = patches(mel)
    assert batch.shape == (1, PATCH_FRAMES, N_MELS)
    assert np.all(batch[0, :120] == 1) and np.all(batch[0, 120:] == 0)


def test_whole_patches_as_the_wheel_cuts_them():
    assert list(patch_starts(1876)) == [i * PATCH_FRAMES for i in range(10)]
    assert list(patch_starts(PATCH_FRAMES)) == [0]


def test_long_tracks_get_a_bounded_number_of_patches_spread_over_them():
    n_frames = 10 * 60 * SAMPLE_RATE // HOP_LENGTH  # ten minutes
    starts = patch_starts(n_frames, max_patches=5)
    assert len(starts) == 5 and starts[0] == 0 and starts[-1] == n_frames - PATCH_FRAMES
    assert np.all(np.diff(starts) > PATCH_FRAMES)
    assert patches(np.zeros((n_frames, N_MELS), np.float32), max_patches=5).shape == (5, PATCH_FRAMES, N_MELS)


# Log-mel values lie in [0, ~10]. Computed alone or as part of a longer signal, BLAS and FFT may
# differ in the last bits (another CPU, another summation order), never by more than this; a patch
# cut one frame off, or a padding mistake, differs by far more (tenths to units).
LOG_MEL_TOLERANCE = 1e-4


@pytest.mark.parametrize("seconds", [2.0, 30.0, 241.3])
def test_patches_computed_alone_equal_those_cut_from_the_whole_log_mel(seconds):
    y = tone(seconds, SAMPLE_RATE)
    np.testing.assert_allclose(log_mel_patches(y, 5), patches(log_mel(y), 5), rtol=0, atol=LOG_MEL_TOLERANCE)


def test_the_tolerance_catches_a_patch_one_frame_off():
    y = tone(30.0, SAMPLE_RATE)
    mel = log_mel(y)
    starts = patch_starts(len(mel), 5)
    shifted = np.stack([mel[s + 1:s + 1 + PATCH_FRAMES] for s in starts[:-1]])
    assert np.max(np.abs(shifted - log_mel_patches(y, 5)[:-1])) > 100 * LOG_MEL_TOLERANCE


def test_long_signals_are_computed_in_blocks_with_the_same_frames():
    y = tone(150.0, SAMPLE_RATE, seed=3)   # longer than BLOCK_S: blocks of frames
    mel = log_mel(y)
    assert mel.shape == (1 + len(y) // HOP_LENGTH, N_MELS)
    head = log_mel(y[:int(50 * SAMPLE_RATE)])   # under BLOCK_S: computed whole
    np.testing.assert_allclose(mel[:len(head) - 10], head[:-10], rtol=0, atol=LOG_MEL_TOLERANCE)
    chroma = chromagram(y)   # of the middle excerpt only
    assert chroma.shape == (N_CHROMA, 1 + int(EXCERPT_S * SAMPLE_RATE) // CHROMA_HOP) and np.all(np.isfinite(chroma))
    # Each frame is normalised to a peak of 1, as librosa's chroma_stft does.
    np.testing.assert_allclose(chroma.max(axis=0), 1.0, atol=1e-5)


def test_the_chromagram_is_of_the_middle_excerpt_and_reads_nothing_else():
    y = tone(600.0, SAMPLE_RATE, seed=4)   # ten minutes
    start, stop = excerpt_span(len(y))
    assert stop - start == EXCERPT_S * SAMPLE_RATE and abs((start + stop) / 2 - len(y) / 2) <= 1
    outside = y.copy()
    outside[:start] = outside[stop:] = np.nan   # a read of any other sample would spread NaN
    np.testing.assert_allclose(chromagram(outside), chromagram(y[start:stop]), rtol=0, atol=1e-6)
    assert excerpt_span(5 * SAMPLE_RATE) == (0, 5 * SAMPLE_RATE)


@pytest.mark.parametrize("seconds", [2.0, 30.0, 600.0])
def test_patches_read_only_their_spans(seconds):
    y = tone(seconds, SAMPLE_RATE, seed=5)
    spans = patch_spans(len(y))
    holes = np.full_like(y, np.nan)
    for start, stop in spans:
        holes[start:stop] = y[start:stop]
    np.testing.assert_allclose(log_mel_patches(holes), log_mel_patches(y), rtol=0, atol=LOG_MEL_TOLERANCE)
    # Five patches of ~3 s: a ten-minute song's analysis reads a fortieth of it.
    assert sum(stop - start for start, stop in spans) <= max(len(y), 5 * (PATCH_FRAMES + 2) * HOP_LENGTH)


def test_a_short_clip_is_zero_padded_or_looped_to_one_patch():
    mel = np.arange(100 * 96, dtype=np.float32).reshape(100, 96)
    zero, loop = patches(mel), patches(mel, loop=True)
    assert zero.shape == loop.shape == (1, 187, 96)
    assert np.array_equal(zero[0, :100], mel) and not zero[0, 100:].any()
    assert np.array_equal(loop[0, :100], mel) and np.array_equal(loop[0, 100:], mel[:87])
