"""How many recommendations change with the chroma recipe of the current FEATURE_VERSION
(model.audio.features.chromagram) against version 1's (librosa's chroma_stft of the whole clip):
every 30 s shared clip is queried, leave-one-out, against the chroma summaries of all shared clips
(itself and its repeats left out), with the service's k-NN.

    python benchmarks/compare_picks.py [--workers 2]

Reports, per search scope, how many queries get other picks (as a set, and in order), and for each
recipe the share of picks in the query's own genre (a rough measure of the picks' quality).
The genre scope searches the query's true genre first, where the service searches its predicted one.
"""
from __future__ import annotations

import argparse
import csv
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import librosa
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_GTZAN  # noqa: E402
from model.audio.decoding import decode  # noqa: E402
from model.audio.features import chromagram  # noqa: E402
from model.index.knn import K, SCOPES, GenreKnn, SpaceScaler, chroma_summary  # noqa: E402
from model.params import CHROMA_HOP, CHROMA_N_FFT, N_CHROMA, SAMPLE_RATE  # noqa: E402


def version_1_chroma(y: np.ndarray) -> np.ndarray:
    """FEATURE_VERSION 1's chromagram of a clip of up to 60 s, as it computed it (for comparison only)."""
    return librosa.feature.chroma_stft(y=y, sr=SAMPLE_RATE, n_fft=CHROMA_N_FFT, hop_length=CHROMA_HOP,
                                       n_chroma=N_CHROMA)


def summaries(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    audio = decode(path)
    now = chroma_summary(chromagram(audio.samples))   # first: it sets up librosa's numba cache
    return audio.content_hash, chroma_summary(version_1_chroma(audio.samples)), now


def picks(X: np.ndarray, genres: list[str], hashes: list[str], queries: list[int], scope: str) -> list[list[int]]:
    X = SpaceScaler().fit([X]).transform([X])
    index = GenreKnn(scope=scope).fit(X, genres)
    out = []
    for q in queries:
        same = [r for r, h in enumerate(hashes) if h == hashes[q]]
        order = [genres[q]] + sorted(set(genres) - {genres[q]})
        out.append([p.index for p in index.query(X[q], order, exclude=same)])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    if not SHARED_GTZAN.exists():
        print(f"{SHARED_GTZAN} is absent: nothing to compare")
        return 1
    with (SHARED_GTZAN / "MANIFEST.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    with ProcessPoolExecutor(args.workers) as pool:
        computed = list(pool.map(summaries, [SHARED_GTZAN / r["file"] for r in rows], chunksize=8))
    hashes = [c[0] for c in computed]
    before, after = np.array([c[1] for c in computed]), np.array([c[2] for c in computed])
    genres = [r["genre"] for r in rows]
    queries = [i for i, r in enumerate(rows) if r["kind"] == "full_30s"]
    print(f"{len(queries)} queries (the 30 s clips) against {len(rows)} shared clips, k={K}")
    for scope in SCOPES:
        old, new = picks(before, genres, hashes, queries, scope), picks(after, genres, hashes, queries, scope)
        as_set = sum(set(a) != set(b) for a, b in zip(old, new))
        in_order = sum(a != b for a, b in zip(old, new))
        kept = sum(len(set(a) & set(b)) for a, b in zip(old, new))
        share = {name: np.mean([genres[p] == genres[q] for q, ps in zip(queries, found) for p in ps])
                 for name, found in (("before", old), ("now", new))}
        print(f"scope {scope}: {as_set} of {len(queries)} queries get another set of picks ({in_order} another "
              f"order or set); {kept} of {K * len(queries)} picks kept; picks in the query's genre: "
              f"{share['before']:.3f} before, {share['now']:.3f} now")
    return 0


if __name__ == "__main__":
    sys.exit(main())
