"""MusiCNN embeddings of labelled clips (`model.corpus`), per patch, computed once and cached on disk.

Patch selections per clip, each as `model.audio.features` cuts them, short clips looped as the
service loops them:
- "served": at most MAX_PATCHES patches spread over the clip, what a request looks at: held-out clips
  are predicted from these, and the head is trained on them (a 30 s clip's 5 patches of 3 s),
- "crops": each of those patches cut to a random 2-3 s (`short_crops`, seeded by the clip's name and
  content): what a 2-3 s upload looks like, to train the head on,
- "eq": the served patches of the clip as through another recording chain (`model.audio.augment`,
  seeded likewise): asked for only where the head is trained with that augmentation.

The cache file is named by the backbone's weights digest and the selection, and each entry by the
clip's key and content hash: changed weights or audio are recomputed, never silently reused."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from model.atomic import atomic_write
from model.audio.augment import recording_chain
from model.audio.decoding import decode
from model.audio.features import log_mel, patches, short_crops
from model.corpus import Clip
from model.params import MAX_PATCHES
from model.progress import Progress

SELECTIONS = ("served", "crops")   # what every head is trained on
AUGMENTED = ("eq",)
_BATCH = 64


def _cache_path(cache_dir: Path, digest: str, selection: str, layer: str = "embedding") -> Path:
    return Path(cache_dir) / f"{digest}-{layer}-{selection}-loop.npz"


def _read(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    if not path.exists():
        return {}
    with np.load(path) as npz:
        offsets, rows = npz["offsets"], npz["embeddings"]
        return {k: (h, rows[offsets[n]:offsets[n + 1]]) for n, (k, h) in enumerate(zip(npz["keys"], npz["hashes"]))}


def _write(path: Path, entries: dict[str, tuple[str, np.ndarray]]) -> None:
    keys = sorted(entries)
    arrays = [entries[k][1] for k in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        np.savez(f, keys=np.array(keys), hashes=np.array([entries[k][0] for k in keys]),
                 offsets=np.cumsum([0] + [len(a) for a in arrays]), embeddings=np.concatenate(arrays))


def _patch_sets(samples: np.ndarray, seed: int, selections: set[str]) -> dict[str, np.ndarray]:
    """The patches of `selections` of a clip's 16 kHz samples (`seed`: its crops' and chain's draws)."""
    mel = log_mel(samples)
    make = {"served": lambda: patches(mel, MAX_PATCHES, loop=True),
            "crops": lambda: short_crops(mel, seed, loop=True, max_patches=MAX_PATCHES),
            "eq": lambda: patches(recording_chain(mel, np.random.default_rng([seed, 1])), MAX_PATCHES, loop=True)}
    return {name: make[name]() for name in selections}


def _hash(entry: tuple[str, np.ndarray]) -> str:
    return entry[0].split("@")[0]   # entries are (f"{content hash}@{file size}:{mtime}", outputs)


def _stamp(entry: tuple[str, np.ndarray]) -> str:
    return entry[0].split("@")[1]


def clip_embeddings(clips: list[Clip], embedders: dict[str, tuple[str, object]], cache_dir: Path,
                    progress: bool = True, layer: str = "embedding", selections: tuple[str, ...] = SELECTIONS
                    ) -> dict[tuple[str, str], list[np.ndarray]]:
    """{(backbone, selection): per clip (n_patches, dim) outputs of a layer}. `embedders` maps a backbone's
    name to (its weights digest, a function from a (n, frames, mels) batch to (n, dim) outputs of
    `layer`, which names the cache: the 200-d embedding, or the back-end's `pooled` input).
    A clip's content hash is only known once it is decoded, so a cached entry is trusted by its key
    while the file's size and modification time are those recorded; a clip whose file changed them is
    decoded again, and only computed again if its content did change (a copied corpus keeps its cache)."""
    stamp = {c.key: f"{c.path.stat().st_size}:{c.path.stat().st_mtime_ns}" for c in clips}
    cached = {(b, s): _read(_cache_path(cache_dir, digest, s, layer)) for b, (digest, _) in embedders.items()
              for s in selections}
    todo = [c for c in clips if any(c.key not in entries or _stamp(entries[c.key]) != stamp[c.key]
                                    for entries in cached.values())]
    if todo:
        bar = Progress(len(todo), label="clip embeddings") if progress else None
        for n, clip in enumerate(todo):
            audio = decode(clip.path)
            stale = [(backbone, selection) for (backbone, selection), entries in cached.items()
                     if clip.key not in entries or _hash(entries[clip.key]) != audio.content_hash]
            seed = zlib.crc32(f"{clip.key}:{audio.content_hash}".encode())
            sets = _patch_sets(audio.samples, seed, {selection for _, selection in stale}) if stale else {}
            for (backbone, selection), entries in cached.items():
                if (backbone, selection) in stale:
                    embed, batch = embedders[backbone][1], sets[selection]
                    rows = np.concatenate([embed(batch[i:i + _BATCH]) for i in range(0, len(batch), _BATCH)])
                else:
                    rows = entries[clip.key][1]
                entries[clip.key] = (f"{audio.content_hash}@{stamp[clip.key]}", rows.astype(np.float32))
            if bar:
                bar.update(note=clip.key)
            if (n + 1) % 200 == 0 or n + 1 == len(todo):   # long runs keep what they computed
                for (backbone, selection), entries in cached.items():
                    _write(_cache_path(cache_dir, embedders[backbone][0], selection, layer), entries)
    return {k: [entries[c.key][1] for c in clips] for k, entries in cached.items()}
