"""Train the genre head on the MusiCNN embeddings of a feature store.

    python -m model.train [--data DIR] [--weights DIR] [--folds 5] [--epochs 60] [--seed 0]

First a cross-validation by blocks of ids: in each genre the tracks, sorted by id, are cut into
`--folds` contiguous blocks, and each block is held out once (GTZAN is ordered by artist, so
neighbouring ids must not straddle the split, and segments of one clip never do). It reports
track-level held-out accuracy, per genre, and the confusion matrix, with tracks predicted as in
service (mean over the prediction's patches). Then it trains on every track and writes the head
into the weights folder, with its held-out figures.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from model.atomic import atomic_write
from model.classifier import WeightsError, build_head, load_backbone
from model.embeddings import patch_embeddings
from model.params import GENRES, MAX_PATCHES, feature_params
from model.store import Store, StoreError, Track
from model.settings import from_env
from model.weights import BACKBONE_FILE, HEAD_FILE, HEAD_INFO_FILE, atomic_save_weights, file_digest


def block_folds(tracks: list[Track], n_folds: int) -> np.ndarray:
    """Fold of each track: per genre, contiguous blocks of the tracks sorted by their numeric id."""
    def key(track: Track) -> tuple[int, str]:
        numbers = re.findall(r"\d+", track.id)
        return (int(numbers[-1]) if numbers else -1, track.id)

    folds = np.empty(len(tracks), dtype=int)
    for genre in {t.genre for t in tracks}:
        members = sorted((i for i, t in enumerate(tracks) if t.genre == genre), key=lambda i: key(tracks[i]))
        for rank, i in enumerate(members):
            folds[i] = rank * n_folds // len(members)
    return folds


def tracks_digest(tracks: list[Track]) -> str:
    """Names the training set by content (ids and content hashes), not by where it lay."""
    digest = hashlib.sha256()
    for track in sorted(tracks, key=lambda t: t.id):
        digest.update(f"{track.genre}/{track.id}:{track.content_hash}\n".encode())
    return digest.hexdigest()[:16]


def fit_head(embeddings: list[np.ndarray], labels: np.ndarray, epochs: int, seed: int):
    """Train a head on the patches of the given tracks, each track weighing the same in total and
    each genre the same overall (GTZAN's development set has more blues, jazz and classical)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    x = np.concatenate(embeddings)
    y = np.repeat(labels, [len(e) for e in embeddings])
    per_track = np.repeat([1.0 / len(e) for e in embeddings], [len(e) for e in embeddings])
    genre_weight = {g: 1.0 / per_track[y == g].sum() for g in np.unique(y)}
    weight = per_track * np.array([genre_weight[g] for g in y])
    weight *= len(weight) / weight.sum()
    head = build_head(len(GENRES))
    head.get_layer("standardise").adapt(x)
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    head.fit(x, y, sample_weight=weight, epochs=epochs, batch_size=64, shuffle=True, verbose=0)
    return head


def track_probabilities(head, embeddings: list[np.ndarray]) -> np.ndarray:
    """Track-level probabilities: the mean over each track's patches, as GenreClassifier does."""
    return np.stack([head(e, training=False).numpy().mean(axis=0) for e in embeddings])


def confusion(truth: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    matrix = np.zeros((n, n), dtype=int)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def report(truth: np.ndarray, predicted: np.ndarray, durations: np.ndarray) -> dict:
    matrix = confusion(truth, predicted, len(GENRES))
    per_genre = {g: float(matrix[i, i] / matrix[i].sum()) for i, g in enumerate(GENRES) if matrix[i].sum()}
    long = durations >= 10.0
    return {
        "accuracy": float(np.mean(truth == predicted)),
        "tracks": int(len(truth)),
        "accuracy_10s_or_longer": float(np.mean(truth[long] == predicted[long])) if long.any() else None,
        "accuracy_under_10s": float(np.mean(truth[~long] == predicted[~long])) if (~long).any() else None,
        "per_genre": per_genre,
        "confusion": matrix.tolist(),
    }


def format_report(result: dict) -> str:
    lines = [f"held-out track accuracy: {result['accuracy']:.3f} over {result['tracks']} tracks"]
    for name in ("accuracy_10s_or_longer", "accuracy_under_10s"):
        if result[name] is not None:
            lines.append(f"  {name.replace('_', ' ')}: {result[name]:.3f}")
    lines.append("per genre: " + ", ".join(f"{g} {a:.2f}" for g, a in result["per_genre"].items()))
    lines.append("confusion (rows: truth, columns: predicted)")
    lines.append(" " * 10 + " ".join(f"{g[:5]:>5}" for g in GENRES))
    lines += [f"{g:>9} " + " ".join(f"{v:5d}" for v in row) for g, row in zip(GENRES, result["confusion"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    settings = from_env()
    parser.add_argument("--data", type=Path, default=settings.data_dir,
                        help="feature store (default: $SOUNDALIKE_DATA_DIR, else data/)")
    parser.add_argument("--weights", type=Path, default=settings.weights_dir,
                        help="weights folder (default: $SOUNDALIKE_WEIGHTS_DIR, else weights/)")
    parser.add_argument("--folds", type=int, default=5, help="blocks of ids per genre for cross-validation")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true", help="only cross-validate")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        store = Store(args.data)
        backbone = load_backbone(args.weights)
    except (StoreError, WeightsError) as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    tracks = [t for t in store.tracks() if t.genre in GENRES]
    if len({t.genre for t in tracks}) < 2 or len(tracks) < 2 * args.folds:
        print(f"train: {args.data} holds too few GTZAN-genre tracks ({len(tracks)}) to train on", file=sys.stderr)
        return 2
    labels = np.array([GENRES.index(t.genre) for t in tracks])
    durations = np.array([t.duration_s for t in tracks])

    digest = file_digest(args.weights / BACKBONE_FILE)
    import tensorflow as tf
    embed_graph = tf.function(lambda b: backbone(b, training=False)["embedding"])

    def embed(batch: np.ndarray) -> np.ndarray:
        return embed_graph(tf.constant(batch)).numpy()

    train_x = patch_embeddings(store, tracks, embed, digest, max_patches=None)
    eval_x = patch_embeddings(store, tracks, embed, digest, max_patches=MAX_PATCHES)

    folds = block_folds(tracks, args.folds)
    predicted = np.empty(len(tracks), dtype=int)
    for fold in range(args.folds):
        held = np.flatnonzero(folds == fold)
        kept = np.flatnonzero(folds != fold)
        head = fit_head([train_x[i] for i in kept], labels[kept], args.epochs, args.seed)
        predicted[held] = track_probabilities(head, [eval_x[i] for i in held]).argmax(axis=1)
        print(f"fold {fold + 1}/{args.folds}: {np.mean(predicted[held] == labels[held]):.3f} "
              f"on {len(held)} held-out tracks", file=sys.stderr)
    result = report(labels, predicted, durations)
    print(format_report(result))

    if not args.no_save:
        head = fit_head(train_x, labels, args.epochs, args.seed)
        seen = track_probabilities(head, eval_x).argmax(axis=1)
        atomic_save_weights(head, args.weights / HEAD_FILE)
        info = {
            "genres": list(GENRES),
            "feature_params": feature_params(),
            "backbone_digest": digest,
            "trained_on": {"tracks": len(tracks), "tracks_digest": tracks_digest(tracks),
                           "per_genre": {g: int(np.sum(labels == i)) for i, g in enumerate(GENRES)}},
            "training": {"epochs": args.epochs, "seed": args.seed, "folds": args.folds},
            "held_out": result,
            "training_set_accuracy": float(np.mean(seen == labels)),
        }
        with atomic_write(args.weights / HEAD_INFO_FILE, "w") as f:
            json.dump(info, f, indent=2)
        print(f"wrote {args.weights / HEAD_FILE} (training-set accuracy {info['training_set_accuracy']:.3f})")
    print(f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
