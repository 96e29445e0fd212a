"""An own-music library at scale: preprocessing throughput of 4-minute tagged MP3s in Artist/Album/ folders
with the genre pass (the network) included, store bytes per track, what a track costs in a worker, and
the service's memory per track at 10^5 tracks.

    python benchmarks/bench_own_music.py [--tracks 40] [--workers 2]

The library is one generated 4-minute stereo MP3 (benchmarks.common.make_song, 44.1 kHz, 128 kbit/s by
libsndfile's LAME) copied under `--tracks` names with their own tags (no genre tag on a third of them,
so the classifier places those): decoding and analysis cost the same whatever the notes are.
Throughput is the median of `--repeats` runs of preprocess's own ingest, each into an empty store,
worker start-up and the network's loading included. Memory at 10^5 tracks is measured part by part
(the track records, the fingerprint index, the feature matrix) on 10^4 and 10^5 synthetic rows shaped
like the measured ones, since a real 10^5-track store of 4-minute songs is 7 GB.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from benchmarks.common import make_song, verdict  # noqa: E402
from serving import rss_mb  # noqa: E402
from tagged_media import retag  # noqa: E402

TARGETS = {"tracks_per_s": 6.0, "bytes_per_track": 100_000}
ARTISTS = ["Delta Ray", "Iron Pyre", "Кино", "日本の歌手", "Sol y Mar"]
GENRE_TAGS = ["Hip-Hop", "Hard Rock", "", "Jazz", "Ambient", "Reggae"]


def make_library(root: Path, n: int, seconds: float = 240.0) -> Path:
    """`n` tagged copies of one song in Artist/Album/NN Title.mp3 folders (every album has an "01 Intro")."""
    master = make_song(root / "master.mp3", seconds)
    for i in range(n):
        artist, album, number = ARTISTS[i % len(ARTISTS)], f"Album {i // (2 * len(ARTISTS))}", 1 + i // len(ARTISTS)
        title = "Intro" if number == 1 else f"Song {i}"
        tags = {"title": title, "artist": artist, "album": album, "track": str(number), "date": "2020"}
        if GENRE_TAGS[i % len(GENRE_TAGS)]:
            tags["genre"] = GENRE_TAGS[i % len(GENRE_TAGS)]
        retag(master, root / "music" / artist / album / f"{number:02d} {title}.mp3", tags)
    master.unlink()
    return root / "music"


def per_track_costs(path: Path, repeats: int = 3) -> dict[str, float]:
    """Median seconds of each step of preprocessing one track for a compact store (model.stores.ingest.process)
    in one process on one thread, and the resident memory the network adds to a worker."""
    from model.audio.decoding import decode
    from model.audio.features import analysis_spans, chromagram, excerpt_span, log_mel, warm_up
    from model.audio.tags import read_tags
    from model.index.fingerprint import fingerprint
    from model.network.classifier import GenreClassifier
    from model.stores.engine import limit_threads

    limit_threads()
    warm_up()
    before = rss_mb(os.getpid())
    classifier = GenreClassifier.load(threads=1)
    classifier.warm_up()
    network_mb = rss_mb(os.getpid()) - before
    steps: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def timed(name, run):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = run()
        steps.setdefault(name, []).append(time.perf_counter() - start)
        cpu.setdefault(name, []).append(time.process_time() - start_cpu)
        return out

    for _ in range(repeats):
        audio = timed("decode (what the analysis reads)", lambda: decode(path, spans=analysis_spans))
        assert audio.spans, "the whole file was decoded"
        y = audio.samples
        timed("chromagram of the middle excerpt", lambda: chromagram(y))
        timed("fingerprint of the middle excerpt", lambda: fingerprint(log_mel(y[slice(*excerpt_span(len(y)))])))
        timed("network (5 patches)", lambda: classifier.analyse(y))
        timed("tags", lambda: read_tags(path))
    return ({k: statistics.median(v) for k, v in steps.items()}, {k: statistics.median(v) for k, v in cpu.items()},
            network_mb)


def throughput(library: Path, workers: int, repeats: int, tmp: Path) -> tuple[list[float], int, str]:
    """Tracks per second of each run, bytes per track of the store, and the last run's summary."""
    from model.stores.ingest import ingest

    rates, report, size = [], "", 0
    for run in range(repeats):
        data = tmp / f"data{run}"
        summary = ingest(library, data, workers=workers, progress=False)
        assert summary.stored == len(list(library.rglob("*.mp3"))) and not summary.skipped, summary.report()
        rates.append(summary.stored / summary.seconds)
        size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) // summary.stored
        report = summary.report()
    return rates, size, report


def _reset_peak() -> None:
    """Start VmHWM (the peak resident memory) again from now (Linux 4.0 and later)."""
    Path("/proc/self/clear_refs").write_text("5")


def synthetic_prints(n: int, hashes_per_track: int, seed: int = 0) -> list:
    """`n` fingerprints shaped like a compact store's (`hashes_per_track` landmark hashes of the middle
    EXCERPT_S, frames counted from its start): hashes made of a band, a band difference and a time difference
    as `model.index.fingerprint.fingerprint` makes them, so that they spread over the same hash space."""
    from model.index.fingerprint import MAX_DF, MAX_DT, Fingerprint
    from model.params import EXCERPT_S, HOP_LENGTH, N_MELS, SAMPLE_RATE

    rng = np.random.default_rng(seed)
    frames, total = int(EXCERPT_S * SAMPLE_RATE / HOP_LENGTH), n * hashes_per_track
    # Views of two arrays, as the store's reads return them (one buffer a column), not n small arrays each.
    hashes = ((rng.integers(0, N_MELS, total, dtype=np.uint32) << 13)
              | (rng.integers(0, 2 * MAX_DF + 1, total, dtype=np.uint32) << 6)
              | rng.integers(1, MAX_DT + 1, total, dtype=np.uint32))
    times = np.sort(rng.integers(0, frames, (n, hashes_per_track), dtype=np.int32), axis=1).ravel()
    return [Fingerprint(hashes[i:i + hashes_per_track], times[i:i + hashes_per_track])
            for i in range(0, total, hashes_per_track)]


def service_memory(n: int, hashes_per_track: int) -> dict[str, float]:
    """MB the service holds for `n` synthetic tracks: the Track records (with tags; resident memory
    grown), the search matrices of the mix space (chroma summary and embedding, float32), and the
    fingerprint index (`hashes_per_track` each): the bytes of its arrays, the resident memory it leaves once
    the fingerprints it was fitted on are freed, and the peak while it is fitted (beyond the fingerprints)."""
    from model.index.fingerprint import FingerprintIndex
    from model.stores.feature_store import Track

    out = {}
    gc.collect()
    before = rss_mb(os.getpid())
    tracks = [Track(id=f"Artist_{i % 977}~Album_{i % 31}~{i:02d}_Song_title_{i}", genre="rock",
                    source=f"/srv/music/Artist {i % 977}/Album {i % 31}/{i:02d} Song title {i}.mp3",
                    duration_s=240.0, content_hash=f"{i:064x}",
                    path=f"Artist {i % 977}/Album {i % 31}/{i:02d} Song.mp3",
                    title=f"Song title {i}", artist=f"Artist {i % 977}", album=f"Album {i % 31}", track_no=i % 12,
                    year=2000 + i % 20, route="model", size=4_000_000, mtime_ns=i,
                    network="0123456789abcdef-0123456789abcdef",
                    written_ns=i) for i in range(n)]
    out["track records"] = rss_mb(os.getpid()) - before
    out["search matrices (mix space)"] = n * (36 + 200) * 4 / 2 ** 20
    gc.collect()
    base = rss_mb(os.getpid())
    prints = synthetic_prints(n, hashes_per_track)
    with_prints = rss_mb(os.getpid())
    _reset_peak()
    index = FingerprintIndex().fit(prints)
    peak = rss_mb(os.getpid(), "VmHWM") - with_prints
    del prints
    gc.collect()
    out["fingerprint index"] = rss_mb(os.getpid()) - base
    arrays = sum(a.nbytes for a in vars(index).values() if isinstance(a, np.ndarray)) / 2 ** 20
    print(f"  fingerprint index at {n} tracks: arrays {arrays:.0f} MB, resident {out['fingerprint index']:.0f} MB once "
          f"its input is freed; while fitted, {with_prints - base:.0f} MB of fingerprints read and {peak:.0f} MB more "
          "at the peak")
    del tracks, index
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-tracks", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        library = make_library(tmp, args.tracks)
        print(f"library: {args.tracks} tagged 4-minute MP3s in {time.perf_counter() - start:.0f} s "
              f"({next(library.rglob('*.mp3')).stat().st_size / 1e6:.1f} MB each)")
        costs, cpu, network_mb = per_track_costs(next(library.rglob("*.mp3")))
        total, total_cpu = sum(costs.values()), sum(cpu.values())
        # CPU time is what a loaded machine (other processes on the same cores) does not inflate.
        print(f"one track in one process, one thread: {total:.2f} s wall, {total_cpu:.2f} s CPU (so at most "
              f"{args.workers / total_cpu:.1f} tracks/s on {args.workers} idle cores, start-up aside)")
        for name, seconds in costs.items():
            print(f"  {name}: {seconds:.3f} s wall, {cpu[name]:.3f} s CPU ({100 * cpu[name] / total_cpu:.0f} %)")
        print(f"  the network adds {network_mb:.0f} MB to a worker's resident memory")
        if not args.repeats:
            return 0
        rates, size, report = throughput(library, args.workers, args.repeats, tmp)
        print(f"last run: {report.splitlines()[0]}\n          {report.splitlines()[1]}")
        print(verdict(f"preprocess, 4-minute MP3s, {args.workers} workers, genre pass included (median of "
                      f"{len(rates)}: {', '.join(f'{r:.2f}' for r in rates)})", statistics.median(rates),
                      TARGETS["tracks_per_s"], "tracks/s", higher_is_better=True))
        print(verdict("store bytes per 4-minute track (compact store)", size / 1000, TARGETS["bytes_per_track"] / 1000,
                      "kB"))
        from model.stores.feature_store import Store
        store = Store(tmp / "data0")
        hashes = int(np.mean([len(f.hashes) for f in store.fingerprints(store.tracks())]))
        print(f"fingerprint hashes per 4-minute track: {hashes}")
    for n in args.memory_tracks:
        parts = service_memory(n, hashes)
        print(f"service memory at {n} tracks: {sum(parts.values()):.0f} MB = " +
              ", ".join(f"{k} {v:.0f} MB" for k, v in parts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
