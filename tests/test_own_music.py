"""A listener's own music library: Artist/Album/NN Title files with repeated and non-Latin names, tags,
genres placed by folder, tag or classifier, a compact store, rescans, "more like this" and its M3U."""
from __future__ import annotations

import os
import re
import shutil
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from conftest import tone, write_audio
from model.params import GENRES
from model.stores.collection import MAX_ID_BYTES, discover
from model.stores.feature_store import Store
from model.stores.ingest import ingest
from model.stores.naming import describe
from tagged_media import retag, song, write_tagged

# (relative path, tags, what places its genre under --genres auto)
LIBRARY = [
    ("Delta Ray/Night Songs/01 Intro.mp3", {"title": "Intro", "artist": "Delta Ray", "album": "Night Songs",
                                            "track": "1/3", "date": "2001", "genre": "Hip-Hop"}, "tag"),
    ("Delta Ray/Night Songs/02 Night Train.mp3", {"title": "Night Train", "artist": "Delta Ray",
                                                  "album": "Night Songs", "track": "2", "genre": "Rap"}, "tag"),
    ("Delta Ray/Day Songs/01 Intro.flac", {"title": "Intro (Day)", "artist": "Delta Ray", "album": "Day Songs",
                                           "genre": "Hard Rock"}, "tag"),
    ("Delta Ray/Day Songs/03 Night Train.flac", {"title": "Night Train", "artist": "Delta Ray",
                                                 "album": "Day Songs"}, "model"),            # no genre tag
    ("Iron Pyre/Ash/01 Intro.m4a", {"title": "Intro", "artist": "Iron Pyre", "album": "Ash",
                                    "genre": "Death Metal"}, "tag"),
    ("Iron Pyre/Ash/02 Ember.m4a", {"title": "Ember", "artist": "Iron Pyre", "album": "Ash",
                                    "genre": "Ambient Drone"}, "model"),                      # a tag of no genre
    ("Jazz/Some Trio/01 Intro.flac", {"title": "Intro", "artist": "Some Trio", "genre": "Rock"}, "folder"),
    ("Сплин - Романс.flac", {"title": "Романс", "artist": "Сплин"}, "model"),
    ("Кино - Группа крови.flac", {}, "model"),                                              # no tags at all
    ("日本の歌.flac", {}, "model"),
    ("中文歌曲.flac", {}, "model"),
    ("loose take.mp3", {"genre": "reggae"}, "tag"),
]
SECONDS = 4.0


def make_library(root: Path) -> Path:
    """The library above: each file's own audio, encoded once per format and re-tagged per file."""
    for n, (relative, tags, _) in enumerate(LIBRARY):
        write_tagged(root / relative, song(SECONDS, seed=100 + n, rate=22050), 22050, tags)
    return root


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return make_library(tmp_path_factory.mktemp("own") / "music")


@pytest.fixture(scope="module")
def built(library, tmp_path_factory) -> tuple[Path, object]:
    data = tmp_path_factory.mktemp("own-data") / "data"
    return data, ingest(library, data, workers=1, progress=False)


def test_no_file_is_lost_to_a_repeated_or_non_latin_name(library):
    candidates, passed = discover(library, "auto")
    assert passed == [] and len(candidates) == len(LIBRARY)
    ids = [c.id for c in candidates]
    assert len(set(i.casefold() for i in ids)) == len(ids)
    by_path = {c.relative: c.id for c in candidates}
    # Repeated names keep their folders; a name no other file has stays the name.
    assert by_path["Delta Ray/Night Songs/01 Intro.mp3"] == "Delta_Ray~Night_Songs~01_Intro"
    assert by_path["Delta Ray/Day Songs/01 Intro.flac"] == "Delta_Ray~Day_Songs~01_Intro"
    assert by_path["Delta Ray/Night Songs/02 Night Train.mp3"] == "02_Night_Train"
    # Every script is kept, readable.
    assert by_path["Сплин - Романс.flac"] == "Сплин_-_Романс"
    assert by_path["Кино - Группа крови.flac"] == "Кино_-_Группа_крови"
    assert by_path["日本の歌.flac"] == "日本の歌" and by_path["中文歌曲.flac"] == "中文歌曲"
    for track_id in ids:   # URL-safe: nothing a URL path treats specially, no '%'
        assert not re.search(r"[/?#%&+\s\\]", track_id) and len(track_id.encode()) <= MAX_ID_BYTES


def test_every_track_is_stored_in_one_of_the_ten_genres_by_the_route_reported(built):
    data, summary = built
    assert (summary.stored, summary.skipped, summary.updated, summary.removed) == (len(LIBRARY), [], 0, 0)
    store = Store(data)
    by_path = {t.path: t for t in store.tracks()}
    assert set(by_path) == {relative for relative, _, _ in LIBRARY}
    for relative, tags, route in LIBRARY:
        track = by_path[relative]
        assert track.genre in GENRES and track.route == route, (relative, track)
    assert by_path["Delta Ray/Night Songs/01 Intro.mp3"].genre == "hiphop"
    assert by_path["Delta Ray/Night Songs/02 Night Train.mp3"].genre == "hiphop"
    assert by_path["Delta Ray/Day Songs/01 Intro.flac"].genre == "rock"
    assert by_path["Iron Pyre/Ash/01 Intro.m4a"].genre == "metal"
    assert by_path["Jazz/Some Trio/01 Intro.flac"].genre == "jazz"     # the folder wins over its tag
    assert by_path["loose take.mp3"].genre == "reggae"
    # A track placed by the classifier is in its most probable genre; the probabilities are kept.
    for track, probabilities in zip(store.tracks(), store.vectors(store.tracks(), "probabilities")):
        assert probabilities.shape == (len(GENRES),) and abs(probabilities.sum() - 1) < 1e-4
        if track.route == "model":
            assert track.genre == GENRES[int(np.argmax(probabilities))]
    counts = {route: sum(r == route for _, _, r in LIBRARY) for route in ("folder", "tag", "model")}
    assert (f"genres of the tracks analysed: {counts['folder']} by folder, {counts['tag']} by genre tag, "
            f"{counts['model']} by the classifier") in summary.report()


def test_tags_are_stored_and_the_file_name_is_the_title_only_without_one(built):
    store = Store(built[0])
    by_path = {t.path: t for t in store.tracks()}
    intro = by_path["Delta Ray/Night Songs/01 Intro.mp3"]
    assert (intro.title, intro.artist, intro.album, intro.track_no, intro.year) == (
        "Intro", "Delta Ray", "Night Songs", 1, 2001)
    assert abs(intro.duration_s - SECONDS) < 0.1
    assert describe(by_path["Сплин - Романс.flac"])["name"] == "Сплин – Романс"
    untagged = describe(by_path["Кино - Группа крови.flac"])
    assert (untagged["title"], untagged["artist"]) == ("Кино - Группа крови", "")


def test_the_default_collection_store_is_compact_and_serves_the_embedding_space(built):
    from model.network.classifier import GenreClassifier
    from model.service.library import Library
    from model.service.settings import from_env

    data, _ = built
    store = Store(data)
    assert not store.keeps_mel and not list(data.glob("*/features/*.npz"))
    embeddings = store.vectors(store.tracks(), "embedding")
    assert all(e is not None and e.shape == (200,) for e in embeddings)
    weights = from_env().weights_dir
    for features in ("embedding", "mix"):
        library = Library(store, GenreClassifier.load(weights), weights, features=features)
        picks = library.similar(store.tracks()[0].id, 3)
        assert len(picks) == 3 and store.tracks()[0].id not in [p.track.id for p in picks]


@pytest.mark.parametrize("route", ["folders", "tags", "model"])
def test_each_genre_route(library, tmp_path, route):
    summary = ingest(library, tmp_path / "data", workers=1, progress=False, genres=route)
    store = Store(tmp_path / "data")
    assert summary.stored == len(LIBRARY) == len(store)
    by_path = {t.path: t for t in store.tracks()}
    if route == "folders":   # the top folder, whatever its name; loose files are "unsorted"
        assert by_path["Delta Ray/Night Songs/01 Intro.mp3"].genre == "delta_ray"
        assert by_path["Jazz/Some Trio/01 Intro.flac"].genre == "jazz" and by_path["日本の歌.flac"].genre == "unsorted"
        assert {t.route for t in store.tracks()} == {"folder"}
    elif route == "tags":    # the folder named "Jazz" is not looked at: its tag says rock
        assert by_path["Jazz/Some Trio/01 Intro.flac"].genre == "rock"
        assert by_path["Jazz/Some Trio/01 Intro.flac"].route == "tag"
        assert by_path["Iron Pyre/Ash/02 Ember.m4a"].route == "model"
    else:
        assert {t.route for t in store.tracks()} == {"model"} and all(t.genre in GENRES for t in store.tracks())


def _change(path: Path, seed: int) -> None:
    """Another recording under the same name (and tags), so its size or time changes."""
    write_tagged(path, song(SECONDS + 1, seed=seed, rate=22050), 22050, {"title": "Changed", "genre": "pop"})


def test_a_rescan_stores_new_updates_changed_removes_gone_and_leaves_the_rest(library, tmp_path, monkeypatch):
    from model.index.build import build_index, index_path
    from model.index.ann import check_index
    from model.index.build import index_key

    music = tmp_path / "music"
    shutil.copytree(library, music)
    data = tmp_path / "data"
    ingest(music, data, workers=1, progress=False)
    build_index(data, "genre", progress=False)
    before = {t.path: t for t in Store(data).tracks()}
    write_audio(music / "Iron Pyre" / "Ash" / "03 New.flac", tone(SECONDS, seed=77), 22050)
    _change(music / "Delta Ray" / "Day Songs" / "03 Night Train.flac", seed=78)
    (music / "中文歌曲.flac").unlink()
    summary = ingest(music, data, workers=1, progress=False)
    assert (summary.stored, summary.updated, summary.removed, summary.already) == (1, 1, 1, len(LIBRARY) - 2)
    assert summary.report().startswith(f"stored 1 track, updated 1, removed 1, {len(LIBRARY) - 2} already stored")
    assert "1 changed files" in summary.report()
    store = Store(data)
    after = {t.path: t for t in store.tracks()}
    assert "中文歌曲.flac" not in after and "Iron Pyre/Ash/03 New.flac" in after and len(after) == len(LIBRARY)
    changed = after["Delta Ray/Day Songs/03 Night Train.flac"]
    assert changed.id == before["Delta Ray/Day Songs/03 Night Train.flac"].id   # its id stays
    assert (changed.title, changed.genre, changed.route) == ("Changed", "pop", "tag")
    assert abs(changed.duration_s - (SECONDS + 1)) < 0.1
    unchanged = [p for p in after if p in before and p != "Delta Ray/Day Songs/03 Night Train.flac"]
    assert all(after[p] == before[p] for p in unchanged)      # left as they were, row for row
    # The index follows: the saved one no longer fits the tracks, and a build makes one that does.
    path = build_index(data, "genre", progress=False)
    check_index(path, index_key(store.tracks(), "chroma", "genre", None))
    assert path == index_path(data, "chroma", "genre")
    # Nothing changed: nothing is analysed.
    again = ingest(music, data, workers=1, progress=False)
    assert (again.stored, again.updated, again.removed, again.already) == (0, 0, 0, len(LIBRARY))
    # New network weights: every track is analysed again, and the summary says why.
    monkeypatch.setattr("model.stores.ingest.network_digest", lambda weights_dir: "other-weights")
    upgraded = ingest(music, data, workers=1, progress=False)
    assert (upgraded.stored, upgraded.updated, upgraded.removed) == (0, len(LIBRARY), 0)
    assert f"re-analysed {len(LIBRARY)} tracks for new network weights" in upgraded.report()
    assert all(t.network == "other-weights" for t in Store(data).tracks())


def test_removed_and_replaced_rows_survive_merges_and_reopening(tmp_path, monkeypatch):
    from model.index.fingerprint import Fingerprint
    from model.stores.feature_store import Entry, Track

    monkeypatch.setattr("model.stores.feature_store.FLUSH_S", 0.0)   # one shard per row: merges happen
    store = Store(tmp_path, create=True, log_mel=False)

    def entry(track_id: str, genre: str, value: float) -> Entry:
        return Entry(Track(track_id, genre, f"/m/{track_id}", value, f"h{value}"), np.full(36, value),
                     Fingerprint(np.arange(3, dtype=np.uint32), np.arange(3, dtype=np.int32)))

    with store.writer():
        for i in range(20):
            store.add(entry(f"t{i}", "pop", float(i)))
        store.add(entry("t3", "rock", 99.0))   # re-analysed into another genre
        store.remove(store.find("t5"))
        store.add(entry("t7", "pop", 77.0))
    again = Store(tmp_path)
    assert len(again) == 19 and again.find("t5") is None
    assert again.find("t3").genre == "rock" and again.find("t7").duration_s == 77.0
    assert again.chroma_summaries([again.find("t7"), again.find("t3")])[:, 0].tolist() == [77.0, 99.0]
    assert len(list((tmp_path / "pop").glob("part-*.parquet"))) < 21   # merged


def test_what_is_passed_over_is_said_and_why(tmp_path):
    music, outside = tmp_path / "music", tmp_path / "elsewhere"
    write_audio(music / "rock" / "a.flac", tone(3.0, seed=1), 22050)
    write_audio(outside / "b.flac", tone(3.0, seed=2), 22050)
    write_audio(music / ".hidden.flac", tone(3.0, seed=3), 22050)
    (music / "empty.mp3").write_bytes(b"")
    os.mkfifo(music / "pipe.mp3")
    (music / "broken.flac").symlink_to(tmp_path / "nowhere.flac")
    (music / "loop.flac").symlink_to(music / "loop.flac")
    (music / "rock" / "again").symlink_to(music)                     # back into the collection
    (music / "out").symlink_to(outside)                              # out of it: followed once
    (outside / "back").symlink_to(music)                             # ... and back in: not followed
    long_name = "x" * 245 + ".flac"                                  # 250 characters, legal
    write_audio(music / long_name, tone(3.0, seed=4), 22050)
    summary = ingest(music, tmp_path / "data", workers=1, progress=False, log_mel=True)
    reasons = {Path(p).name: why for p, why in summary.passed_over + summary.skipped}
    assert reasons[".hidden.flac"] == "hidden file" and reasons["empty.mp3"] == "empty file"
    assert reasons["pipe.mp3"] == "not a regular file (FIFO)"
    assert reasons["broken.flac"].startswith("broken link") and reasons["loop.flac"].startswith("link loop")
    assert reasons["again"].startswith("link into the collection") and reasons["back"].startswith("link into")
    assert summary.stored == 3 and summary.links_followed == 1
    report = summary.report()
    assert "passed over" in report and "followed 1 link out of the collection" in report
    paths = {t.path for t in Store(tmp_path / "data").tracks()}
    assert paths == {"rock/a.flac", "out/b.flac", long_name}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_said_so(tmp_path):
    path = write_audio(tmp_path / "music" / "locked.flac", tone(3.0), 22050)
    path.chmod(0)
    summary = ingest(tmp_path / "music", tmp_path / "data", workers=1, progress=False)
    assert summary.skipped == [(str(path), "cannot be read (permission denied)")]


def test_gtzan_clips_are_named_by_sturms_index():
    from model.stores.feature_store import Track

    named = describe(Track("blues.00000", "blues", "/g/blues/blues.00000.wav", 30.0, "h"))
    assert (named["artist"], named["title"]) == ("John Lee Hooker", "One Bourbon, One Scotch And One Beer")
    untitled = describe(Track("blues.00004", "blues", "/g/blues/blues.00004.wav", 30.0, "h"))
    assert (untitled["artist"], untitled["title"]) == ("John Lee Hooker", "blues.00004")
    assert describe(Track("my.song", "pop", "/m/my.song.wav", 30.0, "h"))["title"] == "my.song"


@pytest.fixture(scope="module")
def client(built, library, tmp_path_factory):
    from app import create_app
    from model.service.settings import from_env

    data, _ = built
    # A GTZAN clip without tags in the same library: named by Sturm's index.
    gtzan = tmp_path_factory.mktemp("gtzan") / "g"
    write_audio(gtzan / "blues" / "blues.00000.flac", tone(SECONDS, seed=55), 22050)
    ingest(gtzan, data, workers=1, progress=False)
    # Every track is a short generated clip: none would be a pick under the 10 s minimum for songs.
    app = create_app({"DATA_DIR": data, "UPLOAD_DIR": tmp_path_factory.mktemp("uploads"),
                      "WEIGHTS_DIR": from_env().weights_dir, "MIN_PICK_S": 0.0})
    return app.test_client()


def _id_of(client, relative: str) -> str:
    from model.stores.collection import track_ids

    return track_ids([r for r, _, _ in LIBRARY], None)[relative]


def test_api_similar_names_tracks_by_title_and_artist(client):
    seed_id = _id_of(client, "Delta Ray/Night Songs/01 Intro.mp3")
    response = client.get(f"/api/similar/{urllib.parse.quote(seed_id)}?n=5")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["track"]["title"] == "Intro" and body["track"]["artist"] == "Delta Ray"
    similar = body["similar"]
    assert len(similar) == 5 and seed_id not in [s["id"] for s in similar]
    distances = [s["distance"] for s in similar]
    # The picks' rules: the seed's genre first (nearest first within it), then the next genres.
    genres = [s["genre"] for s in similar]
    same = [d for d, g in zip(distances, genres) if g == body["track"]["genre"]]
    assert same == sorted(same) and genres[:len(same)] == [body["track"]["genre"]] * len(same)
    for s in similar:
        assert s["title"] and "name" in s and client.get(s["audio_url"]).status_code == 200
    everything = client.get(f"/api/similar/{urllib.parse.quote(seed_id)}?n=200").get_json()["similar"]
    assert len(everything) == len(LIBRARY)    # all others: the library's tracks and the GTZAN clip
    named = [s for s in everything if s["id"] == "blues.00000"][0]
    assert (named["artist"], named["title"]) == ("John Lee Hooker", "One Bourbon, One Scotch And One Beer")
    non_latin = client.get("/api/similar/" + urllib.parse.quote("日本の歌") + "?n=2")
    assert non_latin.status_code == 200 and non_latin.get_json()["track"]["title"] == "日本の歌"


@pytest.mark.parametrize("query, status", [("?n=0", 400), ("?n=abc", 400), ("?n=100000", 400), ("", 200)])
def test_api_similar_refuses_a_bad_n(client, query, status):
    response = client.get(f"/api/similar/02_Night_Train{query}")
    assert response.status_code == status and (status == 200 or "whole number" in response.get_json()["error"])


def test_api_similar_of_an_unknown_track_is_404(client):
    response = client.get("/api/similar/no-such-track")
    assert response.status_code == 404 and "no library track" in response.get_json()["error"]


def _parse_m3u8(text: str) -> list[tuple[int, str, str]]:
    """(seconds, title, location) of each entry; fails on anything an extended M3U may not hold."""
    lines = text.split("\n")
    assert lines[0] == "#EXTM3U" and text.endswith("\n") and "\r" not in text
    lines = lines[1:-1]
    entries, pending = [], None
    for line in lines:
        assert line.strip() == line and line, f"blank or padded line: {line!r}"
        if line.startswith("#EXTINF:"):
            assert pending is None, "two #EXTINF lines in a row"
            match = re.fullmatch(r"#EXTINF:(-?\d+),(.+)", line)
            assert match, line
            pending = (int(match.group(1)), match.group(2))
        elif line.startswith("#"):
            assert line.startswith("#PLAYLIST:"), line
        else:
            assert pending is not None, f"an entry without #EXTINF: {line!r}"
            entries.append((*pending, line))
            pending = None
    assert pending is None
    return entries


def test_the_m3u8_playlist_opens_in_a_player(client, library):
    seed_id = _id_of(client, "Iron Pyre/Ash/01 Intro.m4a")
    url = f"/api/similar/{urllib.parse.quote(seed_id)}/playlist.m3u8?n=4"
    response = client.get(url)
    assert response.status_code == 200 and response.mimetype == "audio/x-mpegurl"
    assert response.mimetype_params["charset"] == "utf-8" and "attachment" in response.headers["Content-Disposition"]
    entries = _parse_m3u8(response.get_data(as_text=True))
    assert len(entries) == 5 and entries[0][1] == "Iron Pyre – Intro"   # the seed first, then 4 like it
    assert all(abs(seconds - SECONDS) <= 1 for seconds, _, _ in entries)
    for _, _, location in entries:
        parsed = urllib.parse.urlsplit(location)
        assert parsed.scheme == "http" and client.get(parsed.path).status_code == 200
    relative = _parse_m3u8(client.get(url + "&paths=relative").get_data(as_text=True))
    # Paths relative to each track's collection (the GTZAN clip's is another folder): '/'-separated.
    assert all(not location.startswith("/") for _, _, location in relative)
    assert relative[0][2] == "Iron Pyre/Ash/01 Intro.m4a" and (library / relative[0][2]).is_file()
    assert [(s, t) for s, t, _ in relative] == [(s, t) for s, t, _ in entries]
    assert client.get(url + "&paths=absolute").status_code == 400


def test_the_page_and_the_api_name_picks_the_copy_and_the_upload_by_tags(client, library, tmp_path):
    import io

    path = library / "Delta Ray" / "Night Songs" / "02 Night Train.mp3"
    copy_path = retag(path, tmp_path / "upload.mp3", {"title": "My Upload", "artist": "Me"})
    data = copy_path.read_bytes()
    body = client.post("/api/analyze", data={"file": (io.BytesIO(data), "x.mp3")},
                       content_type="multipart/form-data").get_json()
    assert body["tags"]["title"] == "My Upload" and body["name"] == "Me – My Upload"
    assert body["match"]["title"] == "Night Train" and body["match"]["artist"] == "Delta Ray"
    assert len(body["recommendations"]) == 3 and all(
        p["title"] and "artist" in p and p["playlist_url"].startswith("/api/similar/") for p in body["recommendations"])
    page = client.post("/", data={"file": (io.BytesIO(data), "x.mp3")}, content_type="multipart/form-data",
                       follow_redirects=True).get_data(as_text=True)
    assert "Your song: Me – My Upload" in page
    # What the upload is comes first, by the library track's tags.
    assert re.search(r'This is\s+<span class="genre">Delta Ray – Night Train</span>', page)
    assert page.count('class="playlist"') == 4   # one per pick, one for the copy
    for pick in body["recommendations"]:
        assert f'<span class="pick-title">{pick["title"]}</span>' in page


def test_a_long_song_in_a_compact_store_is_analysed_from_its_spans_and_still_found_as_a_copy(tmp_path):
    from model.audio.decoding import decode
    from model.network.classifier import GenreClassifier
    from model.service.library import Library
    from model.service.settings import from_env

    music = tmp_path / "music"
    long_song = write_audio(music / "Artist" / "Album" / "01 Long.flac", tone(150.0, seed=11), 22050)
    for n in range(3):
        write_audio(music / "Artist" / "Album" / f"0{n + 2} Other.flac", tone(8.0, seed=20 + n), 22050)
    ingest(music, tmp_path / "compact", workers=1, progress=False)
    ingest(music, tmp_path / "full", workers=1, progress=False, log_mel=True)
    compact, full = Store(tmp_path / "compact"), Store(tmp_path / "full")
    track = next(t for t in compact.tracks() if t.path.endswith("01 Long.flac"))
    assert track.content_hash.startswith("file:") and abs(track.duration_s - 150.0) < 0.05
    [short_print] = compact.fingerprints([track])
    [whole_print] = full.fingerprints([full.find(track.id)])
    assert 0 < len(short_print.hashes) < len(whole_print.hashes) / 3   # of the middle 32 s only
    weights = from_env().weights_dir
    library = Library(compact, GenreClassifier.load(weights), weights)
    analysis = library.analyse(decode(long_song))   # as an upload of the same file
    assert analysis.match is not None and analysis.match.id == track.id
    assert track.id not in [r.track.id for r in analysis.recommendations]


def test_a_file_the_user_may_not_read_is_said_so_even_when_run_as_root(tmp_path, monkeypatch):
    # Root reads every file: the refusal a user gets is made here.
    locked = write_audio(tmp_path / "music" / "locked.flac", tone(3.0), 22050)
    write_audio(tmp_path / "music" / "open.flac", tone(3.0, seed=1), 22050)
    real_open = Path.open

    def refuse(self, *args, **kwargs):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    summary = ingest(tmp_path / "music", tmp_path / "data", workers=1, progress=False)
    assert summary.skipped == [(str(locked), "cannot be read (permission denied)")] and summary.stored == 1


def test_a_store_of_the_previous_version_is_read_and_its_first_rescan_adds_tags(tmp_path):
    import pyarrow.parquet as pq

    music = tmp_path / "gtzan"
    for i in range(2):
        write_audio(music / "blues" / f"blues.{i:05d}.wav", tone(3.0, seed=i), 22050)
    ingest(music, tmp_path / "data", workers=1, progress=False)
    old_columns = ["id", "source", "duration_s", "content_hash", "chroma_summary", "fingerprint_hashes",
                   "fingerprint_times"]
    for shard in (tmp_path / "data").glob("*/part-*.parquet"):   # as the previous version wrote them
        pq.write_table(pq.read_table(shard, columns=old_columns), shard)
    old = Store(tmp_path / "data")
    assert [(t.id, t.title, t.size, t.written_ns) for t in old.tracks()] == [
        ("blues.00000", "", None, 0), ("blues.00001", "", None, 0)]
    assert describe(old.find("blues.00000"))["artist"] == "John Lee Hooker"
    assert old.vectors(old.tracks(), "embedding") == [None, None]
    summary = ingest(music, tmp_path / "data", workers=1, progress=False)
    assert (summary.stored, summary.updated) == (0, 2) and "stored before tags and embeddings" in summary.report()
    new = Store(tmp_path / "data")
    assert [t.id for t in new.tracks()] == ["blues.00000", "blues.00001"] and all(t.size for t in new.tracks())
    assert all(e is not None for e in new.vectors(new.tracks(), "embedding"))
