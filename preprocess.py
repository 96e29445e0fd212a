"""Build Soundalike's feature store from a music collection.

    python preprocess.py SOURCE [--data DIR] [--workers N]

SOURCE is a GTZAN collection (the Kaggle copy, the original tarball's `genres/`) or any folder of
<genre>/ sub-folders of audio. A re-run stores only what is new; an interrupted run is completed.
The recommender's index is then fitted and saved beside the store (model.index.build).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.index.build import build_index
from model.stores.ingest import ingest
from model.service.settings import from_env
from model.stores.feature_store import StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="GTZAN collection or music folder with <genre>/ sub-folders")
    parser.add_argument("--data", type=Path, default=from_env().data_dir,
                        help="store folder (default: $SOUNDALIKE_DATA_DIR, else data/)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    args = parser.parse_args(argv)
    try:
        summary = ingest(args.source, args.data, workers=args.workers)
    except (FileNotFoundError, StoreError) as error:
        print(f"preprocess: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\npreprocess: interrupted; what was stored is kept, and a re-run completes the rest", file=sys.stderr)
        return 130
    print(summary.report())
    if summary.stored + summary.already + len(summary.skipped) == 0:
        print(f"preprocess: no audio files under {args.source} (expected <genre>/ folders of wav, au, flac, "
              "ogg, mp3 ...)", file=sys.stderr)
        return 1
    try:
        build_index(args.data, from_env().scope)
    except StoreError as error:   # every file skipped: no tracks to index
        print(f"preprocess: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\npreprocess: interrupted while indexing; the store is complete, and `python -m model.index.build` "
              "(or the service, at start) builds the index", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
