"""Features computed from 16 kHz mono samples: MusiCNN's log-mel input, its patches, and chromagrams."""
from __future__ import annotations

import librosa
import numpy as np

from model.params import (
    CHROMA_HOP, CHROMA_N_FFT, HOP_LENGTH, LOG_MEL_SCALE, N_CHROMA, N_FFT, N_MELS, PATCH_FRAMES, SAMPLE_RATE,
)


def log_mel(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """MusiCNN's input: log10(1 + 10000 * power mel), shape (frames, N_MELS), float32."""
    if sr != SAMPLE_RATE:
        raise ValueError(f"log_mel needs {SAMPLE_RATE} Hz samples, got {sr} Hz")
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS)
    return np.log10(1.0 + LOG_MEL_SCALE * mel.T).astype(np.float32)


def patch_starts(n_frames: int, max_patches: int | None = None) -> np.ndarray:
    """First frames of the patches that cover `n_frames`: consecutive, non-overlapping patches
    (as the musicnn wheel cuts them), or, where there are more than `max_patches`, that many
    spread evenly from the first frame to the last."""
    n_whole = max(1, (n_frames - PATCH_FRAMES) // PATCH_FRAMES + 1)
    if max_patches is None or n_whole <= max_patches:
        return np.arange(n_whole) * PATCH_FRAMES
    return np.round(np.linspace(0, n_frames - PATCH_FRAMES, max_patches)).astype(int)


def patches(mel: np.ndarray, max_patches: int | None = None) -> np.ndarray:
    """Cut a (frames, N_MELS) log-mel into (n, PATCH_FRAMES, N_MELS) patches.

    A clip shorter than one patch is zero-padded at its end (zero is silence in this log scale)."""
    if mel.ndim != 2 or mel.shape[1] != N_MELS:
        raise ValueError(f"expected a (frames, {N_MELS}) log-mel, got shape {mel.shape}")
    if len(mel) < PATCH_FRAMES:
        mel = np.pad(mel, ((0, PATCH_FRAMES - len(mel)), (0, 0)))
    starts = patch_starts(len(mel), max_patches)
    return np.stack([mel[s:s + PATCH_FRAMES] for s in starts]).astype(np.float32, copy=False)


def chromagram(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Energy-normalised chromagram, shape (N_CHROMA, frames), float32."""
    if sr != SAMPLE_RATE:
        raise ValueError(f"chromagram needs {SAMPLE_RATE} Hz samples, got {sr} Hz")
    chroma = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=CHROMA_N_FFT, hop_length=CHROMA_HOP, n_chroma=N_CHROMA)
    return chroma.astype(np.float32)


def track_features(y: np.ndarray, sr: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
    """Everything a store keeps of a track: `mel` and `chroma`."""
    return {"mel": log_mel(y, sr), "chroma": chromagram(y, sr)}
