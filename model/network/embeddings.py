"""MusiCNN outputs (a layer's per-patch features) of a store's tracks, computed from the stored
log-mels and cached on disk.

The cache is keyed by the backbone's weights digest, the layer, the patch selection and each
track's content hash, so changed weights or tracks are recomputed, never silently reused."""
from __future__ import annotations

import zlib

import numpy as np

from model.atomic import atomic_write
from model.audio.features import patches, short_crops
from model.progress import Progress
from model.stores.feature_store import Store, Track

CACHE_DIR = "embeddings"
_BATCH = 64


def _cache_name(backbone_digest: str, max_patches: int | None, layer: str, crops: bool, loop: bool) -> str:
    selection = "crops" if crops else "all" if max_patches is None else f"max{max_patches}"
    return f"{backbone_digest}{'' if layer == 'embedding' else '-' + layer}-{selection}{'-loop' if loop else ''}.npz"


def crop_seed(track: Track) -> int:
    """A track's own seed for its short crops: the same crops whatever else the store holds."""
    return zlib.crc32(f"{track.id}:{track.content_hash}".encode())


def patch_embeddings(store: Store, tracks: list[Track], embed, backbone_digest: str,
                     max_patches: int | None, progress: bool = True, layer: str = "embedding",
                     crops: bool = False, loop: bool = False) -> list[np.ndarray]:
    """Per-track arrays (n_patches, dim) of a layer's per-patch outputs (`layer` names it in the cache).

    `embed` maps a (n, frames, mels) batch to (n, dim) outputs; `max_patches` is as in
    `model.audio.features.patches` (None: every consecutive patch, as for training); `crops` takes
    `model.audio.features.short_crops` of every consecutive patch instead; `loop` fills short clips as
    `model.audio.features.fill_patch` does."""
    path = store.root / CACHE_DIR / _cache_name(backbone_digest, max_patches, layer, crops, loop)
    cached: dict[tuple[str, str], np.ndarray] = {}
    if path.exists():
        with np.load(path) as npz:
            offsets = npz["offsets"]
            cached = {(i, h): npz["embeddings"][offsets[n]:offsets[n + 1]]
                      for n, (i, h) in enumerate(zip(npz["ids"], npz["hashes"]))}
    todo = [t for t in tracks if (t.id, t.content_hash) not in cached]
    if todo:
        bar = Progress(len(todo), label="embeddings") if progress else None
        for track in todo:
            mel = store.load(track)["mel"]
            batch = short_crops(mel, crop_seed(track), loop) if crops else patches(mel, max_patches, loop)
            cached[(track.id, track.content_hash)] = np.concatenate(
                [embed(batch[i:i + _BATCH]) for i in range(0, len(batch), _BATCH)])
            if bar:
                bar.update(note=track.id)
        keys = sorted(cached)
        arrays = [cached[k] for k in keys]
        with atomic_write(path) as f:
            np.savez(f, ids=np.array([k[0] for k in keys]), hashes=np.array([k[1] for k in keys]),
                     offsets=np.cumsum([0] + [len(a) for a in arrays]), embeddings=np.concatenate(arrays))
    return [cached[(t.id, t.content_hash)] for t in tracks]
