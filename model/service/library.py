"""The service's state: a store, the classifier and the k-NN index over the store, built once.

`Library.analyse` is all a request does: features, one network pass, one index query, one fingerprint query.
It reads only `Library.spans` of an upload, so a long one need be decoded only there (model.audio.decoding).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.audio.decoding import Audio, resample
from model.audio.features import analysis_spans, chromagram
from model.index.ann import IndexMismatch, load_index
from model.index.build import fit_index, index_key, index_path
from model.index.explain import reasons
from model.index.fingerprint import FingerprintIndex, query_prints
from model.index.knn import chroma_summary
from model.network.classifier import GenreClassifier
from model.network.embeddings import patch_embeddings
from model.network.weights import BACKBONE_FILE, file_digest
from model.params import MAX_PATCHES
from model.stores.feature_store import Store, StoreError, Track

log = logging.getLogger("soundalike.library")

# The feature spaces each setting searches, in the order of their columns.
SPACES = {"chroma": ("chroma",), "embedding": ("embedding",), "mix": ("chroma", "embedding")}
FEATURE_SPACES = tuple(SPACES)


@dataclass(frozen=True)
class Recommendation:
    track: Track
    distance: float     # k-NN distance in the standardised feature space
    similarity: float   # 1 / (1 + distance): 1 for identical features, towards 0 for distant ones
    why: list[str]      # a few words on why it was picked (model.index.explain)


@dataclass(frozen=True)
class Analysis:
    genre: str
    probabilities: dict[str, float]         # every genre, most probable first
    match: Track | None                     # the library track the upload is a copy of (same audio, or a
                                            # lossy, re-sampled or trimmed copy: model.index.fingerprint)
    recommendations: list[Recommendation]   # never `match`, nor another library copy of the same audio
    duration_s: float
    truncated: bool                         # the file broke off: what decoded of it was analysed


class Library:
    """Recommendations from `store` in the feature space `features` ("chroma", "embedding" or
    "mix"), searched in `scope` ("genre": the predicted genre's tracks first; "library": all)."""

    def __init__(self, store: Store, classifier: GenreClassifier, weights_dir: Path,
                 features: str = "chroma", scope: str = "genre", mix_weights: tuple[float, float] = (1.0, 1.0)) -> None:
        if features not in FEATURE_SPACES:
            raise ValueError(f"features must be one of {FEATURE_SPACES}, not {features!r}")
        self.store, self.classifier, self.features, self.scope = store, classifier, features, scope
        self.tracks = store.tracks()
        if not self.tracks:
            raise StoreError(f"the store at {store.root} holds no tracks: build it with preprocess.py")
        # A request's chromagram and fingerprint query are computed beside its network pass,
        # on the other core: ~40 ms less per request on 2 cores. Enough threads for the analyses the service admits at once.
        self._chroma_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="chroma")
        # A collection can hold one recording twice under two ids (GTZAN has exact repeats).
        self._by_hash: dict[str, list[int]] = {}
        for row, track in enumerate(self.tracks):
            self._by_hash.setdefault(track.content_hash, []).append(row)
        self._row_of = {track.id: row for row, track in enumerate(self.tracks)}
        # Each track's chroma summary and fingerprint are columns of the store's rows: no features file is read.
        self.copies = FingerprintIndex().fit(store.fingerprints(self.tracks))
        # The index saved beside the store (python -m model.index.build) if it was built for these tracks and settings.
        try:
            self.scaler, self.index = load_index(index_path(store.root, features, scope),
                                                 index_key(self.tracks, features, scope, mix_weights))
        except IndexMismatch as error:
            log.info("%s: building the index in memory", error)
            blocks = self._blocks(lambda: store.chroma_summaries(self.tracks), lambda: self._embeddings(Path(weights_dir)))
            self.scaler, self.index = fit_index(blocks, [t.genre for t in self.tracks], scope,
                                                mix_weights if features == "mix" else None)
        edges = np.cumsum([0] + [np.shape(m)[0] for m in self.scaler.mean_])
        self._spaces = [(name, slice(a, b)) for name, a, b in zip(SPACES[features], edges[:-1], edges[1:])]
        self.warm_up()

    def _embeddings(self, weights_dir: Path) -> np.ndarray:
        # Stored by preprocess.py with each track (the mean over the patches `GenreClassifier.analyse` looks
        # at in a request), where every row holds one computed with these weights' backbone.
        backbone = file_digest(weights_dir / BACKBONE_FILE)
        stored = self.store.vectors(self.tracks, "embedding")
        if all(e is not None and t.network.split("-")[0] == backbone for e, t in zip(stored, self.tracks)):
            return np.array(stored)
        if not self.store.keeps_mel:
            raise StoreError(f"the store at {self.store.root} holds no embedding of these weights for some tracks, "
                             "and no log-mels to compute them from: re-run preprocess.py on the collection (it "
                             "analyses again what it must)")
        per_track = patch_embeddings(self.store, self.tracks, lambda batch: self.classifier.analyse_patches(batch)[1],
                                     file_digest(weights_dir / BACKBONE_FILE), MAX_PATCHES,
                                     loop=self.classifier.head_input.loop_short)
        return np.array([e.mean(axis=0) for e in per_track])

    def _blocks(self, chroma, embedding) -> list[np.ndarray]:
        """The feature spaces in use, each computed (by calling it) only when needed."""
        compute = {"chroma": chroma, "embedding": embedding}
        return [compute[name]() for name in SPACES[self.features]]

    def warm_up(self) -> None:
        """Run the whole request path once, on 30 s of noise at a rate that needs resampling: the
        first calls of librosa and of the network at its largest batch (MAX_PATCHES) are the slow ones."""
        noise = np.random.default_rng(0).uniform(-0.5, 0.5, 30 * 22050).astype(np.float32)
        self.analyse(Audio(noise, 22050, content_hash=""))

    @staticmethod
    def spans(n_samples: int) -> list[tuple[int, int]]:
        """The [start, stop) 16 kHz samples of an upload of `n_samples` that `analyse` reads: the network's
        patches and the middle excerpt (its chromagram and fingerprints)."""
        return analysis_spans(n_samples)

    def _copies_of(self, y: np.ndarray) -> list[int]:
        """Library rows the upload (16 kHz samples) is a copy of, best first: by fingerprint, then
        every other library copy of those tracks' audio."""
        rows = self.copies.query(query_prints(y))
        return list(dict.fromkeys(r for row in rows for r in [row, *self._by_hash[self.tracks[row].content_hash]]))

    def row(self, track_id: str) -> int | None:
        """The library row of the track `track_id`, or None."""
        return self._row_of.get(track_id)

    def similar(self, track_id: str, n: int) -> list[Recommendation]:
        """"More like this": the `n` library tracks nearest the library track `track_id`, by the picks' rules
        (its genre searched first, then the genres the classifier found next most likely for it; never
        a copy of the same audio)."""
        row = self._row_of[track_id]
        track = self.tracks[row]
        probabilities = self.store.vectors([track], "probabilities")[0]
        order = [track.genre] + ([] if probabilities is None else
                                 [self.classifier.genres[i] for i in np.argsort(-probabilities, kind="stable")])
        genres = list(dict.fromkeys(order))
        same = self._by_hash[track.content_hash]
        x = self.index.X_[row].astype(np.float64)
        picks = self.index.query(x, genres, exclude=same, k=n)
        why = reasons(x, self.index.X_, self._spaces, [p.index for p in picks],
                      [self.tracks[p.index].genre for p in picks], genres if self.scope == "genre" else genres[:1],
                      exclude=same)
        return [Recommendation(self.tracks[p.index], p.distance, 1.0 / (1.0 + p.distance), w)
                for p, w in zip(picks, why)]

    def analyse(self, audio: Audio) -> Analysis:
        y = resample(audio.samples, audio.sample_rate)
        # The chromagram and the fingerprint (both of the middle excerpt) are computed on another core,
        # beside the network pass.
        chroma = self._chroma_pool.submit(chromagram, y) if self.features != "embedding" else None
        copies = self._chroma_pool.submit(self._copies_of, y)
        probs, embedding = self.classifier.analyse(y)
        order = np.argsort(-probs, kind="stable")
        genres = [self.classifier.genres[i] for i in order]
        same = list(dict.fromkeys(self._by_hash.get(audio.content_hash, []) + copies.result()))
        query = self.scaler.transform(self._blocks(lambda: chroma_summary(chroma.result()), lambda: embedding))
        picks = self.index.query(query[0], genres, exclude=same)
        # With scope "library" a pick from another genre is no fall-back, so only "same genre" is said.
        why = reasons(query[0], self.index.X_, self._spaces, [p.index for p in picks],
                      [self.tracks[p.index].genre for p in picks], genres if self.scope == "genre" else genres[:1],
                      exclude=same)
        return Analysis(
            genre=genres[0],
            probabilities={g: float(probs[i]) for g, i in zip(genres, order)},
            match=self.tracks[same[0]] if same else None,
            recommendations=[Recommendation(self.tracks[p.index], p.distance, 1.0 / (1.0 + p.distance), w)
                             for p, w in zip(picks, why)],
            duration_s=audio.duration_s,
            truncated=audio.truncated)
