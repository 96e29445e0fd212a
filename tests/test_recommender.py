"""The recommender: shift-invariant chroma summaries, k-NN per genre with fall-back, self-exclusion."""
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import write_audio
from model.audio.decoding import decode
from model.audio.features import chromagram
from model.index.knn import GenreKnn, SpaceScaler, chroma_summary
from model.network.classifier import GenreClassifier
from model.params import GENRES, SAMPLE_RATE
from model.service.library import Library
from model.service.settings import from_env
from model.stores.demo_library import build, is_demo, synthesise, write_clips
from model.stores.feature_store import Store
from model.stores.ingest import ingest

WEIGHTS = from_env().weights_dir


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """Two 8 s synthesised clips per genre, indexed."""
    data = tmp_path_factory.mktemp("store")
    build(data, per_genre=2, seconds=8.0, workers=1)
    return Store(data)


@pytest.fixture(scope="module")
def classifier() -> GenreClassifier:
    return GenreClassifier.load(WEIGHTS)


def test_chroma_summary_ignores_where_in_time_frames_are():
    chroma = np.random.default_rng(0).random((12, 400)).astype(np.float32)
    rolled = np.roll(chroma, 137, axis=1)
    summary = chroma_summary(chroma)
    assert summary.shape == (36,)
    assert np.allclose(summary, chroma_summary(rolled), atol=0.01)
    # Frame-by-frame comparison, which the summary replaces, sees two different songs.
    assert np.abs(chroma - rolled).mean() > 0.2


def test_chroma_summary_rejects_a_wrong_shape():
    with pytest.raises(ValueError):
        chroma_summary(np.zeros((13, 50)))


def test_a_later_excerpt_of_a_library_track_finds_that_track():
    # Library: one 20 s clip per genre; the query starts 7 s into one of them (other samples, other hash).
    clips = {g: synthesise(g, 0, seconds=20.0) for g in GENRES}
    summaries = np.array([chroma_summary(chromagram(y)) for y in clips.values()])
    scaler = SpaceScaler().fit([summaries])
    index = GenreKnn(k=1, scope="library").fit(scaler.transform([summaries]), list(GENRES))
    for i, genre in enumerate(GENRES):
        excerpt = clips[genre][7 * SAMPLE_RATE:]
        query = scaler.transform([chroma_summary(chromagram(excerpt))])[0]
        assert index.query(query)[0].index == i, genre


def _points(genres):
    return np.arange(len(genres), dtype=float)[:, None] * [1.0, 0.0]


def test_genre_scope_searches_only_the_most_probable_genre_when_it_holds_k():
    genres = ["rock"] * 4 + ["pop"] * 4
    index = GenreKnn(k=3).fit(_points(genres), genres)
    picks = index.query(np.array([4.0, 0.0]), ["rock", "pop"])   # pop's first point is nearer
    assert [p.index for p in picks] == [3, 2, 1]
    assert [p.distance for p in picks] == [1.0, 2.0, 3.0]


def test_genre_scope_falls_back_to_the_next_most_probable_genres():
    genres = ["jazz", "rock", "rock", "pop", "pop", "pop"]
    index = GenreKnn(k=3).fit(_points(genres), genres)
    picks = index.query(np.array([0.0, 0.0]), ["jazz", "rock", "pop"])
    assert [p.index for p in picks] == [0, 1, 2]
    picks = index.query(np.array([0.0, 0.0]), ["jazz", "pop", "rock"])
    assert [p.index for p in picks] == [0, 3, 4]


def test_excluded_rows_are_never_picked_and_are_made_up_from_the_next_genre():
    genres = ["rock"] * 3 + ["pop"] * 3
    index = GenreKnn(k=3).fit(_points(genres), genres)
    picks = index.query(np.array([0.0, 0.0]), ["rock", "pop"], exclude={0})
    assert [p.index for p in picks] == [1, 2, 3]


def test_library_genres_the_classifier_does_not_rank_come_last():
    genres = ["unsorted", "unsorted", "rock"]
    index = GenreKnn(k=3).fit(_points(genres), genres)
    assert [p.index for p in index.query(np.array([0.0, 0.0]), ["rock", "pop"])] == [2, 0, 1]


def test_library_scope_ignores_genres():
    genres = ["rock"] * 3 + ["pop"] * 3
    index = GenreKnn(k=3, scope="library").fit(_points(genres), genres)
    assert [p.index for p in index.query(np.array([5.0, 0.0]), ["rock"])] == [5, 4, 3]


def test_a_small_library_gives_what_it_has():
    index = GenreKnn(k=3).fit(_points(["rock", "pop"]), ["rock", "pop"])
    assert len(index.query(np.array([0.0, 0.0]), ["pop", "rock"], exclude={1})) == 1


def test_space_weights_set_each_spaces_share_of_the_distance():
    rng = np.random.default_rng(1)
    a, b = rng.random((20, 3)), rng.random((20, 50))
    only_a = SpaceScaler([1.0, 0.0]).fit([a, b]).transform([a, b])
    alone = SpaceScaler().fit([a]).transform([a])
    assert np.allclose(only_a[:, :3], alone) and np.allclose(only_a[:, 3:], 0.0)
    both = SpaceScaler().fit([a, b]).transform([a, b])
    # Standardised and divided by sqrt(width): each space has the same total variance, 1.
    assert np.allclose(both[:, :3].var(axis=0).sum(), 1.0) and np.allclose(both[:, 3:].var(axis=0).sum(), 1.0)


@pytest.mark.parametrize("features", ["chroma", "embedding", "mix"])
def test_an_upload_of_a_library_track_is_named_and_left_out(store, classifier, tmp_path, features):
    # Over the whole library, the track itself (distance 0) would be the first pick.
    library = Library(store, classifier, WEIGHTS, features=features, scope="library")
    track = store.tracks("jazz")[1]
    # The same 16-bit samples as WAV: another file, the same content.
    samples, sr = sf.read(track.source, dtype="int16")
    wav = write_audio(tmp_path / "copy.wav", samples, sr)
    for source in (Path(track.source), wav):
        analysis = library.analyse(decode(source))
        assert analysis.match == track
        assert len(analysis.recommendations) == 3
        assert track not in [r.track for r in analysis.recommendations]
        distances = [r.distance for r in analysis.recommendations]
        assert distances == sorted(distances) and distances[0] > 0
        assert all(0 < r.similarity < 1 for r in analysis.recommendations)
        assert list(analysis.probabilities) == sorted(analysis.probabilities, key=analysis.probabilities.get,
                                                      reverse=True)
        assert analysis.genre == next(iter(analysis.probabilities))
        assert abs(sum(analysis.probabilities.values()) - 1) < 1e-4


def test_a_lossy_copy_of_a_library_track_is_named_and_left_out(store, classifier):
    library = Library(store, classifier, WEIGHTS, scope="library")
    track = store.tracks("rock")[0]
    samples, sr = sf.read(track.source, dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, format="MP3")   # other samples, another content hash
    analysis = library.analyse(decode(buffer.getvalue()))
    assert analysis.match == track
    assert track not in [r.track for r in analysis.recommendations] and len(analysis.recommendations) == 3
    assert all(r.why for r in analysis.recommendations)   # the genre or a close feature space, at least


def test_every_library_copy_of_the_uploaded_audio_is_left_out(classifier, tmp_path):
    folder = tmp_path / "audio"
    write_clips(folder, per_genre=1, seconds=6.0)
    original = folder / "jazz" / "jazz.demo01.flac"
    (folder / "jazz" / "jazz.again.flac").write_bytes(original.read_bytes())
    ingest(folder, tmp_path / "data", workers=1, progress=False)
    library = Library(Store(tmp_path / "data"), classifier, WEIGHTS, scope="library")
    analysis = library.analyse(decode(original))
    assert analysis.match.id in ("jazz.again", "jazz.demo01")
    assert not {"jazz.again", "jazz.demo01"} & {r.track.id for r in analysis.recommendations}


def test_genre_scope_picks_from_the_predicted_genre_and_then_the_next(store, classifier):
    library = Library(store, classifier, WEIGHTS)
    analysis = library.analyse(decode(store.tracks("metal")[0].source))
    # Two tracks per genre, one of them the upload itself: its genre first (it is recognised), then the
    # others in order of probability.
    expected, wanted = [], 3
    for genre in ["metal"] + [g for g in analysis.probabilities if g != "metal"]:
        n = min(wanted, 1 if genre == "metal" else 2)
        expected, wanted = expected + [genre] * n, wanted - n
        if not wanted:
            break
    assert [r.track.genre for r in analysis.recommendations] == expected


def test_the_demo_library_is_known_as_such(store, tmp_path):
    assert is_demo(store) and len(store) == 2 * len(GENRES)
    folder = tmp_path / "audio"
    write_clips(folder, per_genre=1, seconds=3.0)
    ingest(folder, tmp_path / "data", workers=1, progress=False)
    assert not is_demo(Store(tmp_path / "data"))   # the same clips, indexed from elsewhere


def test_the_embedding_space_reads_the_stored_embeddings(store, classifier, monkeypatch):
    # No log-mel is read and nothing is computed: preprocess.py stored each track's mean embedding.
    monkeypatch.setattr("model.service.library.patch_embeddings", lambda *a, **k: pytest.fail("computed"))
    library = Library(store, classifier, WEIGHTS, features="embedding")
    assert len(library.similar(store.tracks()[0].id, 3)) == 3 and not (store.root / "embeddings").exists()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict:
    """Two 12 s songs per genre and one 4 s snippet per genre (of another variant: not a part of a song), indexed."""
    root = tmp_path_factory.mktemp("mixed")
    write_clips(root / "audio", per_genre=2, seconds=12.0)
    write_clips(root / "snippets", per_genre=3, seconds=4.0)
    for path in (root / "snippets").rglob("*.demo03.flac"):
        path.rename(root / "audio" / path.parent.name / path.name.replace("demo03", "snippet01"))
    ingest(root / "audio", root / "data", workers=1, progress=False)
    return {"store": Store(root / "data"), "audio": root / "audio"}


def test_tracks_shorter_than_the_minimum_are_never_picks(mixed, classifier):
    short = {t.id for t in mixed["store"].tracks() if t.duration_s < 10}
    assert len(short) == len(GENRES)
    for scope in ("genre", "library"):
        library = Library(mixed["store"], classifier, WEIGHTS, scope=scope, min_pick_s=10)
        for genre in ("rock", "jazz", "classical"):
            picks = library.analyse(decode(mixed["audio"] / genre / f"{genre}.snippet01.flac")).recommendations
            assert len(picks) == 3 and not short & {r.track.id for r in picks}
    # Without a minimum the snippets are picks like any other track (so the test above can fail).
    library = Library(mixed["store"], classifier, WEIGHTS, scope="library")
    assert short & {r.track.id for g in GENRES for r in library.analyse(
        decode(mixed["audio"] / g / f"{g}.demo01.flac")).recommendations}


def test_a_recognised_track_sets_the_genre_of_the_picks_and_the_models_guess_stays(mixed, classifier, monkeypatch):
    library = Library(mixed["store"], classifier, WEIGHTS, min_pick_s=10)
    analyse = classifier.analyse

    def hears_reggae(y):   # the model's guess is wrong: reggae, whatever the upload
        probs, embedding = analyse(y)
        probs = np.full_like(probs, 0.02)
        probs[classifier.genres.index("reggae")] = 1 - 0.02 * (len(probs) - 1)
        return probs, embedding

    monkeypatch.setattr(classifier, "analyse", hears_reggae)
    y, sr = sf.read(mixed["audio"] / "disco" / "disco.demo01.flac", dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, y[int(2.5 * sr):int(7.5 * sr)], sr, format="WAV")   # a 5 s cut of it
    analysis = library.analyse(decode(buffer.getvalue(), min_duration_s=1.0))
    assert analysis.genre == "reggae" and analysis.match.id == "disco.demo01" and analysis.excerpt
    assert analysis.picks_genre == "disco"
    # The other disco song first (the snippet is too short), then the next genres by the model.
    assert [r.track.genre for r in analysis.recommendations] == ["disco", "reggae", "reggae"]
    assert analysis.recommendations[0].reasons[0].text == "same genre (disco)"


def test_a_medley_contains_library_tracks_at_their_times_and_is_none_of_them(mixed, classifier):
    library = Library(mixed["store"], classifier, WEIGHTS, scope="library", min_pick_s=10)
    parts = [("rock", "demo01"), ("pop", "demo02"), ("jazz", "demo01")]
    clips = [sf.read(mixed["audio"] / g / f"{g}.{v}.flac", dtype="float32") for g, v in parts]
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate([y for y, _ in clips]), clips[0][1], format="FLAC")
    analysis = library.analyse(decode(buffer.getvalue()))
    assert analysis.match is None
    assert [c.track.id for c in analysis.contains] == [f"{g}.{v}" for g, v in parts]
    for i, contained in enumerate(analysis.contains):
        assert contained.start_s == pytest.approx(12.0 * i, abs=0.3)
        assert contained.end_s == pytest.approx(12.0 * (i + 1), abs=0.3)
    assert not {c.track.id for c in analysis.contains} & {r.track.id for r in analysis.recommendations}
    # The whole of one of them is that track, not a medley.
    whole = library.analyse(decode(mixed["audio"] / "pop" / "pop.demo02.flac"))
    assert whole.match.id == "pop.demo02" and not whole.excerpt and not whole.contains


def test_percentiles_rank_picks_as_their_distances_do(store, classifier):
    library = Library(store, classifier, WEIGHTS, scope="library")
    for genre in ("metal", "blues", "pop"):
        picks = library.analyse(decode(store.tracks(genre)[0].source)).recommendations
        assert all(0 <= r.percentile <= 100 for r in picks)
        assert [r.percentile for r in picks] == sorted((r.percentile for r in picks), reverse=True)
        assert picks[0].percentile > 50   # the nearest of 19 others is nearer than most
        for r in picks:
            main = [x for x in r.reasons if x.main]
            aspects = [x for x in r.reasons if x.kind in ("notes", "movement")]
            assert len(main) <= 1 and all(x.values["percentile"] >= 75 for x in aspects)
