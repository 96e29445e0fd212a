"""Copy recognition on every shared clip: each clip of a store is queried as a 128 kb/s MP3, an OGG,
a 44.1 kHz resample and (clips of 20 s or more) a 12 s excerpt, and as itself. Reports the share
of copies recognised as their original, per kind of copy and of clip, and every match with another
track (a false match, unless GTZAN holds that recording twice).

    python benchmarks/bench_copies.py [--data STORE]

Without --data, a store of ../shared/gtzan-dev is built in a temporary folder first.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_GTZAN  # noqa: E402
from benchmarks.copies import COPIES, TRIM_S, encode  # noqa: E402
from model.audio.decoding import decode, resample  # noqa: E402
from model.index.fingerprint import FingerprintIndex, query_prints  # noqa: E402
from model.stores.feature_store import Store  # noqa: E402
from model.stores.ingest import ingest  # noqa: E402


def clip_kind(duration_s: float) -> str:
    return "30 s" if duration_s > 20 else "15 s" if duration_s > 10 else "2-3 s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a store of the shared clips (default: build one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "data"
            print(ingest(SHARED_GTZAN, data, progress=False).report())
        store = Store(data)
        tracks = store.tracks()
        start = time.perf_counter()
        index = FingerprintIndex().fit(store.fingerprints(tracks))
        print(f"{len(tracks)} fingerprints read from the store in {time.perf_counter() - start:.1f} s")
        copies = {"itself (FLAC)": lambda y, sr: encode(y, sr, format="FLAC"), **COPIES}
        recognised: dict[tuple[str, str], list[bool]] = {}
        others, seconds = [], []
        for row, track in enumerate(tracks):
            y, sr = sf.read(track.source, dtype="float32")
            for name, make in copies.items():
                if make is COPIES["12 s excerpt"] and track.duration_s < TRIM_S[1]:
                    continue
                audio = decode(make(y, sr))
                start = time.perf_counter()
                rows = index.query(query_prints(resample(audio.samples, audio.sample_rate)))
                seconds.append(time.perf_counter() - start)
                recognised.setdefault((name, clip_kind(track.duration_s)), []).append(row in rows)
                others += [(name, track.id, tracks[r].id) for r in rows if r != row]
    for (name, kind), hits in sorted(recognised.items()):
        print(f"{name:>14}, {kind:>5} clips: {np.mean(hits):.4f} recognised ({sum(hits)}/{len(hits)})")
    print(f"matches with another track: {len(others)}")
    for name, query, other in others:
        print(f"  {name} of {query} matched {other}")
    print(f"query (fingerprints at every offset and search), median: {1000 * statistics.median(seconds):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
