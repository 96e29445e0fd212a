"""MusiCNN embeddings of a store's tracks, computed from the stored log-mels and cached on disk.

The cache is keyed by the backbone's weights digest, the patch selection and each track's
content hash, so changed weights or tracks are recomputed, never silently reused."""
from __future__ import annotations

import numpy as np

from model.atomic import atomic_write
from model.features import patches
from model.progress import Progress
from model.store import Store, Track

CACHE_DIR = "embeddings"
_BATCH = 64


def _cache_name(backbone_digest: str, max_patches: int | None) -> str:
    return f"{backbone_digest}-{'all' if max_patches is None else f'max{max_patches}'}.npz"


def patch_embeddings(store: Store, tracks: list[Track], embed, backbone_digest: str,
                     max_patches: int | None, progress: bool = True) -> list[np.ndarray]:
    """Per-track arrays (n_patches, dim) of patch embeddings.

    `embed` maps a (n, frames, mels) batch to (n, dim) embeddings; `max_patches` is as in
    `model.features.patches` (None: every consecutive patch, as for training)."""
    path = store.root / CACHE_DIR / _cache_name(backbone_digest, max_patches)
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
            batch = patches(store.load(track)["mel"], max_patches)
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
