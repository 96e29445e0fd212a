"""Build Soundalike's feature store from a music collection.

    python preprocess.py SOURCE [--data DIR] [--genres auto|folders|tags|model] [--workers N] [--[no-]keep-mel]
                         [--engine ray [--address ADDRESS]]

SOURCE is a GTZAN collection (the Kaggle copy, the original tarball's `genres/`), a folder of <genre>/
sub-folders, or a music library as players lay it out (Artist/Album/NN Title.ext, tagged). Each track's
genre comes from a folder named like a genre, else its genre tag, else the classifier (--genres auto; the
summary says how many came by which route). A re-run is a rescan: new files are stored, changed ones
analysed again, gone ones removed, the rest left; an interrupted run is completed.
The recommender's index is then fitted and saved beside the store (model.index.build).
A store keeps each track's full log-mel (0.75 MB a 30 s clip, 5.6 MB a 4-minute song) only with --keep-mel,
the default for a GTZAN collection (training needs them); otherwise a 4-minute song costs 14-22 kB.
--engine ray spreads the work over a Ray cluster. See docs/own-music.md.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from model.index.build import build_index
from model.network.classifier import WeightsError
from model.service.settings import from_env
from model.stores.collection import GENRE_ROUTES
from model.stores.feature_store import StoreError
from model.stores.engine import EngineError
from model.stores.ingest import ENGINES, ingest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path,
                        help="GTZAN collection, <genre>/ folders, or a music library (Artist/Album/...)")
    parser.add_argument("--data", type=Path, default=from_env().data_dir,
                        help="store folder (default: $SOUNDALIKE_DATA_DIR, else data/)")
    parser.add_argument("--genres", choices=GENRE_ROUTES, default="auto",
                        help="how each track's genre is chosen: auto (a folder named like a genre, else its genre "
                             "tag, else the classifier), folders (its top folder, whatever its name), tags (its "
                             "tag, else the classifier), model (the classifier)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes, or Ray tasks at once (default: one per core, or per CPU of the cluster)")
    parser.add_argument("--keep-mel", action=argparse.BooleanOptionalAction, default=None,
                        help="keep every track's full log-mel and chromagram (default: as the store was built; "
                             "a new store keeps them for a GTZAN collection, which trains the network)")
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
                         address=args.address, genres=args.genres)
    except (FileNotFoundError, StoreError, EngineError, WeightsError) as error:
        print(f"preprocess: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\npreprocess: interrupted; what was stored is kept, and a re-run completes the rest", file=sys.stderr)
        return 130
    print(summary.report())
    if summary.stored + summary.updated + summary.already + summary.removed + len(summary.skipped) == 0:
        print(f"preprocess: no audio files under {args.source} (expected wav, au, flac, ogg, mp3, m4a ... files, "
              "in folders of any depth)", file=sys.stderr)
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
