"""Features computed from 16 kHz mono samples: MusiCNN's log-mel input, its patches, and chromagrams."""
from __future__ import annotations

import warnings

import librosa
import numpy as np

from model.params import (
    CHROMA_HOP, CHROMA_N_FFT, HOP_LENGTH, LOG_MEL_SCALE, MAX_PATCHES, N_CHROMA, N_FFT, N_MELS, PATCH_FRAMES,
    SAMPLE_RATE, SHORT_CROP_S,
)


def _check_rate(sr: int) -> None:
    if sr != SAMPLE_RATE:
        raise ValueError(f"features need {SAMPLE_RATE} Hz samples, got {sr} Hz")


def _log_mel(y: np.ndarray, center: bool) -> np.ndarray:
    """log10(1 + 10000 * power mel) of the last axis of `y`, as (..., frames, N_MELS) float32."""
    mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS,
                                         center=center)
    return np.log10(1.0 + LOG_MEL_SCALE * np.swapaxes(mel, -1, -2)).astype(np.float32)


def log_mel(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """MusiCNN's input: log10(1 + 10000 * power mel), shape (frames, N_MELS), float32."""
    _check_rate(sr)
    return _log_mel(y, center=True)


def patch_starts(n_frames: int, max_patches: int | None = None) -> np.ndarray:
    """First frames of the patches that cover `n_frames`: consecutive, non-overlapping patches
    (as the musicnn wheel cuts them), or, where there are more than `max_patches`, that many
    spread evenly from the first frame to the last."""
    n_whole = max(1, (n_frames - PATCH_FRAMES) // PATCH_FRAMES + 1)
    if max_patches is None or n_whole <= max_patches:
        return np.arange(n_whole) * PATCH_FRAMES
    return np.round(np.linspace(0, n_frames - PATCH_FRAMES, max_patches)).astype(int)


def fill_patch(mel: np.ndarray, loop: bool = False) -> np.ndarray:
    """A log-mel shorter than a patch, made one patch long: zero-padded at its end (zero is silence
    in this log scale; the musicnn wheel does this), or with `loop` repeated from its start, which
    the genre head serves better (a 2-3 s clip then looks like music throughout, not partly silence)."""
    if len(mel) >= PATCH_FRAMES:
        return mel
    if loop:
        return np.tile(mel, (-(-PATCH_FRAMES // len(mel)), 1))[:PATCH_FRAMES]
    return np.pad(mel, ((0, PATCH_FRAMES - len(mel)), (0, 0)))


def patches(mel: np.ndarray, max_patches: int | None = None, loop: bool = False) -> np.ndarray:
    """Cut a (frames, N_MELS) log-mel into (n, PATCH_FRAMES, N_MELS) patches.

    A clip shorter than one patch is one patch, filled as `fill_patch(mel, loop)` does."""
    if mel.ndim != 2 or mel.shape[1] != N_MELS:
        raise ValueError(f"expected a (frames, {N_MELS}) log-mel, got shape {mel.shape}")
    mel = fill_patch(mel, loop)
    starts = patch_starts(len(mel), max_patches)
    return np.stack([mel[s:s + PATCH_FRAMES] for s in starts]).astype(np.float32, copy=False)


def short_crops(mel: np.ndarray, seed: int, loop: bool = False) -> np.ndarray:
    """Every consecutive patch of a log-mel, each cut to a random length in SHORT_CROP_S and filled
    as `fill_patch` does: what a 2-3 s upload looks like to the network."""
    lengths = np.random.default_rng(seed).integers(*(round(s * SAMPLE_RATE / HOP_LENGTH) for s in SHORT_CROP_S),
                                                   endpoint=True, size=len(patch_starts(len(mel))))
    return np.stack([fill_patch(patch[:length], loop) for patch, length in zip(patches(mel), lengths)])


def log_mel_patches(y: np.ndarray, max_patches: int | None = MAX_PATCHES, sr: int = SAMPLE_RATE,
                    loop: bool = False) -> np.ndarray:
    """`patches(log_mel(y), max_patches, loop)`, computing only the frames those patches cover: a
    long song's prediction then costs no more spectrogram than a 30 s clip's."""
    _check_rate(sr)
    n_frames = 1 + len(y) // HOP_LENGTH
    if n_frames <= PATCH_FRAMES:
        return patches(log_mel(y, sr), max_patches, loop)
    # Frame i of the centred spectrogram is the window starting at sample i * HOP_LENGTH of the
    # signal zero-padded by N_FFT // 2 on both sides (librosa's 'constant' padding).
    padded = np.pad(y, N_FFT // 2)
    span = (PATCH_FRAMES - 1) * HOP_LENGTH + N_FFT
    segments = np.stack([padded[s * HOP_LENGTH:s * HOP_LENGTH + span] for s in patch_starts(n_frames, max_patches)])
    return _log_mel(segments, center=False)


def chromagram(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Energy-normalised chromagram, shape (N_CHROMA, frames), float32."""
    _check_rate(sr)
    with warnings.catch_warnings():
        # Audio with no clear pitch (drums, noise) leaves the tuning estimate at 0 with a warning: expected.
        warnings.filterwarnings("ignore", message="Trying to estimate tuning from empty frequency set")
        chroma = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=CHROMA_N_FFT, hop_length=CHROMA_HOP,
                                             n_chroma=N_CHROMA)
    return chroma.astype(np.float32)


def track_features(y: np.ndarray, sr: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
    """Everything a store keeps of a track: `mel` and `chroma`."""
    return {"mel": log_mel(y, sr), "chroma": chromagram(y, sr)}
