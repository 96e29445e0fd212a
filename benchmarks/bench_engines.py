"""Preprocessing throughput of the two engines on all shared clips: processes on this machine, and Ray
Data tasks on a local Ray with as many workers (its start included), run alternately in one sitting,
with the load average before each run (other work on the machine shows there).

    python benchmarks/bench_engines.py [--repeats 2] [--workers 2] [--no-keep-mel]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_preprocess import linked_collection  # noqa: E402
from benchmarks.common import SHARED_GTZAN  # noqa: E402
from model.stores.ingest import ENGINES, ingest  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep-mel", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    if not SHARED_GTZAN.exists():
        print(f"{SHARED_GTZAN} is absent: nothing to measure")
        return 1
    rates: dict[str, list[float]] = {engine: [] for engine in ENGINES}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src"
        n = linked_collection(source, None)
        ingest(source, Path(tmp) / "warmup", workers=args.workers, progress=False)  # page cache, compiled code
        for run in range(args.repeats):
            for engine in ENGINES:
                load = os.getloadavg()[0]
                summary = ingest(source, Path(tmp) / f"{engine}-{run}", workers=args.workers, progress=False,
                                 log_mel=args.keep_mel, engine=engine)
                assert summary.stored == n - len(summary.skipped) and not summary.skipped, summary.report()
                rates[engine].append(summary.stored / summary.seconds)
                print(f"{engine:>5}: {summary.stored} tracks in {summary.seconds:.1f} s, "
                      f"{rates[engine][-1]:.1f} tracks/s (load average before: {load:.1f})", flush=True)
    for engine, values in rates.items():
        print(f"{engine} engine, {args.workers} workers, {'with' if args.keep_mel else 'without'} log-mels: "
              f"median {statistics.median(values):.1f} tracks/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
