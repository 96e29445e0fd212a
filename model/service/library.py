"""The service's state: a store, the classifier and the k-NN index over the store, built once.

`Library.analyse` is all a request does: features, one network pass, one index query, and fingerprint queries
of all of the upload (`Library.searched`): a library track anywhere in a long upload is found, and never picked.

An upload the fingerprints recognise as a library track (all of it, or an excerpt: `Analysis.match`) is
named, and its picks are searched in that track's genre; library tracks found inside a longer upload (a
medley, a mix: `Analysis.contains`) are listed with their times. Neither is ever picked, nor is a library
track shorter than `min_pick_s`: picks are songs, not snippets. `Library.similar` ("more like this" from a
library track) picks by the same rules.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.audio.decoding import Audio, resample
from model.audio.features import chromagram, excerpt_span, tempo
from model.index.ann import IndexMismatch, load_index
from model.index.build import fit_index, index_key, index_path
from model.index.explain import Reason, aspects, closeness, reasons, sample_rows
from model.index.fingerprint import FingerprintIndex, Match, fingerprint, query_mels, query_prints
from model.index.key import Key, estimate_key, estimate_keys
from model.index.knn import chroma_summary
from model.network.classifier import GenreClassifier
from model.network.embeddings import patch_embeddings
from model.network.weights import BACKBONE_FILE, file_digest, network_digest
from model.params import EXCERPT_S, HOP_LENGTH, MAX_PATCHES, N_CHROMA, SAMPLE_RATE
from model.stores.feature_store import Store, StoreError, Track

log = logging.getLogger("soundalike.library")

# The feature spaces each setting searches, in the order of their columns.
SPACES = {"chroma": ("chroma",), "embedding": ("embedding",), "mix": ("chroma", "embedding")}
FEATURE_SPACES = tuple(SPACES)
# A recognised library track is what the upload *is* only where its aligned fingerprints span at least
# this share of the upload's fingerprinted time, and the upload is not much longer than the track: a
# medley or a mix that holds the track somewhere *contains* it.
MIN_COVERAGE = 0.75
LONGER_BY = (1.1, 2.0)   # (factor, seconds): an upload longer than factor * track + seconds is not the track


@dataclass(frozen=True)
class Recommendation:
    track: Track
    distance: float     # k-NN distance in the standardised feature space
    similarity: float   # 1 / (1 + distance): 1 for identical features, towards 0 for distant ones
    percentile: float   # % of the library's other pickable tracks farther from the upload (model.index.explain)
    reasons: list[Reason]   # why it was picked, with the values behind each (model.index.explain)

    @property
    def why(self) -> list[str]:
        """The reasons in a few words each."""
        return [r.text for r in self.reasons]


@dataclass(frozen=True)
class Contained:
    """A library track found inside the upload, placed where its aligned fingerprints put it."""
    track: Track
    start_s: float      # in the upload, clipped to it
    end_s: float


@dataclass(frozen=True)
class Analysis:
    genre: str                              # the model's own guess (the most probable genre)
    probabilities: dict[str, float]         # every genre, most probable first
    match: Track | None                     # the library track the upload is (same audio, or a lossy,
                                            # re-sampled or trimmed copy: model.index.fingerprint)
    recommendations: list[Recommendation]   # never `match`, nor a track of `contains`, nor a library copy of
                                            # either, nor a track shorter than the library's min_pick_s
    duration_s: float
    truncated: bool                         # the file broke off: what decoded of it was analysed
    unsure_reason: str | None = None        # why the genre is unsure (GenreClassifier.unsure), or None
    excerpt: bool = False                   # the upload is a part of `match` (noticeably shorter)
    contains: list[Contained] = ()          # library tracks inside the upload, by start time (not `match`)
    picks_genre: str | None = None          # the genre the picks were searched in first (scope "genre")
    key: Key | None = None                  # the upload's estimated key (model.index.key)
    tempo_bpm: float | None = None          # the upload's tempo (model.audio.features.tempo), None where none is heard
    searched_s: list[tuple[float, float]] = ()   # the parts of the upload (s) searched for library tracks
                                                 # (`contains`), each alone: together, all of it


class Library:
    """Recommendations from `store` in the feature space `features` ("chroma", "embedding" or
    "mix"), searched in `scope` ("genre": the predicted genre's tracks first; "library": all)."""

    def __init__(self, store: Store, classifier: GenreClassifier, weights_dir: Path,
                 features: str = "chroma", scope: str = "genre", mix_weights: tuple[float, float] = (1.0, 1.0),
                 min_pick_s: float = 0.0) -> None:
        """`min_pick_s`: library tracks shorter than this (seconds) are never picks (the service's
        setting: model.service.settings, SOUNDALIKE_MIN_PICK_S)."""
        if features not in FEATURE_SPACES:
            raise ValueError(f"features must be one of {FEATURE_SPACES}, not {features!r}")
        self.store, self.classifier, self.features, self.scope = store, classifier, features, scope
        self.min_pick_s = min_pick_s
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
        # Stored genre probabilities are used only where the weights that made them are these.
        self._network = network_digest(weights_dir)
        others = sum(t.network not in ("", self._network) for t in self.tracks)
        if others:
            log.warning("%d tracks of %s were analysed with other network weights: their stored genre "
                        "probabilities are not used (run preprocess.py on the collection again)", others, store.root)
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
        self._aspects = aspects(self._spaces)
        self._pickable = np.array([t.duration_s >= min_pick_s for t in self.tracks])
        self._too_short = [int(r) for r in np.flatnonzero(~self._pickable)]
        self._keys = estimate_keys(self._chroma_means())
        # Tempos stored at preprocessing (0.0: no pulse heard); a store built before them names none.
        self.tempos_known = store.tempos_known
        self._tempos = [t.tempo_bpm or None if self.tempos_known else None for t in self.tracks]
        if not self.tempos_known:
            log.warning("the store at %s holds no tempos of this version: picks are served without tempo reasons "
                        "until preprocess.py is run on its collection again", store.root)
        self.warm_up()

    def _chroma_means(self) -> np.ndarray:
        """(tracks, 12) mean chromas: from the index's own rows where it searches chroma summaries (no store read)."""
        if "chroma" not in SPACES[self.features]:
            return self.store.chroma_summaries(self.tracks)[:, :N_CHROMA]
        columns = dict(self._spaces)["chroma"]
        i = SPACES[self.features].index("chroma")
        scaled = np.asarray(self.index.X_[:, columns], dtype=np.float64)
        return (scaled / self.scaler.factor_[i] * self.scaler.scale_[i] + self.scaler.mean_[i])[:, :N_CHROMA]

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
    def searched(n_samples: int) -> list[tuple[int, int]]:
        """The [start, stop) samples of an upload that are fingerprinted, each alone: its middle excerpt (what
        says whether the upload *is* a library track), then consecutive parts of up to EXCERPT_S tiling the
        rest of it outwards from there, so a library track anywhere in a long upload is found."""
        excerpt = excerpt_span(n_samples)
        part = int(EXCERPT_S * SAMPLE_RATE)
        before = [(max(0, stop - part), stop) for stop in range(excerpt[0], 0, -part)]
        after = [(start, min(n_samples, start + part)) for start in range(excerpt[1], n_samples, part)]
        return [excerpt] + before + after

    def _found(self, y: np.ndarray, spans: list[tuple[int, int]]) -> list[tuple[Match, int]]:
        """The library tracks the fingerprints find in the `spans` of the upload (16 kHz samples), each with
        the first sample of the span it was found in, span by span, best first."""
        found = []
        for span in spans:
            found += [(m, span[0]) for m in self.copies.matches(query_prints(y, span))]
        return found

    def _found_in_excerpt(self, y: np.ndarray, span: tuple[int, int]) -> tuple[list[tuple[Match, int]], float | None]:
        """`_found(y, [span])` for the upload's middle excerpt `span`, and its tempo (as preprocess.py estimates
        each library track's): both read the excerpt's one log-mel."""
        mels = query_mels(y, span)
        return [(m, span[0]) for m in self.copies.matches([fingerprint(mel) for mel in mels])], tempo(mels[0])

    def _copies(self, rows: list[int]) -> list[int]:
        """The rows, and every other library copy of their audio."""
        return list(dict.fromkeys(r for row in rows for r in [row, *self._by_hash[self.tracks[row].content_hash]]))

    def _is_whole(self, found: Match, duration_s: float) -> bool:
        """Whether the upload is the track `found` in it (all of it or an excerpt), not a longer whole that holds it."""
        factor, seconds = LONGER_BY
        return (found.coverage >= MIN_COVERAGE
                and duration_s <= factor * self.tracks[found.row].duration_s + seconds)

    def _placed(self, found: Match, span_start: int, duration_s: float) -> Contained:
        # The query's frames count from the start of the span it was found in; the library's from the track's start.
        start = span_start / SAMPLE_RATE - found.offset * HOP_LENGTH / SAMPLE_RATE
        track = self.tracks[found.row]
        end = min(duration_s, start + track.duration_s)
        return Contained(track, round(float(max(0.0, start)), 2), round(float(end), 2))

    def row(self, track_id: str) -> int | None:
        """The library row of the track `track_id`, or None."""
        return self._row_of.get(track_id)

    def similar(self, track_id: str, n: int) -> list[Recommendation]:
        """"More like this": the `n` library tracks nearest the library track `track_id`, by the picks' rules
        (its genre searched first, then the genres the classifier found next most likely for it; never
        a copy of the same audio, nor a track shorter than `min_pick_s`)."""
        row = self._row_of[track_id]
        track = self.tracks[row]
        probabilities = self.store.vectors([track], "probabilities")[0] if track.network == self._network else None
        order = [track.genre] + ([] if probabilities is None else
                                 [self.classifier.genres[i] for i in np.argsort(-probabilities, kind="stable")])
        x = self.index.X_[row].astype(np.float64)
        return self._recommend(x, list(dict.fromkeys(order)), self._by_hash[track.content_hash], self._keys[row],
                               self._tempos[row], n)

    def _recommend(self, query: np.ndarray, genre_order: list[str], left_out: list[int], key: Key | None,
                   bpm: float | None, k: int | None = None) -> list[Recommendation]:
        """The `k` picks (default: the index's k) for `query`, a row of the index's space, searched in
        `genre_order` (most likely first): never a row of `left_out` nor a track too short to pick, each
        with how much closer it is than the rest of the library and why it was picked (`key`, `bpm`: the query's)."""
        picks = self.index.query(query, genre_order, exclude=list(dict.fromkeys(left_out + self._too_short)), k=k)
        eligible = self._pickable.copy()
        eligible[left_out] = False
        percentiles, shares = closeness(query, self.index.X_, [p.index for p in picks],
                                        sample_rows(len(self.tracks), eligible), self._aspects)
        # With scope "library" a pick from another genre is no fall-back, so only "same genre" is said.
        ranked = genre_order if self.scope == "genre" else genre_order[:1]
        return [Recommendation(self.tracks[p.index], p.distance, 1.0 / (1.0 + p.distance), pct,
                               reasons(self.tracks[p.index].genre, ranked, share, self._keys[p.index], key,
                                       self._tempos[p.index], bpm))
                for p, pct, share in zip(picks, percentiles, shares)]

    def analyse(self, audio: Audio) -> Analysis:
        y = resample(audio.samples, audio.sample_rate)
        # The chromagram of the middle excerpt (for the key, and the search where it uses chroma), the tempo and
        # the fingerprints are computed on the other core, beside the network pass.
        chroma = self._chroma_pool.submit(chromagram, y)
        # The parts searched: the middle excerpt (its matches come first, with its tempo), then the rest in two
        # halves, so that a long upload's search takes both cores while the network's pass is done.
        spans = self.searched(len(y))
        excerpt = self._chroma_pool.submit(self._found_in_excerpt, y, spans[0])
        halves = [self._chroma_pool.submit(self._found, y, spans[1 + i::2]) for i in range(2)]
        probs, embedding = self.classifier.analyse(y)
        order = np.argsort(-probs, kind="stable")
        genres = [self.classifier.genres[i] for i in order]
        # Only the middle excerpt's matches can say what the upload is (their coverage is of it).
        excerpt_start = spans[0][0]   # `searched` puts the middle excerpt first
        found, bpm = excerpt.result()
        found += halves[0].result() + halves[1].result()
        whole = [f.row for f, start in found
                 if start == excerpt_start and self._is_whole(f, audio.duration_s)]
        same = self._copies(self._by_hash.get(audio.content_hash, [])[:1] + whole)
        inside: list[int] = []   # the rows of tracks inside the upload, and their library copies
        contains = []
        for f, start in found:
            if f.row not in same and f.row not in inside:   # a repeat of a listed track is not listed again
                contains.append(self._placed(f, start, audio.duration_s))
                inside += self._copies([f.row])
        match = self.tracks[same[0]] if same else None
        # A recognised track settles the genre the picks are searched in; the model's guess is still reported.
        order_for_picks = genres if match is None else [match.genre] + [g for g in genres if g != match.genre]
        summary = chroma_summary(chroma.result())
        query = self.scaler.transform(self._blocks(lambda: summary, lambda: embedding))[0]
        key = estimate_key(summary[:N_CHROMA])
        return Analysis(
            genre=genres[0],
            probabilities={g: float(probs[i]) for g, i in zip(genres, order)},
            match=match,
            recommendations=self._recommend(query, order_for_picks, same + inside, key, bpm),
            duration_s=audio.duration_s,
            truncated=audio.truncated,
            unsure_reason=self.classifier.unsure(probs, audio.duration_s),
            excerpt=match is not None and audio.duration_s < 0.9 * match.duration_s,
            contains=sorted(contains, key=lambda c: c.start_s),
            picks_genre=order_for_picks[0] if self.scope == "genre" else None,
            key=key,
            tempo_bpm=bpm,
            searched_s=[(round(float(a) / SAMPLE_RATE, 2), round(float(b) / SAMPLE_RATE, 2)) for a, b in spans])
