"""Train the genre head on MusiCNN features of a feature store, and report its held-out figures.

    python -m model.train [--data DIR] [--weights DIR] [--folds 5] [--backbones msd] [--layer embedding]
                          [--summaries mean+std] [--c 0.03] [--zero-pad] [--crops] [--no-save]

First a cross-validation by blocks of ids: in each genre the tracks, sorted by id, are cut into
`--folds` contiguous blocks, and each block is held out once (GTZAN is ordered by artist, so
neighbouring ids must not straddle the split, and segments of one clip never do). Held-out tracks
are predicted as the service predicts them (at most MAX_PATCHES patches). It reports accuracy,
balanced accuracy (mean per-genre recall), per-genre recall, the confusion matrix and the expected
calibration error, for all tracks, for tracks of 10 s or more and for 2-3 s excerpts (see
`model.evaluate`), fits the temperature that calibrates the probabilities on those held-out
predictions, then trains on every track and writes the head, its temperature and its figures into
the weights folder, and the classifier's ONNX export that the service runs (`model.network.onnx_export`). Nothing is random: the short crops are seeded by each track's id and content.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import keras
import numpy as np

from model.atomic import atomic_write
from model.evaluate import fit_temperature, format_report, report, softmax
from model.network.classifier import load_backbone
from model.network.head import LAYERS, HeadInput, build_head, summarise
from model.network.embeddings import patch_embeddings
from model.network.onnx_export import export as export_onnx
from model.network.weights import (HEAD_FILE, HEAD_INFO_FILE, WeightsError, atomic_save_weights, backbone_file,
                                  file_digest)
from model.params import GENRES, MAX_PATCHES, network_params
from model.service.settings import from_env
from model.stores.feature_store import Store, StoreError, Track

# The recipe the shipped head is trained with, chosen by balanced cross-validated accuracy (docs/model.md).
RECIPE = HeadInput(backbones=("msd",), layer="embedding", summaries=("mean", "std"), loop_short=True)
RECIPE_C = 0.03


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


def head_features(store: Store, tracks: list[Track], backbones: dict, weights_dir: Path, head_input: HeadInput,
                  max_patches: int | None, crops: bool = False) -> list[np.ndarray]:
    """Per track, the (n_patches, d) features the head reads, every backbone's joined (cached in the store)."""
    import tensorflow as tf

    per_backbone = []
    for name in head_input.backbones:
        graph = tf.function(lambda b, net=backbones[name]: net(b, training=False)[head_input.layer])
        per_backbone.append(patch_embeddings(store, tracks, lambda batch: graph(tf.constant(batch)).numpy(),
                                             file_digest(weights_dir / backbone_file(name)), max_patches,
                                             layer=head_input.layer, crops=crops, loop=head_input.loop_short))
    return [np.concatenate(parts, axis=1) for parts in zip(*per_backbone)]


def training_set(whole: list[np.ndarray], crops: list[np.ndarray] | None, labels: np.ndarray,
                 summaries: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (summarised features), labels and weights: each track's whole-track summary, and (with
    `crops`) one row per short crop of it, as a 2-3 s upload is seen. Each track weighs the same in
    total and each genre the same overall (GTZAN's development set has more blues, jazz and classical)."""
    rows, y, weight = [], [], []
    for i, label in enumerate(labels):
        track_rows = [np.asarray(summarise(whole[i], summaries))]
        if crops is not None and len(whole[i]) > 1:  # a track of one patch is its own short crop
            track_rows += [np.asarray(summarise(c[None], summaries)) for c in crops[i]]
        rows += track_rows
        y += [label] * len(track_rows)
        weight += [1.0 / len(track_rows)] * len(track_rows)
    y, weight = np.array(y), np.array(weight)
    for g in np.unique(y):
        weight[y == g] /= weight[y == g].sum()
    return np.array(rows), y, weight * len(weight) / weight.sum()


def fit_head(x: np.ndarray, y: np.ndarray, weight: np.ndarray, c: float) -> keras.Model:
    """Standardised multinomial logistic regression (L2, inverse strength `c`), as a linear Keras
    layer: the standardisation is folded into its weights, so the service runs one matrix product.
    lbfgs on a fixed problem is deterministic: no seed is involved."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x, sample_weight=weight)
    model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x), y, sample_weight=weight)
    weights, bias = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # scikit-learn keeps one row for two classes: the second's logit, the first's 0
        weights, bias = np.vstack([np.zeros_like(weights), weights]), np.r_[0.0, bias]
    coef = np.zeros((len(GENRES), x.shape[1]))
    intercept = np.full(len(GENRES), -1e4)  # a genre absent from training is never predicted
    coef[model.classes_], intercept[model.classes_] = weights, bias
    kernel = (coef / scaler.scale_).T
    head = build_head(x.shape[1])
    head.get_layer("genre").set_weights([kernel.astype(np.float32),
                                         (intercept - scaler.mean_ @ kernel).astype(np.float32)])
    return head


def track_logits(head: keras.Model, features: list[np.ndarray], summaries: tuple[str, ...]) -> np.ndarray:
    """Track-level logits from each track's patches, as GenreClassifier computes them."""
    return head(np.stack([np.asarray(summarise(f, summaries)) for f in features]), training=False).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    settings = from_env()
    parser.add_argument("--data", type=Path, default=settings.data_dir,
                        help="feature store (default: $SOUNDALIKE_DATA_DIR, else data/)")
    parser.add_argument("--weights", type=Path, default=settings.weights_dir,
                        help="weights folder (default: $SOUNDALIKE_WEIGHTS_DIR, else weights/)")
    parser.add_argument("--folds", type=int, default=5, help="blocks of ids per genre for cross-validation")
    parser.add_argument("--backbones", default="+".join(RECIPE.backbones), help="msd, mtt or msd+mtt")
    parser.add_argument("--layer", default=RECIPE.layer, choices=sorted(LAYERS))
    parser.add_argument("--summaries", default="+".join(RECIPE.summaries), help="mean, or mean+std over patches")
    parser.add_argument("--c", type=float, default=RECIPE_C, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--zero-pad", action="store_true", help="zero-pad clips shorter than a patch, not loop them")
    parser.add_argument("--crops", action="store_true", help="train on short crops of long tracks too")
    parser.add_argument("--no-save", action="store_true", help="only cross-validate")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        head_input = HeadInput(tuple(args.backbones.split("+")), args.layer, tuple(args.summaries.split("+")),
                               loop_short=not args.zero_pad)
        store = Store(args.data)
        backbones = {name: load_backbone(args.weights, name) for name in head_input.backbones}
    except (StoreError, WeightsError) as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    tracks = [t for t in store.tracks() if t.genre in GENRES]
    if len({t.genre for t in tracks}) < 2 or len(tracks) < 2 * args.folds:
        print(f"train: {args.data} holds too few GTZAN-genre tracks ({len(tracks)}) to train on", file=sys.stderr)
        return 2
    labels = np.array([GENRES.index(t.genre) for t in tracks])
    durations = np.array([t.duration_s for t in tracks])
    summaries = head_input.summaries

    def features(max_patches: int | None, crops: bool = False) -> list[np.ndarray]:
        return head_features(store, tracks, backbones, args.weights, head_input, max_patches, crops)

    whole = features(None)
    crops = features(None, crops=True) if args.crops else None
    served = features(MAX_PATCHES)  # the patches a request looks at

    def fit(members: np.ndarray) -> keras.Model:
        member_crops = None if crops is None else [crops[i] for i in members]
        return fit_head(*training_set([whole[i] for i in members], member_crops, labels[members], summaries), args.c)

    folds = block_folds(tracks, args.folds)
    logits = np.zeros((len(tracks), len(GENRES)))
    for fold in range(args.folds):
        held = np.flatnonzero(folds == fold)
        logits[held] = track_logits(fit(np.flatnonzero(folds != fold)), [served[i] for i in held], summaries)
        print(f"fold {fold + 1}/{args.folds}: {np.mean(logits[held].argmax(axis=1) == labels[held]):.3f} "
              f"on {len(held)} held-out tracks", file=sys.stderr)
    # Calibration: one temperature, fitted on the held-out logits (never on training-set ones).
    temperature = fit_temperature(logits, labels)
    raw, calibrated = report(labels, softmax(logits), durations), report(labels, softmax(logits, temperature), durations)
    print(format_report(calibrated))
    print(f"calibration: temperature {temperature:.3f}; expected calibration error of the held-out "
          f"probabilities {raw['all']['ece']:.3f} before, {calibrated['all']['ece']:.3f} after")

    if not args.no_save:
        head = fit(np.arange(len(tracks)))
        seen = track_logits(head, served, summaries).argmax(axis=1)
        atomic_save_weights(head, args.weights / HEAD_FILE)
        info = {
            "genres": list(GENRES),
            "feature_params": network_params(),
            "input": head_input.to_json(),
            "temperature": temperature,
            "backbone_digests": {name: file_digest(args.weights / backbone_file(name)) for name in head_input.backbones},
            "trained_on": {"tracks": len(tracks), "tracks_digest": tracks_digest(tracks),
                           "per_genre": {g: int(np.sum(labels == i)) for i, g in enumerate(GENRES)}},
            "training": {"c": args.c, "short_crops": crops is not None, "folds": args.folds},
            "held_out": calibrated,
            "held_out_ece_before_calibration": {group: r["ece"] for group, r in raw.items()},
            "training_set_accuracy": float(np.mean(seen == labels)),
        }
        with atomic_write(args.weights / HEAD_INFO_FILE, "w") as f:
            json.dump(info, f, indent=2)
        print(f"wrote {args.weights / HEAD_FILE} (training-set accuracy {info['training_set_accuracy']:.3f}) "
              f"and {export_onnx(args.weights)}")
    print(f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
