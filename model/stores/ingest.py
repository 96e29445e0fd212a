"""Building a feature store from a music collection, on every core (or a Ray cluster), resumable at any point.

Each track is decoded once; its chromagram summary, fingerprint, tags, and the network's genre
probabilities and mean embedding are stored (its full log-mel too, where the store keeps them). Its genre
comes from its folder, its genre tag or the classifier (`place`). A re-run is a rescan: what is new is
stored, what changed (size or modification time) is analysed again, what is gone is removed, and the rest
is left as it is. Where the network's weights or the feature parameters changed, only the parts of each row
that depend on them are computed again (`reanalyse`), and the summary says so.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.audio.decoding import AudioError, decode
from model.audio.features import analysis_spans, chromagram, excerpt_span, log_mel, tempo, track_features
from model.audio.tags import read_tags
from model.index.fingerprint import fingerprint
from model.index.knn import chroma_summary
from model.network.classifier import GenreClassifier
from model.network.weights import network_digest
from model.params import GENRES, HOP_LENGTH
from model.progress import Progress
from model.stores import local_engine
from model.stores.collection import Candidate, discover, genre_root, walk
from model.stores.engine import Job, Result, Run
from model.stores.feature_store import FEATURES, MANIFEST, Entry, Store, Track
from model.stores.genre_names import genre_of
from model.stores.gtzan_names import GTZAN_ID

ROUTE_WORDS = {"folder": "by folder", "tag": "by genre tag", "model": "by the classifier"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class Summary:
    stored: int = 0       # tracks new to the store
    updated: int = 0      # tracks analysed again (`why_updated` says why)
    removed: int = 0      # tracks whose file is gone (or no longer decodes)
    already: int = 0      # tracks left as they were
    skipped: list[tuple[str, str]] = field(default_factory=list)       # (path, reason): audio files not stored
    passed_over: list[tuple[str, str]] = field(default_factory=list)   # (path, reason): hidden files, links, FIFOs...
    truncated: list[str] = field(default_factory=list)                 # stored on what decodes of them
    routes: Counter = field(default_factory=Counter)                   # how the analysed tracks' genres were chosen
    why_updated: Counter = field(default_factory=Counter)   # analysed again whole, by why
    reanalysed: Counter = field(default_factory=Counter)    # analysed again in part: (why, what) -> tracks
    moved: int = 0              # of those, tracks the classifier placed that its new weights place elsewhere
    other_files: int = 0        # files that are not audio by their extension (covers, notes, playlists)
    links_followed: int = 0     # links out of the collection, followed once
    seconds: float = 0.0

    def report(self) -> str:
        rate = (self.stored + self.updated) / self.seconds if self.seconds > 0 else 0.0
        lines = [f"stored {_plural(self.stored, 'track')}, updated {self.updated}, removed {self.removed}, "
                 f"{self.already} already stored, {len(self.skipped)} skipped, in {self.seconds:.1f} s "
                 f"({rate:.1f} tracks/s)"]
        if self.routes:
            lines.append("genres of the tracks analysed: " + ", ".join(
                f"{self.routes[r]} {ROUTE_WORDS[r]}" for r in ROUTE_WORDS if self.routes[r]))
        if self.why_updated:
            lines.append("updated: " + ", ".join(f"{n} {why}" for why, n in self.why_updated.most_common()))
        lines += [f"re-analysed {_plural(n, 'track')} {why}: {what} only, the rest of their rows kept"
                  for (why, what), n in self.reanalysed.most_common()]
        if self.moved:
            lines.append(f"  {_plural(self.moved, 'track')} placed by the classifier moved genre with its new weights")
        if self.links_followed:
            lines.append(f"followed {_plural(self.links_followed, 'link')} out of the collection (once each)")
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped]
        lines += [f"  truncated {path}: stored on what decodes of it" for path in self.truncated]
        lines += [f"  passed over {path}: {reason}" for path, reason in self.passed_over]
        return "\n".join(lines)


_classifiers: dict[Path, GenreClassifier] = {}   # per process: loaded on its first track


def _classifier(weights_dir: Path) -> GenreClassifier:
    if weights_dir not in _classifiers:
        # One thread: a worker is one of one per core.
        _classifiers[weights_dir] = GenreClassifier.load(weights_dir, threads=1)
    return _classifiers[weights_dir]


def place(folder_genre: str | None, tag: str, probabilities: np.ndarray, genres: str) -> tuple[str, str]:
    """(genre, route) of a track under the route `genres`: its folder's genre (`folders`, or `auto` where a
    folder is named like a genre), else its genre tag where it maps to one of the ten (`auto`, `tags`),
    else the classifier's most probable genre."""
    if folder_genre is not None and genres in ("folders", "auto"):
        return folder_genre, "folder"
    if genres in ("auto", "tags") and genre_of(tag):
        return genre_of(tag), "tag"
    return GENRES[int(np.argmax(probabilities))], "model"


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"file:{digest.hexdigest()}"


def process(job: Job, candidate: Candidate) -> tuple[Entry, bool]:
    """Decode one file once and compute its store row (and, where the store keeps them, write its full
    features file); raises AudioError for bad audio. The one per-track function of every engine.
    Returns the row and whether the file broke off (what decoded of it is stored).

    Where the store keeps no log-mels, only what an upload's analysis reads is decoded and analysed
    (`analysis_spans`: the network's patches and the middle excerpt; all of a clip of about 30 s): a
    4-minute song costs about a fifth. Its fingerprint is then of the middle excerpt, which is what an
    upload's fingerprint query is made of (a whole copy matches it), and its content hash, the file's
    bytes' (the decoded samples' hash needs all of them). The tempo is estimated from the log-mel of the middle
    excerpt computed anyway (about 1 ms a track), as an upload's is."""
    if candidate.redo is not None:
        return reanalyse(job, candidate)
    status = candidate.path.stat()
    classifier = _classifier(job.weights_dir)
    if job.mel_root is None:
        audio = decode(candidate.path, spans=analysis_spans)
        excerpt = audio.samples[slice(*excerpt_span(len(audio.samples)))]
        mel = log_mel(excerpt)
        chroma, prints, excerpt_mel = chromagram(audio.samples), fingerprint(mel), mel
        probabilities, embedding = classifier.analyse(audio.samples)
        content_hash = audio.content_hash or _file_hash(candidate.path)
    else:
        audio = decode(candidate.path)
        features = track_features(audio.samples)
        # The patches are cut from the log-mel computed anyway, as the embedding space's are from stored ones.
        probabilities, embedding = classifier.analyse_mel(features["mel"])
        chroma, prints, content_hash = features["chroma"], fingerprint(features["mel"]), audio.content_hash
        start, stop = excerpt_span(len(audio.samples))
        excerpt_mel = features["mel"][start // HOP_LENGTH:stop // HOP_LENGTH]
    tags = read_tags(candidate.path)
    genre, route = place(candidate.genre, tags.genre, probabilities, job.genres)
    if job.mel_root is not None:
        Store.write_features_at(job.mel_root, genre, candidate.id, **features)
    track = Track(id=candidate.id, genre=genre, source=str(candidate.path), duration_s=round(audio.duration_s, 3),
                  content_hash=content_hash, path=candidate.relative, title=tags.title, artist=tags.artist,
                  album=tags.album, track_no=tags.track_no, year=tags.year, route=route, size=status.st_size,
                  mtime_ns=status.st_mtime_ns, network=job.network, tempo_bpm=tempo(excerpt_mel) or 0.0,
                  analysis=job.analysis)
    return Entry(track, chroma_summary(chroma), prints, probabilities.astype(np.float32),
                 embedding.astype(np.float32)), audio.truncated


def reanalyse(job: Job, candidate: Candidate) -> tuple[Entry, bool]:
    """A stored track's row with the parts `candidate.redo` computed again ("chroma", "fingerprint",
    "network": new parameters or weights) and the others as `candidate.previous` holds them; its file is
    unchanged. A track the classifier placed goes where its new probabilities place it.

    A compact store's track is decoded where an analysis reads it (`analysis_spans`); where the store keeps
    log-mels, the network and the fingerprint are computed from its stored log-mel, and only a new chroma
    decodes it (its middle excerpt)."""
    previous, redo = candidate.previous, candidate.redo
    old = previous.track
    chroma, prints = previous.chroma_summary, previous.fingerprint
    probabilities, embedding = previous.probabilities, previous.embedding
    truncated = False
    if job.mel_root is None:
        audio = decode(candidate.path, spans=analysis_spans)
        y, truncated = audio.samples, audio.truncated
        if "chroma" in redo:
            chroma = chroma_summary(chromagram(y))
        if "fingerprint" in redo:
            prints = fingerprint(log_mel(y[slice(*excerpt_span(len(y)))]))
        if "network" in redo:
            probabilities, embedding = _classifier(job.weights_dir).analyse(y)
    else:
        try:
            with np.load(Path(job.mel_root) / old.genre / FEATURES / f"{old.id}.npz") as npz:
                features = {name: npz[name] for name in npz.files}
        except (OSError, ValueError):   # its features file is gone or damaged: analysed whole again
            return process(job, dataclasses.replace(candidate, redo=None, previous=None))
        if "chroma" in redo:
            audio = decode(candidate.path, spans=lambda n: [excerpt_span(n)])
            features["chroma"], truncated = chromagram(audio.samples), audio.truncated
            chroma = chroma_summary(features["chroma"])
        if "fingerprint" in redo:
            prints = fingerprint(features["mel"])
        if "network" in redo:
            probabilities, embedding = _classifier(job.weights_dir).analyse_mel(features["mel"])
    genre = old.genre
    if "network" in redo and old.route == "model":
        genre = place(None, "", probabilities, "model")[0]
    if job.mel_root is not None and (genre != old.genre or "chroma" in redo):
        Store.write_features_at(job.mel_root, genre, old.id, **features)
    track = dataclasses.replace(old, genre=genre, network=job.network, analysis=job.analysis, written_ns=0)
    return Entry(track, chroma, prints, np.asarray(probabilities, np.float32),
                 np.asarray(embedding, np.float32)), truncated


def attempt(job: Job, candidate: Candidate) -> Result:
    """`process`, with what makes a file unusable returned as the reason it is skipped."""
    try:
        return process(job, candidate)
    except AudioError as error:
        return str(error)
    except PermissionError:
        return "cannot be read (permission denied)"
    except FileNotFoundError:
        return "gone while the collection was read"
    except Exception as error:  # a worker must report, never die: the run goes on with the other files
        return f"failed: {type(error).__name__}: {error}"


ENGINES = ("local", "ray")


def engine_run(engine: str) -> Run:
    """The engine named `engine` (one of ENGINES)."""
    if engine == "ray":
        from model.stores import ray_engine   # Ray is an optional extra: imported only for this engine
        return ray_engine.run
    return local_engine.run


def looks_like_gtzan(candidates: list[Candidate]) -> bool:
    """Every file is `<genre>/<genre>.NNNNN.ext`, as GTZAN lays its clips out."""
    return bool(candidates) and all(
        GTZAN_ID.fullmatch(Path(c.relative).stem) and c.relative.count("/") == 1
        and c.relative.split("/")[0] == Path(c.relative).stem.split(".")[0] for c in candidates)


# What each part of a row is, in a summary's words.
PART_WORDS = {"network": "the network's embedding and genre probabilities", "chroma": "the chroma summary",
              "fingerprint": "the fingerprint"}


def _stale(track: Track, candidate: Candidate, job: Job, store: Store) -> tuple[str, frozenset[str] | None] | None:
    """Why a stored track must be analysed again, and the parts of its row to compute (None: all of it); or
    None where it is current."""
    if track.size is None:
        return "stored before tags and embeddings were (analysed once more)", None
    status = candidate.path.stat()
    if (status.st_size, status.st_mtime_ns) != (track.size, track.mtime_ns):
        return "changed files", None
    if track.tempo_bpm is None or not store.tempos_known:
        return "for their tempo", None
    parts = store.stale_parts(track)
    if "mel" in parts:   # the log-mel everything is computed from
        return "for new log-mel parameters", None
    causes = []
    if track.network != job.network:
        parts.add("network")
        same_backbone = track.network.split("-")[0] == job.network.split("-")[0]
        causes.append("a new genre head" if same_backbone else "new network weights")
    if parts - {"network"}:
        causes.append(f"new {' and '.join(sorted(parts - {'network'}))} parameters")
    return (f"for {' and '.join(causes)}", frozenset(parts)) if parts else None


def _with_rows(store: Store, partial: list[tuple[Candidate, Track, frozenset[str]]]) -> list[Candidate]:
    """The candidates to analyse again in part, each with its stored row (read in one pass over the store)."""
    if not partial:
        return []
    tracks = [old for _, old, _ in partial]
    summaries, prints = store.chroma_summaries(tracks), store.fingerprints(tracks)
    probabilities, embeddings = store.vectors(tracks, "probabilities"), store.vectors(tracks, "embedding")
    return [dataclasses.replace(c, redo=redo, previous=Entry(old, summary, print_, p, e))
            for (c, old, redo), summary, print_, p, e in zip(partial, summaries, prints, probabilities, embeddings)]


def ingest(source: Path, data_dir: Path, workers: int | None = None, progress: bool = True,
           log_mel: bool | None = None, engine: str = "local", address: str | None = None,
           genres: str = "auto", weights_dir: Path | None = None) -> Summary:
    """Store every track under `source` that `data_dir` does not hold yet, analyse again those that
    changed, and remove those whose file is gone.

    `log_mel`: keep each track's full features (default: as the store was built; a new store keeps them
    for a GTZAN collection, which trains the network, and not for any other collection).
    `genres`: how tracks are placed in genres (model.stores.collection.GENRE_ROUTES).
    `engine`: "local" (processes on this machine) or "ray" (Ray Data tasks, on the Ray cluster at
    `address`, else on a local Ray started here); `workers`: processes, or concurrent Ray tasks.
    `weights_dir`: the classifier's (default: the service's, $SOUNDALIKE_WEIGHTS_DIR).
    Raises model.stores.engine.EngineError where the engine cannot start."""
    from model.service.settings import from_env   # the service's default weights; reads the environment

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    start = time.perf_counter()
    source = Path(source).resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder")
    weights_dir = Path(weights_dir or from_env().weights_dir)
    GenreClassifier.load(weights_dir, threads=1)   # the weights' own error now, rather than one per track
    walked = walk(genre_root(source))
    if log_mel is None and not (Path(data_dir) / MANIFEST).exists():
        log_mel = looks_like_gtzan(discover(source, genres, walked=walked)[0])
    store = Store(data_dir, create=True, log_mel=log_mel, rescan=True)
    job = Job(store.root if store.keeps_mel else None, genres, weights_dir, network_digest(weights_dir),
              store.analysis_key)
    with store.writer():
        summary = Summary(passed_over=[(str(p), why) for p, why in walked.passed_over],
                          other_files=walked.other_files, links_followed=walked.links_followed)
        by_source = {t.source: t for t in store.tracks()}
        candidates, passed = discover(source, genres, {s: t.id for s, t in by_source.items()}, walked)
        summary.skipped = [(str(p), why) for p, why in passed[len(walked.passed_over):]]
        todo, updating, partial = [], {}, []
        for c in candidates:
            old = by_source.get(str(c.path))
            stale = None if old is None else _stale(old, c, job, store)
            if old is not None and stale is None:
                summary.already += 1
                continue
            if stale is not None and stale[1] is not None:
                partial.append((c, old, stale[1]))
            else:
                todo.append(c)
            if old is not None:
                updating[c.id] = (old, stale)
        todo += _with_rows(store, partial)
        found = {str(c.path) for c in candidates}
        root = genre_root(source)
        gone = [t for s, t in by_source.items() if s not in found and Path(s).is_relative_to(root)]
        folder_genres = {c.genre for c in todo if c.genre is not None}
        for genre in sorted(set(store.genres) | folder_genres | (set(GENRES) if any(c.genre is None for c in todo)
                                                                 else set())):
            store.prepare(genre)
        bar = Progress(len(todo), label="preprocess") if progress and todo else None

        def record(candidate: Candidate, result: Result) -> None:
            old, (why, redo) = updating.get(candidate.id, (None, (None, None)))
            if isinstance(result, tuple):
                entry, truncated = result
                store.add(entry)
                if old is None:
                    summary.stored += 1
                else:
                    summary.updated += 1
                if redo is not None:
                    summary.reanalysed[why, " and ".join(PART_WORDS[p] for p in PART_WORDS if p in redo)] += 1
                    summary.moved += entry.track.genre != old.genre
                else:
                    summary.routes[entry.track.route] += 1
                    if old is not None:
                        summary.why_updated[why] += 1
                if truncated:
                    summary.truncated.append(str(candidate.path))
            else:
                summary.skipped.append((str(candidate.path), result))
                if old is not None:   # it no longer decodes: what was stored of it is not this file
                    store.remove(old)
                    summary.removed += 1
            if bar:
                bar.update(note=candidate.id)

        if todo:
            engine_run(engine)(attempt, job, todo, record, workers, address)
        for track in gone:
            store.remove(track)
            summary.removed += 1
    if not store.of_current_params:
        # Once every row is written, and none is of other parameters (another collection's may still be).
        with store.writer():
            store.record_params()
    # Once the rows are written (the writer flushes them as it ends): every row's tempo is now this recipe's.
    if not store.tempos_known and all(t.tempo_bpm is not None for t in store.tracks()):
        store.record_tempos()
    summary.seconds = time.perf_counter() - start
    return summary
