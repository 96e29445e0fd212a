"""Every figure of the service's performance table against its target, from the real server
(`python app.py`, waitress, over loopback) with a store of all shared clips:

- POST /api/analyze, server-side (its Server-Timing), for a 30 s clip and a 4-minute 44.1 kHz stereo
  mp3: medians of --repeats after 2 warm-up requests each, the two files alternating;
- service start to first answer: from starting `python app.py` (store built, caches warm) to the end
  of its first POST /api/analyze, median of --starts starts;
- the server's resident memory, idle after those requests, and its peak while 32 uploads of 30 s
  clips come at once (each refused one sent again after its Retry-After), as tests/test_load.py does;
- preprocessing throughput on the 30 s shared clips (benchmarks/bench_preprocess.py), median of 3 runs.

    python benchmarks/bench_service.py [--repeats 9] [--starts 3]

It measures whatever the service runs (network runtime, admission limits: SOUNDALIKE_* as set).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from benchmarks.bench_preprocess import preprocess_rates  # noqa: E402
from benchmarks.common import SHARED_GTZAN, make_song, server_ms, verdict  # noqa: E402
from model.stores.ingest import ingest  # noqa: E402
from serving import burst, multipart, rss_mb, running_server, send  # noqa: E402

TARGETS = {   # (target, unit, higher is better)
    "POST /api/analyze, 30 s clip, server-side": (100.0, "ms", False),
    "POST /api/analyze, 4-minute 44.1 kHz stereo mp3, server-side": (400.0, "ms", False),
    "service start to first answer (warm caches)": (5.0, "s", False),
    "server memory, idle (362-track store)": (600.0, "MB", False),
    "server memory, peak under 32 concurrent 30 s uploads": (1000.0, "MB", False),
    "preprocess, 30 s clips": (30.0, "tracks/s", True),
}
CONCURRENT = 32


def analyse(server, upload: tuple[bytes, str]) -> float:
    status, headers, body = send(server, *upload)
    if status != 200:
        raise RuntimeError(f"POST /api/analyze answered {status}: {body[:300]!r}")
    return server_ms(headers["server-timing"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    clips = sorted((SHARED_GTZAN / "rock").glob("rock.000*.flac"))
    if not clips:
        print(f"{SHARED_GTZAN} is absent: nothing to measure")
        return 1
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        figures["preprocess, 30 s clips"] = statistics.median(preprocess_rates(Path(tmp), "full_30s", 3))
        data = Path(tmp) / "data"
        print(f"store of all shared clips: {ingest(SHARED_GTZAN, data, progress=False).report()}")
        clip = multipart((SHARED_GTZAN / "rock" / "rock.00003.flac").read_bytes(), "rock.00003.flac")
        song = multipart(make_song(Path(tmp) / "song.mp3", 240).read_bytes(), "song.mp3")
        burst_uploads = [multipart(p.read_bytes(), p.name)
                         for p in sorted(SHARED_GTZAN.glob("*/*.flac"))[:CONCURRENT * 4:4]]
        starts = []
        for run in range(args.starts):
            begun = time.perf_counter()
            with running_server({"SOUNDALIKE_DATA_DIR": str(data)}, workdir=Path(tmp) / f"server{run}",
                                poll_s=0.05) as server:
                analyse(server, clip)
                starts.append(time.perf_counter() - begun)
                if run < args.starts - 1:
                    continue
                times: dict[str, list[float]] = {"clip": [], "song": []}
                for i in range(args.repeats + 2):   # the first two of each are warm-up
                    for name, upload in (("clip", clip), ("song", song)):
                        ms = analyse(server, upload)
                        if i >= 2:
                            times[name].append(ms)
                idle = rss_mb(server.pid)
                result = burst(server, burst_uploads)
                failed = [status for status, _, _ in result.final if status != 200]
                refused = sum(status == 503 for status, _, _ in result.first)
        print(f"start to first answer: {', '.join(f'{s:.1f}' for s in starts)} s")
        for name, label in (("clip", "30 s clip"), ("song", "4-minute mp3")):
            print(f"{label}: {', '.join(f'{t:.0f}' for t in times[name])} ms")
        print(f"burst of {CONCURRENT}: {refused} refused at first (503, Retry-After), {len(failed)} never answered 200")
    figures["POST /api/analyze, 30 s clip, server-side"] = statistics.median(times["clip"])
    figures["POST /api/analyze, 4-minute 44.1 kHz stereo mp3, server-side"] = statistics.median(times["song"])
    figures["service start to first answer (warm caches)"] = statistics.median(starts)
    figures["server memory, idle (362-track store)"] = idle
    figures["server memory, peak under 32 concurrent 30 s uploads"] = result.peak_mb
    print()
    for name, (target, unit, higher) in TARGETS.items():
        print(verdict(name, figures[name], target, unit, higher_is_better=higher))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
