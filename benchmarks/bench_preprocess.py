"""Preprocessing throughput on the shared GTZAN clips (tracks per second), median of several runs.

    python benchmarks/bench_preprocess.py [--repeats 3] [--workers N]
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_GTZAN, verdict  # noqa: E402
from model.stores.ingest import ingest  # noqa: E402

TARGET_TRACKS_PER_S = 30.0


def linked_collection(root: Path, kind: str | None) -> int:
    """A <genre>/ folder of links to the shared clips of one kind; returns how many."""
    with (SHARED_GTZAN / "MANIFEST.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if kind in (None, r["kind"])]
    for row in rows:
        link = root / row["file"]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(SHARED_GTZAN / row["file"])
    return len(rows)


def preprocess_rates(tmp: Path, kind: str | None, repeats: int, workers: int | None = None) -> list[float]:
    """Tracks per second of `repeats` runs of preprocessing the shared clips of `kind` (None: all)
    into fresh stores under `tmp`, after one run that warms the page cache and the imports."""
    source = tmp / f"src-{kind}"
    n = linked_collection(source, kind)
    ingest(source, tmp / f"warmup-{kind}", workers=workers, progress=False)
    rates = []
    for run in range(repeats):
        summary = ingest(source, tmp / f"store-{kind}-{run}", workers=workers, progress=False)
        assert summary.stored == n, summary.report()
        rates.append(summary.stored / summary.seconds)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    if not SHARED_GTZAN.exists():
        print(f"{SHARED_GTZAN} is absent: nothing to measure")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        for kind, label in (("full_30s", "30 s clips"), (None, "all shared clips")):
            rates = preprocess_rates(Path(tmp), kind, args.repeats, args.workers)
            print(f"{label}: runs {', '.join(f'{r:.1f}' for r in rates)} tracks/s")
            if kind == "full_30s":
                print(verdict("preprocess throughput, 30 s clips", statistics.median(rates), TARGET_TRACKS_PER_S,
                              "tracks/s", higher_is_better=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
