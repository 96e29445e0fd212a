"""Features computed from 16 kHz mono samples: MusiCNN's log-mel input, its patches, and chromagrams.

Long signals' log-mels are processed in blocks of frames, so that a 20-minute song holds no more
spectrogram at once than a one-minute clip does; a chromagram is only ever of a track's middle
EXCERPT_S. `patch_spans` and `excerpt_span` say which samples the patches and the excerpt read, so
that a long upload need decode nothing else (model.audio.decoding.decode's `spans`)."""
from __future__ import annotations

import functools
import threading

import librosa
import numpy as np

from model.audio import numba_cache
from model.audio.tuning import estimate_tuning
from model.params import (
    CHROMA_HOP, CHROMA_N_FFT, EXCERPT_S, HOP_LENGTH, LOG_MEL_SCALE, MAX_PATCHES, MIN_PULSE, MIN_TEMPO_S, N_CHROMA,
    N_FFT, N_MELS, PATCH_FRAMES, SAMPLE_RATE, SHORT_CROP_S, TEMPO_AC_S, TEMPO_START_BPM,
)


# Log-mel frames computed at once for long signals (~60 s); signals of up to BLOCK_S seconds are computed whole.
BLOCK_S = 60.0
_warm_lock = threading.Lock()
_warm = False


def warm_up() -> None:
    """Compile (or load from the cache) librosa's numba functions that the features use, then share
    them with later processes (model.audio.numba_cache). Every feature function calls this first."""
    global _warm
    with _warm_lock:
        if _warm:
            return
        # Before librosa's first computation: that is when it imports numba, which reads its cache
        # folder then (`import librosa` alone loads none of its numba code).
        numba_cache.configure()
        noise = np.random.default_rng(0).uniform(-0.5, 0.5, 2 * SAMPLE_RATE).astype(np.float32)
        _log_mel(noise, center=True)
        _log_mel(np.stack([noise, noise]), center=False)   # a batch of patches: other array types
        _chroma(noise)
        _tempo(np.abs(np.random.default_rng(1).normal(size=(int(MIN_TEMPO_S * SAMPLE_RATE) // HOP_LENGTH, N_MELS))))
        numba_cache.publish()
        _warm = True


def _check_rate(sr: int) -> None:
    if sr != SAMPLE_RATE:
        raise ValueError(f"features need {SAMPLE_RATE} Hz samples, got {sr} Hz")


# librosa.feature's melspectrogram and chroma_stft are computed here from their parts (librosa's
# stft, filter banks and normalisation, in the same order: the same numbers), for two reasons:
# importing librosa.feature loads its pitch and constant-Q modules, whose numba functions are
# compiled or read from numba's cache as they load (0.9 s of every start, and the cache files
# numba issue 10128 is about), and chroma_stft's own tuning estimate is model.audio.tuning's six
# times slower twin.

@functools.cache
def _mel_basis() -> np.ndarray:
    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)


def _power(y: np.ndarray, n_fft: int, hop_length: int, center: bool = True) -> np.ndarray:
    return np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop_length, center=center, pad_mode="constant")) ** 2


def _log_mel(y: np.ndarray, center: bool) -> np.ndarray:
    """log10(1 + 10000 * power mel) of the last axis of `y`, as (..., frames, N_MELS) float32."""
    mel = np.einsum("...ft,mf->...mt", _power(y, N_FFT, HOP_LENGTH, center), _mel_basis(), optimize=True)
    return np.log10(1.0 + LOG_MEL_SCALE * np.swapaxes(mel, -1, -2)).astype(np.float32)


def _segment_bounds(n_fft: int, hop: int, start: int, n_frames: int) -> tuple[int, int]:
    """The samples [lo, hi) of the signal (lo < 0 or hi beyond its end: zero padding) whose uncentred
    frames are frames start..start+n_frames-1 of the centred spectrogram. Frame i of a centred
    spectrogram is the window starting at sample i * hop - n_fft // 2 of the signal zero-padded on
    both sides (librosa's 'constant' padding)."""
    lo = start * hop - n_fft // 2
    return lo, lo + (n_frames - 1) * hop + n_fft


def _frame_segments(y: np.ndarray, n_fft: int, hop: int, starts: np.ndarray, n_frames: int) -> list[np.ndarray]:
    """Slices of `y`, zero-padded where they reach beyond it, whose uncentred frames are frames
    start..start+n_frames-1 of the centred spectrogram. Only the slices are copied, never the whole
    signal: a long upload's samples outside them are not even decoded."""
    segments = []
    for start in starts:
        lo, hi = _segment_bounds(n_fft, hop, start, n_frames)
        segments.append(np.pad(y[max(lo, 0):max(min(hi, len(y)), 0)], (max(-lo, 0), max(hi - len(y), 0))))
    return segments


def _blocks(total_frames: int, hop: int) -> list[tuple[int, int]]:
    """(first frame, frame count) of consecutive blocks of about BLOCK_S seconds."""
    size = int(BLOCK_S * SAMPLE_RATE) // hop
    return [(start, min(size, total_frames - start)) for start in range(0, total_frames, size)]


def log_mel(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """MusiCNN's input: log10(1 + 10000 * power mel), shape (frames, N_MELS), float32."""
    _check_rate(sr)
    warm_up()
    y = np.asarray(y, dtype=np.float32)
    n_frames = 1 + len(y) // HOP_LENGTH
    if len(y) <= BLOCK_S * SAMPLE_RATE:
        return _log_mel(y, center=True)
    return np.concatenate([_log_mel(_frame_segments(y, N_FFT, HOP_LENGTH, np.array([start]), count)[0], center=False)
                           for start, count in _blocks(n_frames, HOP_LENGTH)])


def patch_starts(n_frames: int, max_patches: int | None = None) -> np.ndarray:
    """First frames of the patches that cover `n_frames`: consecutive, non-overlapping patches
    (as the musicnn wheel cuts them), or, where there are more than `max_patches`, that many
    spread evenly from the first frame to the last."""
    n_whole = max(1, (n_frames - PATCH_FRAMES) // PATCH_FRAMES + 1)
    if max_patches is None or n_whole <= max_patches:
        return np.arange(n_whole) * PATCH_FRAMES
    return np.round(np.linspace(0, n_frames - PATCH_FRAMES, max_patches)).astype(int)


def patch_spans(n_samples: int, max_patches: int | None = MAX_PATCHES) -> list[tuple[int, int]]:
    """The samples [start, stop) that `log_mel_patches` reads of a signal of `n_samples` samples."""
    n_frames = 1 + n_samples // HOP_LENGTH
    if n_frames <= PATCH_FRAMES:
        return [(0, n_samples)]
    bounds = (_segment_bounds(N_FFT, HOP_LENGTH, s, PATCH_FRAMES) for s in patch_starts(n_frames, max_patches))
    return [(max(lo, 0), min(hi, n_samples)) for lo, hi in bounds]


def excerpt_span(n_samples: int) -> tuple[int, int]:
    """The samples [start, stop) of a signal's middle EXCERPT_S (all of a shorter one): what its
    chromagram (and an upload's fingerprint query) is computed from."""
    length = min(n_samples, int(EXCERPT_S * SAMPLE_RATE))
    start = (n_samples - length) // 2
    return start, start + length


def analysis_spans(n_samples: int) -> list[tuple[int, int]]:
    """The [start, stop) 16 kHz samples of a track of `n_samples` that an analysis reads: the network's
    patches and the middle excerpt (its chromagram and fingerprints)."""
    return patch_spans(n_samples) + [excerpt_span(n_samples)]


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


def short_crops(mel: np.ndarray, seed: int, loop: bool = False, max_patches: int | None = None) -> np.ndarray:
    """Every patch of a log-mel (`patches(mel, max_patches)`), each cut to a random length in SHORT_CROP_S
    and filled as `fill_patch` does: what a 2-3 s upload looks like to the network."""
    cut = patches(mel, max_patches)
    lengths = np.random.default_rng(seed).integers(*(round(s * SAMPLE_RATE / HOP_LENGTH) for s in SHORT_CROP_S),
                                                   endpoint=True, size=len(cut))
    return np.stack([fill_patch(patch[:length], loop) for patch, length in zip(cut, lengths)])


def log_mel_patches(y: np.ndarray, max_patches: int | None = MAX_PATCHES, sr: int = SAMPLE_RATE,
                    loop: bool = False) -> np.ndarray:
    """`patches(log_mel(y), max_patches, loop)`, computing only the frames those patches cover: a
    long song's prediction then costs no more spectrogram than a 30 s clip's."""
    _check_rate(sr)
    warm_up()
    y = np.asarray(y, dtype=np.float32)
    n_frames = 1 + len(y) // HOP_LENGTH
    if n_frames <= PATCH_FRAMES:
        return patches(log_mel(y, sr), max_patches, loop)
    starts = patch_starts(n_frames, max_patches)
    return _log_mel(np.stack(_frame_segments(y, N_FFT, HOP_LENGTH, starts, PATCH_FRAMES)), center=False)


def chromagram(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Energy-normalised chromagram of the middle EXCERPT_S of `y` (`excerpt_span`), shape
    (N_CHROMA, frames), float32: librosa's chroma_stft, with its tuning estimate."""
    _check_rate(sr)
    warm_up()
    return _chroma(np.asarray(y[slice(*excerpt_span(len(y)))], dtype=np.float32))


@functools.lru_cache(maxsize=None)   # at most 100 tunings (the estimate's resolution): at most 10 MB
def _chroma_bank(tuning: float) -> np.ndarray:
    bank = librosa.filters.chroma(sr=SAMPLE_RATE, n_fft=CHROMA_N_FFT, tuning=tuning, n_chroma=N_CHROMA)
    bank.setflags(write=False)   # shared by every chromagram of this tuning
    return bank


def _chroma(y: np.ndarray) -> np.ndarray:
    power = _power(y, CHROMA_N_FFT, CHROMA_HOP)
    bank = _chroma_bank(estimate_tuning(power, SAMPLE_RATE, N_CHROMA))
    return librosa.util.normalize(np.einsum("cf,...ft->...ct", bank, power, optimize=True), norm=np.inf,
                                  axis=-2).astype(np.float32)


def onset_envelope(mel: np.ndarray) -> np.ndarray:
    """Onset strength per frame of a (frames, N_MELS) log-mel: the mean over bands of its rise since the
    frame before (librosa.onset.onset_strength's recipe, lag 1, on the log-mel computed anyway; that
    function itself would import librosa.feature.spectral and its pitch module, 0.9 s of every start)."""
    rise = np.maximum(0.0, np.diff(np.asarray(mel, dtype=np.float64), axis=0)).mean(axis=1)
    return np.concatenate([[0.0], rise])


def tempo(mel: np.ndarray) -> float | None:
    """The tempo (beats per minute) of a (frames, N_MELS) log-mel of MIN_TEMPO_S or more, else None (and None
    where no pulse is heard: MIN_PULSE): librosa's tempo estimate (librosa.feature.rhythm.tempo, its log-normal prior around
    TEMPO_START_BPM) over one autocorrelation of the whole onset envelope, where librosa's own tempogram
    averages one per frame: the same estimate within its lag resolution, at 0.5 ms instead of 150 ms."""
    warm_up()
    if len(mel) * HOP_LENGTH < MIN_TEMPO_S * SAMPLE_RATE:
        return None
    return _tempo(mel)


def _tempo(mel: np.ndarray) -> float | None:
    import librosa.feature.rhythm   # after warm_up's numba_cache.configure(): it compiles numba functions

    envelope = onset_envelope(mel)
    lags = int(round(TEMPO_AC_S * SAMPLE_RATE / HOP_LENGTH))
    # A Hann taper over the whole envelope, as the tempogram windows each of its frames.
    ac = librosa.autocorrelate(envelope * np.hanning(len(envelope)), max_size=lags)
    if not ac[0] > 1e-12:
        return None
    bpm = float(librosa.feature.rhythm.tempo(tg=np.maximum(ac / ac[0], 0.0)[:, None], sr=SAMPLE_RATE,
                                             hop_length=HOP_LENGTH, start_bpm=TEMPO_START_BPM)[0])
    # A pulse is heard where onsets recur a beat later: noise or a drone would get a tempo from the prior alone.
    beat = int(round(60.0 * SAMPLE_RATE / HOP_LENGTH / bpm))
    pulse = np.corrcoef(envelope[:-beat], envelope[beat:])[0, 1]
    return bpm if pulse >= MIN_PULSE else None


def track_features(y: np.ndarray, sr: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
    """Everything a store keeps of a track: `mel` (all of it) and `chroma` (of its middle EXCERPT_S)."""
    return {"mel": log_mel(y, sr), "chroma": chromagram(y, sr)}
