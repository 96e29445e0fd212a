"""Audio fingerprints that recognise a lossy, re-sampled or trimmed copy of a library track.

Landmarks in the style of Wang (2003, "An industrial-strength audio search algorithm"): peaks of
the log-mel spectrogram (the one the store keeps and the network reads, so a stored track's
fingerprint needs nothing more than its stored features) are paired with a few later peaks, and
each pair hashes to (first band, band difference, time difference). A copy shares many hashes with
the original *at one consistent time offset*; unrelated tracks share only a few, scattered over
offsets. So the score of a library track is the largest number of hashes that agree on one offset,
and a match needs both many of them and a fair share of the query's hashes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from model.audio.features import excerpt_span, log_mel
from model.params import HOP_LENGTH, N_MELS

# Peaks: maxima of a neighbourhood of +-PEAK_FRAMES frames (~0.2 s) and +-PEAK_BANDS mel bands,
# at least PEAK_FLOOR above the track's median level (log10 units: 10 dB), so silence and noise
# floors give none.
PEAK_FRAMES = 12
PEAK_BANDS = 6
PEAK_FLOOR = 1.0
# Pairs: each peak with its FAN_OUT nearest later peaks at most MAX_DT frames (~1 s) later and
# MAX_DF bands away.
FAN_OUT = 6
MAX_DT = 63
MAX_DF = 31
# A match: at least MIN_ALIGNED hashes at one offset, and at least MIN_SHARE of the query's.
MIN_ALIGNED = 20
MIN_SHARE = 0.05
# An upload is fingerprinted at this many offsets within one hop: a trimmed copy's frames fall
# anywhere between the original's, and peaks half a frame off lose most pairs (a 12 s excerpt
# scored 35 aligned hashes at one offset, 454 at another). Two offsets leave at most a quarter hop.
QUERY_PHASES = 2


def fingerprint_params() -> dict:
    """What a library track's fingerprint depends on, beyond the log-mel's parameters: stores that keep
    fingerprints record it (model.stores.feature_store)."""
    return {"peak_frames": PEAK_FRAMES, "peak_bands": PEAK_BANDS, "peak_floor": PEAK_FLOOR, "fan_out": FAN_OUT,
            "max_dt": MAX_DT, "max_df": MAX_DF}


@dataclass(frozen=True)
class Fingerprint:
    hashes: np.ndarray   # (n,) uint32
    times: np.ndarray    # (n,) int32, frame of each pair's first peak


def _running_max(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """The maximum of each centred window of odd `size` along `axis`, windows clipped at the edges:
    scipy.ndimage.maximum_filter1d's numbers (mode "nearest"), from `size` shifted copies: for these
    small windows faster than scipy's (2.4 against 6.6 ms for a 30 s log-mel's peaks)."""
    x = np.moveaxis(x, axis, 0)
    half = size // 2
    padded = np.full((len(x) + 2 * half,) + x.shape[1:], -np.inf, dtype=x.dtype)
    padded[half:half + len(x)] = x
    out = x.copy()
    for shift in range(size):
        np.maximum(out, padded[shift:shift + len(x)], out=out)
    return np.moveaxis(out, 0, axis)


def peaks(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames, bands) of the spectral peaks of a (frames, N_MELS) log-mel, in time order."""
    mel = np.asarray(mel, dtype=np.float32)
    local_max = _running_max(_running_max(mel, 2 * PEAK_FRAMES + 1, 0), 2 * PEAK_BANDS + 1, 1)
    frames, bands = np.nonzero((mel == local_max) & (mel > np.median(mel) + PEAK_FLOOR))
    return frames, bands


def fingerprint(mel: np.ndarray) -> Fingerprint:
    """The landmark hashes of a (frames, N_MELS) log-mel (`model.audio.features.log_mel`)."""
    if mel.ndim != 2 or mel.shape[1] != N_MELS:
        raise ValueError(f"expected a (frames, {N_MELS}) log-mel, got shape {mel.shape}")
    frames, bands = peaks(mel)
    # Each peak against the next few peaks in time (a window wide enough to hold FAN_OUT that fit
    # the target zone), keeping the first FAN_OUT that do.
    later = np.arange(len(frames))[:, None] + np.arange(1, 4 * FAN_OUT + 1)[None, :]
    inside = later < len(frames)
    later = np.where(inside, later, 0)
    dt, df = frames[later] - frames[:, None], bands[later] - bands[:, None]
    keep = inside & (dt > 0) & (dt <= MAX_DT) & (np.abs(df) <= MAX_DF)
    keep &= np.cumsum(keep, axis=1) <= FAN_OUT
    first = np.broadcast_to(np.arange(len(frames))[:, None], keep.shape)[keep]
    hashes = (bands[first] << 13) | ((df[keep] + MAX_DF) << 6) | dt[keep]
    return Fingerprint(hashes.astype(np.uint32), frames[first].astype(np.int32))


def query_mels(y: np.ndarray, span: tuple[int, int] | None = None) -> list[np.ndarray]:
    """The log-mels an upload's fingerprints are made of, from its 16 kHz samples, at QUERY_PHASES offsets of
    a fraction of a hop: of the samples [start, stop) of `span`, by default its middle EXCERPT_S
    (`excerpt_span`, which a full copy shares). The first is the span's own `log_mel`, which the service
    also reads the upload's tempo from."""
    y = y[slice(*(span or excerpt_span(len(y))))]
    return [log_mel(y[k * HOP_LENGTH // QUERY_PHASES:]) for k in range(QUERY_PHASES)]


def query_prints(y: np.ndarray, span: tuple[int, int] | None = None) -> list[Fingerprint]:
    """An upload's fingerprints (`fingerprint` of each of `query_mels(y, span)`). Frames count from the span's start."""
    return [fingerprint(mel) for mel in query_mels(y, span)]


# Every hash `fingerprint` makes is below this: (band << 13) | ((band difference + MAX_DF) << 6) | time difference.
HASH_SPACE = N_MELS << 13
# Library tracks whose fingerprints are indexed at once while fitting: bounds the fit's temporary arrays
# (about 60 bytes a hash: 1,024 songs' middle excerpts, some 150 MB) whatever the library's size.
FIT_BATCH = 1024


class FingerprintIndex:
    """An inverted index of library fingerprints: `fit` on the library's, `query` with an upload's.

    Held as compressed rows over the hash space: a hash's entries are `entries_[offsets_[h]:offsets_[h + 1]]`,
    each a library row and a frame packed in one integer (`row << time_bits_ | frame`). So a library hash
    costs 4 bytes where rows and frames fit 32 bits (a compact store's 32 s excerpts have 2,000 frames: 11
    bits, leaving 21 for 2 million tracks), else 8; the hash is where the entry is, not held beside it (it
    was 12 bytes: hash, row and frame), and the offsets are a fixed 6 MB."""

    def fit(self, fingerprints: Sequence[Fingerprint]) -> "FingerprintIndex":
        n = self.n_tracks_ = len(fingerprints)
        batches = [fingerprints[i:i + FIT_BATCH] for i in range(0, n, FIT_BATCH)]
        counts, max_time = np.zeros(HASH_SPACE, np.int64), 0
        for batch in batches:   # first pass: how many entries each hash has, and the largest frame
            hashes = _joined(batch, "hashes", np.uint32)
            if len(hashes) and int(hashes.max()) >= HASH_SPACE:
                raise ValueError(f"fingerprint hashes are below {HASH_SPACE} (model.index.fingerprint.fingerprint)")
            counts += np.bincount(hashes, minlength=HASH_SPACE)
            times = _joined(batch, "times", np.int32)
            if len(times) and times.min() < 0:
                raise ValueError("fingerprint times are frames, 0 or more")
            max_time = max(max_time, int(times.max()) if len(times) else 0)
        self.time_bits_ = max(1, max_time.bit_length())
        dtype = np.dtype(np.uint32 if self.time_bits_ + max(1, (n - 1).bit_length()) <= 32 else np.uint64)
        self.offsets_ = np.zeros(HASH_SPACE + 1, np.int64)
        np.cumsum(counts, out=self.offsets_[1:])
        del counts
        self.entries_ = np.empty(int(self.offsets_[-1]), dtype)
        cursor = self.offsets_[:-1].copy()   # where each hash's next entry goes
        first_row = 0
        for batch in batches:   # second pass: each batch's entries into their hashes' places, rows in order
            hashes = _joined(batch, "hashes", np.uint32)
            rows = np.repeat(np.arange(first_row, first_row + len(batch), dtype=dtype), [len(f.hashes) for f in batch])
            packed = (rows << dtype.type(self.time_bits_)) | _joined(batch, "times", np.int32).astype(dtype)
            first_row += len(batch)
            order = np.argsort(hashes, kind="stable")
            hashes = hashes[order]
            starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]]) if len(hashes) else np.zeros(0, int)
            lengths = np.diff(np.r_[starts, len(hashes)])
            rank = np.arange(len(hashes)) - np.repeat(starts, lengths)   # place among the batch's of its hash
            self.entries_[cursor[hashes] + rank] = packed[order]
            cursor[hashes[starts]] += lengths
        return self

    def _votes(self, query: Fingerprint) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (query hash, library entry) pair with the same hash: (library row, time offset
        (library frame minus query frame), query frame) of each."""
        q_hashes = np.minimum(np.asarray(query.hashes, np.int64), HASH_SPACE)   # beyond: no library entry
        lo, hi = self.offsets_[q_hashes], self.offsets_[np.minimum(q_hashes + 1, HASH_SPACE)]
        counts = hi - lo
        entry = np.repeat(lo - np.cumsum(np.r_[0, counts[:-1]]), counts) + np.arange(counts.sum())
        packed = self.entries_[entry]
        q = np.repeat(query.times, counts).astype(np.int64)
        rows = (packed >> packed.dtype.type(self.time_bits_)).astype(np.int64)
        frames = (packed & packed.dtype.type((1 << self.time_bits_) - 1)).astype(np.int64)
        return rows, frames - q, q

    def scores(self, query: Fingerprint) -> np.ndarray:
        """Per library track, the most query hashes that agree on one time offset."""
        return self._aligned(query)[0]

    def _aligned(self, query: Fingerprint) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per library track: the most query hashes that agree on one time offset, that offset (library
        frame minus query frame), and the first and last query frames of the hashes that agree on it."""
        n = self.n_tracks_
        best, offset = np.zeros(n, dtype=int), np.zeros(n, dtype=np.int64)
        first, last = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        rows, offsets, q = self._votes(query)
        if not len(rows):
            return best, offset, first, last
        keys, inverse, votes = np.unique(rows * (1 << 32) + (offsets + (1 << 31)), return_inverse=True,
                                         return_counts=True)
        key_rows = keys >> 32
        # Per row, its key with the most votes (keys are sorted by row, then offset: the first of equals wins).
        order = np.lexsort((-votes, key_rows))
        starts = np.flatnonzero(np.r_[True, key_rows[order][1:] != key_rows[order][:-1]])
        top = order[starts]
        best[key_rows[top]] = votes[top]
        offset[key_rows[top]] = (keys[top] & 0xFFFFFFFF) - (1 << 31)
        # The query frames of the votes for each row's best key.
        chosen = np.full(len(keys), False)
        chosen[top] = True
        mine = chosen[inverse.ravel()]
        vote_rows, vote_q = rows[mine], q[mine]
        first[:] = np.iinfo(np.int64).max
        np.minimum.at(first, vote_rows, vote_q)
        np.maximum.at(last, vote_rows, vote_q)
        first[best == 0] = 0
        return best, offset, first, last

    def query(self, prints: list[Fingerprint]) -> list[int]:
        """Library rows that the query (its fingerprints, as `query_prints` makes them) is a copy of,
        best first (several where the library holds repeats)."""
        return [m.row for m in self.matches(prints)]

    def matches(self, prints: list[Fingerprint]) -> list["Match"]:
        """The library tracks found in the query (its fingerprints, as `query_prints` makes them), best
        first, each with where the query and the track align (of the phase that aligned most hashes)."""
        aligned = [self._aligned(p) for p in prints]
        scores = np.stack([a[0] for a in aligned])
        phase = np.argmax(scores, axis=0)
        best = scores[phase, np.arange(self.n_tracks_)]
        needed = max(MIN_ALIGNED, MIN_SHARE * max(len(p.hashes) for p in prints))
        rows = np.flatnonzero(best >= needed)
        rows = rows[np.argsort(-best[rows], kind="stable")]
        extent = [(int(p.times.min()), int(p.times.max())) if len(p.times) else (0, 0) for p in prints]
        return [Match(int(r), int(best[r]), int(aligned[phase[r]][1][r]), int(aligned[phase[r]][2][r]),
                      int(aligned[phase[r]][3][r]), *extent[phase[r]]) for r in rows]


def _joined(prints: Sequence[Fingerprint], name: str, dtype) -> np.ndarray:
    """The `name` arrays ("hashes" or "times") of `prints`, one after another."""
    return np.concatenate([np.asarray(getattr(f, name), dtype) for f in prints]) if prints else np.zeros(0, dtype)


@dataclass(frozen=True)
class Match:
    """A library track found in a query, in frames (HOP_LENGTH) of the query's fingerprinted samples."""
    row: int            # the library track
    aligned: int        # query hashes that agree on one time offset
    offset: int         # that offset: the track's frame minus the query's frame
    first: int          # the first and last query frames of the agreeing hashes
    last: int
    query_first: int    # the first and last frames of all the query's hashes: what could have agreed
    query_last: int

    @property
    def coverage(self) -> float:
        """The share of the query's hashed time that agrees with the track: near 1 when all of the query
        is the track, less when the track is only part of it."""
        return (self.last - self.first) / max(1, self.query_last - self.query_first)
