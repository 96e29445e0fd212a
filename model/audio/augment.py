"""Training augmentation of log-mel spectrograms: the same music as another recording chain would give
it (another level, a tilted balance of lows and highs, often a lower bandwidth).

GTZAN's clips come from radio, CDs and tapes of many bandwidths, and more-genres' from other sources
again; a head that has heard each artist through one chain only can learn the chain. Applied to the
mel power of `model.audio.features.log_mel` (log10(1 + LOG_MEL_SCALE * power)), so no audio is
decoded twice. Artist-grouped cross-validation chose it; pitch and tempo shifts measured worse
(docs/model-accuracy.md).
"""
from __future__ import annotations

import functools

import librosa
import numpy as np

from model.params import LOG_MEL_SCALE, N_MELS, SAMPLE_RATE

GAIN_DB = 6.0                   # dB: level drawn uniformly in +-GAIN_DB
TILT_DB = 6.0                   # dB: lowest band -t, highest +t, linear over the mel bands, t uniform in +-TILT_DB
BAND_LIMIT_P = 0.7              # how often a low-pass is added
CUTOFF_HZ = (4000.0, 8000.0)    # Hz: its cutoff, drawn uniformly (MusiCNN hears up to 8 kHz)
STOP_DB = 60.0                  # dB: its attenuation well above the cutoff
ROLL_OFF_HZ = 150.0             # Hz: the width of its logistic transition


def chain_params() -> dict:
    """What `recording_chain` draws from, to record with what it trained."""
    return {"gain_db": GAIN_DB, "tilt_db": TILT_DB, "band_limit_p": BAND_LIMIT_P, "cutoff_hz": list(CUTOFF_HZ),
            "stop_db": STOP_DB, "roll_off_hz": ROLL_OFF_HZ}


@functools.cache
def band_centres_hz(n_mels: int = N_MELS, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The centre frequencies (Hz) of `log_mel`'s mel bands."""
    # The centres of librosa.filters.mel's triangles (its defaults: Slaney's scale, 0 Hz to sr / 2).
    return librosa.mel_frequencies(n_mels=n_mels + 2, fmin=0.0, fmax=sr / 2)[1:-1]


def recording_chain(mel: np.ndarray, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A (frames, n_mels) log-mel as through another chain: a gain, a tilt and (with probability
    BAND_LIMIT_P) a low-pass drawn from `rng`, applied to its mel power; float32 like `log_mel`'s."""
    n_mels = mel.shape[-1]
    if n_mels != N_MELS:
        raise ValueError(f"expected a (frames, {N_MELS}) log-mel, got shape {mel.shape}")
    gain_db = rng.uniform(-GAIN_DB, GAIN_DB) + rng.uniform(-TILT_DB, TILT_DB) * np.linspace(-1.0, 1.0, n_mels)
    if rng.random() < BAND_LIMIT_P:
        cutoff = rng.uniform(*CUTOFF_HZ)
        gain_db = gain_db - STOP_DB / (1.0 + np.exp(-(band_centres_hz(n_mels, sr) - cutoff) / ROLL_OFF_HZ))
    power = (10.0 ** mel.astype(np.float64) - 1.0) / LOG_MEL_SCALE
    return np.log10(1.0 + LOG_MEL_SCALE * power * 10.0 ** (gain_db / 10.0)).astype(np.float32)
