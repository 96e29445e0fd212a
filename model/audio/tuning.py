"""librosa's tuning estimate of a power spectrogram, computed on the bins it reads.

`librosa.feature.chroma_stft` estimates a track's tuning with `librosa.estimate_tuning`, whose
`piptrack` interpolates every bin of the spectrogram and only then keeps those between 150 and
4000 Hz: at 16 kHz and 4096 points, 2049 bins of which 985 are used, and two thirds of a chromagram's
time. `estimate_tuning` here is the same computation, step for step and in the same float types,
on those bins and their two neighbours (the interpolation and the local maxima read one bin either
side); only the per-frame reference level is taken over all bins, as librosa does.
"""
from __future__ import annotations

import numpy as np

# librosa's defaults for estimate_tuning and piptrack, which chroma_stft uses.
FMIN = 150.0        # Hz
FMAX = 4000.0       # Hz
THRESHOLD = 0.1     # peaks below this fraction of their frame's loudest bin are not pitches
RESOLUTION = 0.01   # fractions of a bin


def _parabolic_shift(up: np.ndarray, here: np.ndarray, down: np.ndarray) -> np.ndarray:
    """librosa's parabolic interpolation of bins of magnitude `here` between neighbours `up` and
    `down`: the optimum's offset from the bin, 0 where it lies beyond a neighbour. As its numba
    stencil computes it: the sums of neighbours in their own type, the rest in float64, the result
    in the magnitudes' type."""
    a = (up + down).astype(np.float64) - 2.0 * here.astype(np.float64)
    b = (up - down).astype(np.float64) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(b) >= np.abs(a), 0.0, -b / a).astype(here.dtype)


def estimate_tuning(S: np.ndarray, sr: float, bins_per_octave: int = 12) -> float:
    """`librosa.estimate_tuning(S=S, sr=sr, bins_per_octave=bins_per_octave)` of a power (or
    magnitude) spectrogram `S` (1 + n_fft // 2, frames), real and non-negative (librosa takes the
    absolute value of S first, a copy of it that such an S does not need): the deviation from A440
    tuning in fractions of a bin, in [-0.5, 0.5)."""
    n_fft = 2 * (S.shape[0] - 1)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    used = np.flatnonzero((FMIN <= freqs) & (freqs < min(FMAX, sr / 2)))
    lo, hi = max(used[0] - 1, 0), min(used[-1] + 2, len(freqs))   # the used bins and a neighbour either side
    band = S[lo:hi]
    # librosa's local maxima, gradient and interpolation are the same on the band's inner rows; its
    # edge rows (the spectrum's own first and last bins) are never used bins at these limits. They
    # are computed here only at the peaks, the only places librosa reads them.
    kept = band * (band > THRESHOLD * np.max(S, axis=0))
    peak = (kept[1:-1] > kept[:-2]) & (kept[1:-1] >= kept[2:])
    peak &= ((FMIN <= freqs[lo + 1:hi - 1]) & (freqs[lo + 1:hi - 1] < FMAX))[:, None]
    rows, cols = np.nonzero(peak)
    up, here, down = band[rows + 2, cols], band[rows + 1, cols], band[rows, cols]
    avg = (up - down) / 2.0   # np.gradient's central difference
    shift = _parabolic_shift(up, here, down)
    pitch = ((lo + 1 + rows) + shift) * float(sr) / n_fft
    pitch = pitch.astype(S.dtype)   # librosa stores pitches in an array of S's type
    mag = here + 0.5 * avg * shift
    voiced = pitch > 0
    threshold = np.median(mag[voiced]) if voiced.any() else 0.0
    frequencies = pitch[(mag >= threshold) & voiced]
    if not len(frequencies):
        return 0.0
    residual = np.mod(bins_per_octave * np.log2(frequencies / (440.0 / 16)), 1.0)
    residual[residual >= 0.5] -= 1.0
    counts, edges = np.histogram(residual, np.linspace(-0.5, 0.5, int(np.ceil(1.0 / RESOLUTION)) + 1))
    return float(edges[np.argmax(counts)])
