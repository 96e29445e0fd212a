"""Build Soundalike's feature store from a music collection.

    python preprocess.py SOURCE [--data DIR] [--workers N] [--no-keep-mel] [--engine ray [--address ADDRESS]]

SOURCE is a GTZAN collection (the Kaggle copy, the original tarball's `genres/`) or any folder of
<genre>/ sub-folders of audio. A re-run stores only what is new; an interrupted run is completed.
The recommender's index is then fitted and saved beside the store (model.index.build).
A large catalogue: --no-keep-mel keeps ~8 kB a track instead of 0.75 MB (the service serves it; training
and the embedding feature space need the log-mels), and --engine ray spreads the work over a Ray cluster.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from model.index.build import build_index
from model.service.settings import from_env
from model.stores.feature_store import StoreError
from model.stores.engine import EngineError
from model.stores.ingest import ENGINES, ingest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="GTZAN collection or music folder with <genre>/ sub-folders")
    parser.add_argument("--data", type=Path, default=from_env().data_dir,
                        help="store folder (default: $SOUNDALIKE_DATA_DIR, else data/)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes, or Ray tasks at once (default: one per core, or per CPU of the cluster)")
    parser.add_argument("--keep-mel", action=argparse.BooleanOptionalAction, default=None,
                        help="keep every track's full log-mel and chromagram (default: as the store was built; "
                             "a new store keeps them)")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local: processes on this machine; ray: Ray Data tasks (pip install '.[cluster]')")
    parser.add_argument("--address", default=None,
                        help="with --engine ray: the cluster (auto, HOST:6379 or ray://HOST:10001; default: "
                             "a local Ray started for the run)")
    args = parser.parse_args(argv)
    if args.address and args.engine != "ray":
        parser.error("--address needs --engine ray")
    # SIGTERM (docker stop, a service manager) stops the run as Ctrl-C does: what was stored is kept.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        summary = ingest(args.source, args.data, workers=args.workers, log_mel=args.keep_mel, engine=args.engine,
                         address=args.address)
    except (FileNotFoundError, StoreError, EngineError) as error:
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
