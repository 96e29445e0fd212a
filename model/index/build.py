"""The `index` command: fit the recommender's scaler and k-NN index over a store and save them beside it,
so that the service loads them at start-up instead of building them (minutes for 10^6 tracks).

    python -m model.index.build [--data DIR] [--scope genre|library] [--force]

The saved index is DIR/knn-index.<features>.<scope>.npz. Its key records the feature parameters, the
feature space, the scope, the index parameters and a digest of the store's track list: the service
refuses (and builds in memory instead) an index whose key is not the current one. preprocess.py
runs this at the end of each run, for the service's configured scope.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from model.atomic import remove_leftovers
from model.index.ann import BACKEND, AnnKnn, IndexMismatch, check_index, save_index
from model.index.knn import SpaceScaler
from model.params import feature_params, index_params
from model.stores.feature_store import Store, StoreError, Track

INDEX_FILE = "knn-index.{features}.{scope}.npz"


def index_path(data_dir: Path, features: str, scope: str) -> Path:
    return Path(data_dir) / INDEX_FILE.format(features=features, scope=scope)


def tracks_digest(tracks: Sequence[Track]) -> str:
    """SHA-256 of the tracks' genres, ids and content hashes, in the store's order (the index's rows)."""
    return hashlib.sha256("".join(f"{t.genre}/{t.id}/{t.content_hash}\n" for t in tracks).encode()).hexdigest()


def index_key(tracks: Sequence[Track], features: str, scope: str, mix_weights: Sequence[float] | None) -> dict:
    """What a saved index must have been built for to be used."""
    return {"backend": BACKEND, "feature_params": feature_params(), "index_params": index_params(),
            "features": features, "scope": scope, "mix_weights": list(mix_weights) if features == "mix" else None,
            "tracks": len(tracks), "tracks_digest": tracks_digest(tracks)}


def fit_index(blocks: Sequence[np.ndarray], genres: Sequence[str], scope: str,
              weights: Sequence[float] | None = None, progress: bool = False) -> tuple[SpaceScaler, AnnKnn]:
    """The scaler over the feature spaces `blocks` ((n, width) each) and the index of their scaled rows."""
    scaler = SpaceScaler(weights).fit(blocks)
    return scaler, AnnKnn(scope=scope).fit(scaler.transform(blocks), genres, progress)


def build_index(data_dir: Path, scope: str, progress: bool = True, force: bool = False) -> Path:
    """Fit and save the chroma-summary index of the store at `data_dir`, unless the one saved there
    is current (or `force`); returns its path."""
    store = Store(data_dir)
    with store.writer():   # the tracks cannot change meanwhile, and no other writer's temporary file is ours
        return _build(store, scope, progress, force)


def _build(store: Store, scope: str, progress: bool, force: bool) -> Path:
    tracks = store.tracks()
    if not tracks:
        raise StoreError(f"the store at {store.root} holds no tracks: build it with preprocess.py")
    path, key = index_path(store.root, "chroma", scope), index_key(tracks, "chroma", scope, None)
    remove_leftovers(store.root, name=path.name)   # what a killed build left
    if not force:
        try:
            check_index(path, key)
            if progress:
                print(f"index: {path} is up to date", file=sys.stderr)
            return path
        except IndexMismatch as reason:
            if progress and path.exists():
                print(f"index: rebuilding: {reason}", file=sys.stderr)
    start = time.perf_counter()
    # The summaries are a column of the store's rows: no features file is read (a store may keep none).
    scaler, index = fit_index([store.chroma_summaries(tracks)], [t.genre for t in tracks], scope, progress=progress)
    save_index(path, scaler, index, key)
    if progress:
        print(f"index: {len(tracks)} tracks, {len(index.graphs_)} graph(s), fitted and saved in "
              f"{time.perf_counter() - start:.1f} s to {path}", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    from model.service.settings import from_env   # the service's defaults; imported late: it reads the environment

    settings = from_env()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=settings.data_dir,
                        help="store folder (default: $SOUNDALIKE_DATA_DIR, else data/)")
    parser.add_argument("--scope", choices=("genre", "library"), default=settings.scope,
                        help="search scope (default: $SOUNDALIKE_SCOPE, else genre)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the saved index is up to date")
    args = parser.parse_args(argv)
    if settings.features != "chroma":
        print(f"index: the service is set to search {settings.features!r} features, whose index it builds at "
              "start (it needs the network); this saves the chroma-summary index", file=sys.stderr)
    try:
        build_index(args.data, args.scope, force=args.force)
    except StoreError as error:
        print(f"index: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nindex: interrupted; the index saved before, if any, is unchanged", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
