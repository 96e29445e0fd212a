"""Every route and every bad input, through Flask's test client."""
import dataclasses
import io
import json
import re
import threading
import time

import flask
import numpy as np
import pytest
import soundfile as sf

import model.service.library
from app import create_app, default_config, genre_name
from av_media import encoded
from conftest import mp3_bytes, tone, write_audio
from model.index.explain import Reason
from model.params import GENRES
from model.service.feedback import result_digest
from model.service.settings import from_env
from model.service.uploads import FORMATS, format_names
from model.stores.demo_library import synthesise, write_clips
from model.stores.ingest import ingest

PER_GENRE = 2


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    audio = root / "audio"
    write_clips(audio, per_genre=PER_GENRE, seconds=6.0)
    # An AU file, which browsers do not play: the service sends it as WAV.
    write_audio(audio / "blues" / "blues.au01.au", tone(4.0, 8000, seed=3), 8000, format="AU", subtype="PCM_16")
    ingest(audio, root / "data", workers=1, progress=False)
    return {"DATA_DIR": root / "data", "UPLOAD_DIR": root / "uploads", "AUDIO": audio}


@pytest.fixture(scope="module")
def app(folders):
    # The default upload limit (50 MB) stays: the 413 test posts just over it.
    # One analysis at a time and one waiting: the 503 test fills both.
    # The library's clips are 6 s (the AU one 4 s): picks of at least 5 s.
    return create_app({"DATA_DIR": folders["DATA_DIR"], "UPLOAD_DIR": folders["UPLOAD_DIR"],
                       "WEIGHTS_DIR": from_env().weights_dir, "MAX_UPLOADS": 3, "MAX_ANALYSES": 1, "MAX_QUEUED": 1,
                       "MIN_PICK_S": 5.0})


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def song() -> bytes:
    """A 30 s generated song as OGG (written in blocks)."""
    buffer = io.BytesIO()
    y = tone(30.0, 44100, seed=7)
    with sf.SoundFile(buffer, "w", 44100, 1, format="OGG", subtype="VORBIS") as f:
        for start in range(0, len(y), 44100):
            f.write(y[start:start + 44100])
    return buffer.getvalue()


def post(client, url, data: bytes | None, name="song.ogg", **kwargs):
    """POST the file; the page's redirect to the result's own URL is followed."""
    form = {} if data is None else {"file": (io.BytesIO(data), name)}
    return client.post(url, data=form, content_type="multipart/form-data", follow_redirects=True, **kwargs)


def test_the_defaults_are_the_cards(monkeypatch):
    for name in ("DATA_DIR", "UPLOAD_DIR", "HOST", "PORT", "MAX_UPLOAD_MB"):
        monkeypatch.delenv(f"SOUNDALIKE_{name}", raising=False)
    settings, config = from_env(), default_config()
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)
    assert (settings.data_dir.name, settings.upload_dir.name) == ("data", "input_data")
    assert config["MAX_FILE_BYTES"] == 50 * 1024 * 1024


def test_configuration_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SOUNDALIKE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("SOUNDALIKE_PORT", "8123")
    monkeypatch.setenv("SOUNDALIKE_MAX_UPLOAD_MB", "2")
    monkeypatch.setenv("SOUNDALIKE_MIN_PICK_S", "20")
    settings = from_env()
    assert settings.data_dir == tmp_path / "d" and settings.port == 8123
    assert default_config()["MAX_FILE_BYTES"] == 2 * 1024 * 1024
    assert settings.min_pick_s == 20.0 and default_config()["MIN_PICK_S"] == 20.0
    monkeypatch.delenv("SOUNDALIKE_MIN_PICK_S")
    assert from_env().min_pick_s == 10.0   # picks are songs: 10 s at least, unless configured


def test_the_upload_form_and_what_the_library_is(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'type="file"' in html and 'enctype="multipart/form-data"' in html and 'name="file"' in html
    assert "<h1" in html and 'lang="en"' in html
    assert "synthesised demo library" not in html   # this library has an AU file of its own
    assert "The library holds 21 tracks in 10 genres." in html
    # Operator help is for operators: in /api/health (and docs/indexing.md), not on the listener's page.
    assert "python preprocess.py" not in html and "SOUNDALIKE_DATA_DIR" not in html
    operator = " ".join(client.get("/api/health").get_json()["operator"].values())
    assert "python preprocess.py" in operator and "SOUNDALIKE_DATA_DIR" in operator


def test_one_list_of_formats_for_the_form_the_page_and_the_415(client):
    html = client.get("/").get_data(as_text=True)
    accept = re.search(r'accept="([^"]+)"', html).group(1).split(",")
    assert set(accept) == {*FORMATS, "audio/*"}
    names = format_names()
    assert all(name in names for name in FORMATS.values()) and names in html
    refused = post(client, "/api/analyze", b"just text\n" * 100, name="notes.mp3").get_json()["error"]
    assert names in refused and "“notes.mp3”" in refused


def test_the_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.data[:4] == b"\0\0\1\0"


def test_the_page_says_when_the_library_is_the_synthesised_demo(app):
    with app.test_request_context("/"):
        html = flask.render_template("index.html", about={"demo": True, "tracks": 30, "genres": {},
                                                          "features": "chroma", "scope": "genre", "limit_mb": 50})
    assert "synthesised demo library" in html and "not real recordings" in html


def test_health(client, folders):
    health = client.get("/api/health").get_json()
    assert health["status"] == "ok"
    assert health["tracks"] == PER_GENRE * len(GENRES) + 1
    assert health["genres"]["blues"] == PER_GENRE + 1 and health["demo"] is False


def test_the_api_answers_the_documented_json(client, song):
    response = post(client, "/api/analyze", song)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(GENRES) == set(body["probabilities"]) and abs(sum(body["probabilities"].values()) - 1) < 1e-4
    assert body["genre"] == max(body["probabilities"], key=body["probabilities"].get)
    assert abs(body["duration_s"] - 30.0) < 0.1 and body["match"] is None and body["contains"] == []
    assert body["picks_genre"] == body["genre"] and body["min_pick_s"] == 5.0
    assert isinstance(body["unsure"], bool) and (body["unsure_reason"] is None) == (not body["unsure"])
    assert len(body["recommendations"]) == 3
    for rank, pick in enumerate(body["recommendations"], 1):
        assert set(pick) >= {"id", "genre", "distance", "why", "audio_url", "percentile", "reasons", "rank"}
        assert pick["rank"] == rank and 0 <= pick["percentile"] <= 100 and pick["duration_s"] >= 5.0
        assert pick["why"] == [r["text"] for r in pick["reasons"]]
        assert all({"kind", "text", "main"} <= set(r) for r in pick["reasons"])
        assert all(0 <= r["percentile"] <= 100 for r in pick["reasons"] if r["kind"] in ("notes", "movement"))
        assert pick["audio_url"] == f"/audio/{pick['id']}" and pick["distance"] > 0
        assert (f"same genre ({body['genre']})" in pick["why"]) == (pick["genre"] == body["genre"])
        audio = client.get(pick["audio_url"])
        assert audio.status_code == 200 and audio.mimetype.startswith("audio/")
        assert sf.info(io.BytesIO(audio.data)).duration > 1
    assert re.fullmatch(r"app;dur=[0-9.]+", response.headers["Server-Timing"])


def test_a_short_clip_is_answered_unsure_in_the_api_and_on_the_page(client):
    flac = io.BytesIO()
    sf.write(flac, tone(2.5, 22050, seed=9), 22050, format="FLAC", subtype="PCM_16")
    body = post(client, "/api/analyze", flac.getvalue(), name="short.flac").get_json()
    assert body["unsure"] is True and "2.5 s long" in body["unsure_reason"]
    page = post(client, "/", flac.getvalue(), name="short.flac").get_data(as_text=True)
    assert "Unsure: the clip is 2.5 s long" in page


def test_a_long_song_is_decoded_and_searched_whole(client, monkeypatch):
    flac = io.BytesIO()
    sf.write(flac, tone(240.0, 22050, seed=8), 22050, format="FLAC", subtype="PCM_16")
    decoded = []
    analyse = model.service.library.Library.analyse
    monkeypatch.setattr(model.service.library.Library, "analyse",
                        lambda self, audio: decoded.append(audio) or analyse(self, audio))
    body = post(client, "/api/analyze", flac.getvalue(), name="long.flac").get_json()
    # All of it, to find library tracks anywhere in it (only the network's patches and the middle 32 s were, before).
    assert not decoded[0].spans and decoded[0].content_hash and decoded[0].duration_s == pytest.approx(240.0)
    assert sorted(body["searched_s"])[0][0] == 0.0 and sorted(body["searched_s"])[-1][1] == pytest.approx(240.0)
    assert sum(b - a for a, b in body["searched_s"]) == pytest.approx(240.0, abs=0.01)


def test_an_upload_of_a_library_track_is_named_and_not_picked(client, folders):
    flac = (folders["AUDIO"] / "jazz" / "jazz.demo02.flac").read_bytes()
    body = post(client, "/api/analyze", flac, name="whatever.flac").get_json()
    assert {k: body["match"][k] for k in ("id", "genre", "title", "artist")} == {
        "id": "jazz.demo02", "genre": "jazz", "title": "jazz.demo02", "artist": ""}   # untagged: its file name
    assert body["excerpt"] is False
    assert "jazz.demo02" not in [p["id"] for p in body["recommendations"]]
    assert len(body["recommendations"]) == 3 and body["picks_genre"] == "jazz"
    assert body["recommendations"][0]["genre"] == "jazz"   # the other jazz clip, whatever the model hears
    page = post(client, "/", flac, name="whatever.flac").get_data(as_text=True)
    # What it is comes first, as the heading; the model's guess is reported as the model's.
    heading = re.search(r"<h1.*?</h1>", page, re.S).group(0)
    assert re.search(r"This is\s+<span class=\"genre\">jazz.demo02</span>", heading) and "likely" not in heading
    assert f"The model hears <strong>{genre_name(body['genre'])}</strong>" in page
    assert page.index("This is") < page.index("The model hears") < page.index("picks-title")


def test_library_tracks_inside_an_upload_are_listed_with_their_times_and_never_picked(client, folders):
    parts = ["rock/rock.demo01", "pop/pop.demo02", "jazz/jazz.demo01"]
    clips = [sf.read(folders["AUDIO"] / f"{p}.flac", dtype="float32")[0] for p in parts]
    medley = io.BytesIO()
    sf.write(medley, np.concatenate(clips), 16000, format="FLAC")
    body = post(client, "/api/analyze", medley.getvalue(), name="medley.flac").get_json()
    assert body["match"] is None
    ids = [c["id"] for c in body["contains"]]
    assert ids == [p.split("/")[1] for p in parts], body["contains"]
    for i, c in enumerate(body["contains"]):
        assert abs(c["start_s"] - 6 * i) < 0.3 and abs(c["end_s"] - 6 * (i + 1)) < 0.3
    assert not set(ids) & {p["id"] for p in body["recommendations"]}
    page = client.get(body["result_url"]).get_data(as_text=True)
    pop = body["contains"][1]
    shown = "%d:%02d–%d:%02d" % (*divmod(int(pop["start_s"]), 60), *divmod(int(pop["end_s"]), 60))
    assert "Sounds like" in page and f'<span class="times">{shown}</span> pop.demo02 (Pop)' in page


def test_the_result_page(client, song):
    posted = client.post("/", data={"file": (io.BytesIO(song), "<b>my song</b>.ogg")}, content_type="multipart/form-data")
    assert posted.status_code == 303
    url = posted.headers["Location"]
    assert re.fullmatch(r"/results/[0-9a-f]{32}", url)
    response = client.get(url)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert client.get(url).get_data(as_text=True) == html   # a reload shows the same result, posts nothing
    assert "&lt;b&gt;my song&lt;/b&gt;.ogg" in html and "<b>my song</b>" not in html
    bars = re.findall(r'<span class="label">([\w-]+)</span>.*?<span class="value">([0-9.]+) %</span>', html, re.S)
    assert sorted(g for g, _ in bars) == sorted(genre_name(g) for g in GENRES) and "Hip-hop" in dict(bars)
    percents = [float(p) for _, p in bars]
    assert percents == sorted(percents, reverse=True) and abs(sum(percents) - 100) < 1
    # The heading is the answer, with the same percentage as its bar.
    heading = re.search(r"<h1.*?</h1>", html, re.S).group(0)
    assert bars[0][0] in heading and f"{bars[0][1]} %" in heading
    picks = re.findall(r'<span class="pick-id"><span class="pick-title">([\w.-]+)</span></span>.*?'
                       r'Closer than <strong>(\d+) %</strong> of the library.*?'
                       r'<span class="pick-len">.*?([0-9]+:[0-9]{2})</span>.*?'
                       r'<audio controls preload="metadata" src="([^"]+)"\s+aria-label="([^"]+)"', html, re.S)
    assert len(picks) == 3 and all(src == f"/audio/{pick}" and f"pick, {pick} (" in label
                                   for pick, _, _, src, label in picks)
    assert [label.split(",")[0] for *_, label in picks] == ["the 1st pick", "the 2nd pick", "the 3rd pick"]
    assert all(0 <= int(score) <= 100 and length == "0:06" for _, score, length, _, _ in picks)
    assert "means: nearer your song" in html   # the score explained in one line
    upload = re.search(r'<audio controls preload="metadata" src="(/uploads/[^"]+)"', html).group(1)
    player = client.get(upload)
    assert player.status_code == 200 and player.data == song


def test_the_api_gives_the_results_url_and_a_page_renders_why_when_given(client, song, monkeypatch):
    body = post(client, "/api/analyze", song).get_json()
    page = client.get(body["result_url"])
    assert page.status_code == 200 and body["recommendations"][0]["id"] in page.get_data(as_text=True)
    assert all(pick["why"] and pick["duration_s"] > 1 for pick in body["recommendations"])   # each says why
    analyse = model.service.library.Library.analyse

    def with_reasons(self, audio):
        analysis = analyse(self, audio)
        return dataclasses.replace(analysis, recommendations=[
            dataclasses.replace(r, reasons=[Reason("tempo", "the same tempo")]) for r in analysis.recommendations])

    monkeypatch.setattr(model.service.library.Library, "analyse", with_reasons)
    html = post(client, "/", song).get_data(as_text=True)
    assert html.count("<li>the same tempo</li>") == 3


def test_a_result_that_is_no_longer_kept_is_404(client):
    response = client.get("/results/" + "0" * 32)
    assert response.status_code == 404 and "no longer kept" in response.get_data(as_text=True)
    for url in ("/results/..%2Fapp", "/results/abc", "/results/" + "0" * 32 + ".ogg"):
        assert client.get(url).status_code == 404


def test_uploads_are_kept_under_generated_names_and_bounded(client, folders, song):
    for _ in range(5):
        assert post(client, "/api/analyze", song, name="../../evil name.ogg").status_code == 200
    kept = sorted(p.name for p in folders["UPLOAD_DIR"].iterdir() if not p.name.endswith(".result.json"))
    results = sorted(p.name for p in folders["UPLOAD_DIR"].iterdir() if p.name.endswith(".result.json"))
    assert len(kept) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}\.ogg", name) for name in kept)
    assert [r.split(".")[0] for r in results] == [k.split(".")[0] for k in kept]   # pruned with their uploads


def test_library_audio_in_a_format_browsers_do_not_play_is_sent_as_wav(client):
    response = client.get("/audio/blues.au01")
    assert response.status_code == 200 and response.mimetype == "audio/wav"
    assert sf.info(io.BytesIO(response.data)).format == "WAV"


@pytest.mark.parametrize("url", ["/audio/no.such.track", "/audio/..%2F..%2Fapp.py", "/audio/%2Fetc%2Fpasswd",
                                 "/uploads/app.py", "/uploads/" + "0" * 32 + ".ogg", "/nowhere"])
def test_unknown_audio_and_paths_are_404(client, url):
    response = client.get(url)
    assert response.status_code == 404 and b"Traceback" not in response.data


BAD_INPUTS = {
    "no file": (None, (400,)),
    "an empty file": (b"", (400,)),
    "bytes that are not audio": (np.random.default_rng(0).bytes(20000), (415,)),
    "a renamed text file": (b"Soundalike test: this is text, not a song.\n" * 200, (415,)),
    "half a second": ("short", (422,)),
    "silence": ("silence", (422,)),
}


def _bad(kind, folders):
    if kind == "truncated-mp3":
        data = mp3_bytes(10.0)
        return data[:len(data) // 3]
    if kind == "truncated-flac":
        data = (folders["AUDIO"] / "rock" / "rock.demo01.flac").read_bytes()
        return data[:len(data) // 2]
    if kind in ("short", "silence"):
        buffer = io.BytesIO()
        y = tone(0.5, 22050) if kind == "short" else np.zeros(22050 * 3, np.float32)
        sf.write(buffer, y, 22050, format="WAV")
        return buffer.getvalue()
    return kind


@pytest.mark.parametrize("what", BAD_INPUTS)
def test_bad_input_gets_its_4xx_in_json_and_in_html(client, folders, what):
    data, statuses = BAD_INPUTS[what]
    data = _bad(data, folders) if isinstance(data, str) else data
    name = "notes.mp3" if what == "a renamed text file" else "song.mp3"
    api = post(client, "/api/analyze", data, name=name)
    assert api.status_code in statuses, (what, api.get_json())
    assert api.is_json and api.get_json()["error"] and api.get_json()["status"] == api.status_code
    message = api.get_json()["error"]   # a sentence that names the file and says what to do
    assert message[0].isupper() and message.endswith(".") and ("Choose" in message or "Post" in message)
    assert what == "no file" or f"“{name}”" in message
    page = post(client, "/", data, name=name)
    assert page.status_code == api.status_code and page.mimetype == "text/html"
    assert api.get_json()["error"] in page.get_data(as_text=True).replace("&#39;", "'")


def test_a_file_over_the_limit_is_413(client):
    too_big = b"\0" * (50 * 1024 * 1024 + 1)
    api = post(client, "/api/analyze", too_big)
    assert api.status_code == 413 and "50 MB" in api.get_json()["error"]
    page = post(client, "/", too_big)
    assert page.status_code == 413 and "50 MB" in page.get_data(as_text=True)


def test_wrong_methods_are_405(client):
    assert client.get("/api/analyze").status_code == 405
    assert client.get("/api/analyze").get_json()["status"] == 405
    assert client.post("/api/health").status_code == 405


def test_an_unexpected_failure_is_a_plain_500_without_a_stack_trace(client, song, monkeypatch):
    def fail(self, audio):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(model.service.library.Library, "analyse", fail)
    for url in ("/api/analyze", "/"):
        response = post(client, url, song)
        assert response.status_code == 500
        text = response.get_data(as_text=True)
        assert "secret internals" not in text and "Traceback" not in text and "went wrong" in text


def test_a_file_of_exactly_the_limit_is_taken_and_judged_on_its_content(client):
    exactly = b"\0" * (50 * 1024 * 1024)
    response = post(client, "/api/analyze", exactly)
    assert response.status_code == 415, response.get_json()


@pytest.mark.parametrize("form", ["1000 parts", "a 600 KB text field"])
def test_form_limits_are_413s_that_say_what_is_wrong(client, song, form):
    fields = ({f"f{i}": "x" for i in range(1000)} if form == "1000 parts" else {"comment": "x" * 600_000})
    response = client.post("/api/analyze", data={"file": (io.BytesIO(song), "song.ogg"), **fields},
                           content_type="multipart/form-data")
    assert response.status_code == 413
    message = response.get_json()["error"]
    assert "form" in message and "MB limit" not in message


@pytest.mark.parametrize("kind", ["wav", "truncated-mp3", "truncated-flac"])
def test_a_truncated_upload_is_analysed_and_flagged(client, folders, kind):
    """Their headers read as audio; the stream then stops short: what decodes is analysed."""
    if kind == "wav":
        wav = io.BytesIO()
        sf.write(wav, tone(8.0, 22050, seed=4), 22050, format="WAV")
        cut = wav.getvalue()[:len(wav.getvalue()) // 2]
        whole = post(client, "/api/analyze", wav.getvalue(), name="whole.wav").get_json()
        assert whole["truncated"] is False
    else:
        cut = _bad(kind, folders)
    response = post(client, "/api/analyze", cut, name="cut")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["truncated"] is True and body["duration_s"] >= 1.0
    if kind == "wav":
        assert abs(body["duration_s"] - 4.0) < 0.1
    page = post(client, "/", cut, name="cut").get_data(as_text=True)
    assert "breaks off before its end" in page


def test_beyond_the_analyses_and_the_waiting_room_a_503_with_retry_after(app, song, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    analyse = model.service.library.Library.analyse

    def slow(self, audio):
        entered.set()
        release.wait(60)
        return analyse(self, audio)

    monkeypatch.setattr(model.service.library.Library, "analyse", slow)
    answers = []

    def send():
        answers.append(post(app.test_client(), "/api/analyze", song))

    first = threading.Thread(target=send)
    first.start()
    assert entered.wait(60)
    others = [threading.Thread(target=send) for _ in range(2)]   # one waits, one is refused
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 60
    while not answers and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(120)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 503], [a.get_json() for a in answers]
    busy = next(a for a in answers if a.status_code == 503)
    assert int(busy.headers["Retry-After"]) >= 1 and "busy" in busy.get_json()["error"]


@pytest.mark.parametrize("kind, served", [("m4a", "audio/mp4"), ("wma", "audio/wav"), ("mp4", "audio/mp4"),
                                          ("mkv", "audio/wav")])
def test_m4a_wma_and_the_audio_of_videos_are_analysed_and_played(client, kind, served):
    data, _, rate = encoded(kind, seconds=4.0, seed=2)
    body = post(client, "/api/analyze", data, name=f"phone recording.{kind}").get_json()
    assert body.get("genre") in GENRES and abs(body["duration_s"] - 4.0) < 0.1, body
    player = client.get(body["upload_url"])
    assert player.status_code == 200 and player.mimetype == served
    if served == "audio/wav":   # browsers do not play WMA or Matroska: the same audio as WAV
        assert abs(sf.info(io.BytesIO(player.data)).duration - 4.0) < 0.1


def test_lengths_are_whole_seconds_rounded_down_as_players_show_them(app):
    with app.test_request_context("/"):
        shown = flask.render_template_string('{% from "_macros.html" import clock %}'
                                             '{{ clock(295.9) }} {{ clock(2.99) }} {{ clock(60.0) }}')
    assert shown == "4:55 0:02 1:00"


def test_the_header_link_and_the_file_input_have_different_names(client, song):
    html = post(client, "/", song).get_data(as_text=True)
    link = re.search(r'<a class="again"[^>]*>([^<]+)</a>', html).group(1)
    label = re.search(r'<label for="file">([^<]+)</label>', html).group(1)
    assert link == "Analyse another song" and label != link


def _result(client, song) -> tuple[str, dict]:
    body = post(client, "/api/analyze", song).get_json()
    return body["result_url"].rsplit("/", 1)[1], body


def test_a_vote_from_the_plain_form_is_kept_shown_and_replaced_by_a_second(client, song):
    result_id, body = _result(client, song)
    pick = body["recommendations"][1]["id"]
    before = client.get("/api/feedback/summary").get_json()
    voted = client.post(f"/results/{result_id}/feedback", data={"pick": pick, "vote": "up"})
    assert voted.status_code == 303 and voted.headers["Location"].endswith(f"#pick-{pick}")
    page = client.get(voted.headers["Location"]).get_data(as_text=True)
    form = re.search(rf'<li class="pick" id="pick-{re.escape(pick)}">.*?</li>\s*(?=<li class="pick"|</ol>)',
                     page, re.S).group(0)
    assert re.search(r'value="up"\s+aria-pressed="true"', form) and "your vote is kept" in form
    assert page.count('aria-pressed="true"') == 1
    client.post(f"/results/{result_id}/feedback", data={"pick": pick, "vote": "down"})   # a change of mind
    after = client.get("/api/feedback/summary").get_json()
    assert after["votes"] == before["votes"] + 1 and after["down"] == before["down"] + 1
    assert after["by_rank"]["2"]["down"] >= 1
    csv = client.get("/api/feedback/votes.csv")
    assert csv.mimetype == "text/csv" and "attachment" in csv.headers["Content-Disposition"]
    rows = [line.split(",") for line in csv.get_data(as_text=True).strip().splitlines()]
    assert rows[0][:4] == ["result", "pick_id", "vote", "rank"]
    assert [result_digest(result_id), pick, "down", "2"] in [r[:4] for r in rows]
    assert result_id not in csv.get_data(as_text=True)   # a result's id opens its upload: never exported


def test_votes_through_the_api_and_what_is_refused(client, song):
    result_id, body = _result(client, song)
    pick = body["recommendations"][0]["id"]
    ok = client.post("/api/feedback", json={"result_id": result_id, "pick_id": pick, "vote": "up"})
    assert ok.status_code == 200 and ok.get_json()["vote"] == "up"
    refused = {
        "no such result": ({"result_id": "0" * 32, "pick_id": pick, "vote": "up"}, 404),
        "not a pick": ({"result_id": result_id, "pick_id": "rock.demo99", "vote": "up"}, 400),
        "not a vote": ({"result_id": result_id, "pick_id": pick, "vote": "maybe"}, 400),
    }
    for what, (data, status) in refused.items():
        response = client.post("/api/feedback", json=data)
        assert response.status_code == status and response.get_json()["error"].endswith("."), what
    page = client.post(f"/results/{result_id}/feedback", data={"pick": pick, "vote": "sideways"})
    assert page.status_code == 400 and page.mimetype == "text/html"


def test_a_vote_sent_by_another_sites_page_is_refused_and_the_pages_own_is_taken(client, song):
    result_id, body = _result(client, song)
    pick = body["recommendations"][0]["id"]
    form = {"pick": pick, "vote": "down"}
    before = client.get("/api/feedback/summary").get_json()["votes"]
    forged = [{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
              {"Sec-Fetch-Site": "same-site", "Origin": "null"},   # a sibling subdomain, under no-referrer
              {"Origin": "https://evil.example"}]                  # a browser without Sec-Fetch-Site
    for headers in forged:
        page = client.post(f"/results/{result_id}/feedback", data=form, headers=headers)
        assert page.status_code == 403 and page.mimetype == "text/html", headers
        assert "not by Soundalike&#39;s own result page, so it was not counted" in page.get_data(as_text=True)
        api = client.post("/api/feedback", json={"result_id": result_id, "pick_id": pick, "vote": "down"},
                          headers=headers)
        assert api.status_code == 403 and "so it was not counted. Open the result on Soundalike" in api.get_json()["error"]
        assert "evil.example" in api.get_json()["error"] or headers.get("Origin") == "null"
    assert client.get("/api/feedback/summary").get_json()["votes"] == before
    # The page's own form (a browser says same-origin; Origin is "null" under no-referrer, or the service's own),
    # and a script without either header, are taken.
    own = [{"Sec-Fetch-Site": "same-origin", "Origin": "null"}, {"Origin": "http://localhost"}, {}]
    for headers in own:
        assert client.post(f"/results/{result_id}/feedback", data=form, headers=headers).status_code == 303, headers
    assert client.get("/api/feedback/summary").get_json()["votes"] == before + 1


def test_a_long_medley_is_searched_whole_and_lists_every_track_in_it(client, folders):
    genres = ["rock", "pop", "jazz", "metal", "blues", "disco", "reggae", "country"]
    clips = [sf.read(folders["AUDIO"] / g / f"{g}.demo01.flac", dtype="float32")[0] for g in genres]
    medley = io.BytesIO()
    sf.write(medley, np.concatenate(clips), 16000, format="FLAC")   # 48 s: its middle 32 s, and 8 s either side
    body = post(client, "/api/analyze", medley.getvalue(), name="medley.flac").get_json()
    searched = body["searched_s"]
    assert searched[0] == [pytest.approx(8.0, abs=0.01), pytest.approx(40.0, abs=0.01)] and body["match"] is None
    assert sorted(searched) == [[0.0, 8.0], [8.0, 40.0], [40.0, 48.0]]
    assert [c["id"] for c in body["contains"]] == [f"{g}.demo01" for g in genres]
    assert not {c["id"] for c in body["contains"]} & {p["id"] for p in body["recommendations"]}
    page = client.get(body["result_url"]).get_data(as_text=True)
    assert "these library tracks" in page and "parts of it searched" not in page


def test_library_tracks_at_the_start_and_end_of_a_long_upload_are_found_and_never_picked(client, folders):
    # Rock's two library clips at either end of 60 s of new rock (not in the library): the picks that
    # would sound most like it, were they not inside it.
    first, last = (sf.read(folders["AUDIO"] / "rock" / f"rock.demo0{v}.flac", dtype="float32")[0] for v in (1, 2))
    middle = synthesise("rock", variant=7, seconds=60.0)
    upload = io.BytesIO()
    sf.write(upload, np.concatenate([first, middle, last]), 16000, format="FLAC")
    body = post(client, "/api/analyze", upload.getvalue(), name="set.flac").get_json()
    assert body["duration_s"] == pytest.approx(72.0, abs=0.01) and body["match"] is None
    assert sum(b - a for a, b in body["searched_s"]) == pytest.approx(72.0, abs=0.01)
    placed = {c["id"]: (c["start_s"], c["end_s"]) for c in body["contains"]}
    assert placed == {"rock.demo01": (pytest.approx(0.0, abs=0.3), pytest.approx(6.0, abs=0.3)),
                      "rock.demo02": (pytest.approx(66.0, abs=0.3), pytest.approx(72.0, abs=0.3))}
    assert len(body["recommendations"]) == 3
    assert not {"rock.demo01", "rock.demo02"} & {p["id"] for p in body["recommendations"]}


def test_a_data_folder_that_cannot_be_written_serves_all_but_votes(folders, song, tmp_path):
    (tmp_path / "a file").write_text("not a folder")
    app = create_app({"DATA_DIR": folders["DATA_DIR"], "UPLOAD_DIR": tmp_path / "uploads", "MIN_PICK_S": 5.0,
                      "WEIGHTS_DIR": from_env().weights_dir, "FEEDBACK_DB": tmp_path / "a file" / "votes.sqlite3"})
    client = app.test_client()
    body = post(client, "/api/analyze", song).get_json()
    page = client.get(body["result_url"]).get_data(as_text=True)
    assert len(body["recommendations"]) == 3 and 'class="vote"' not in page
    refused = client.post("/api/feedback", json={"result_id": body["result_url"].rsplit("/", 1)[1],
                                                 "pick_id": body["recommendations"][0]["id"], "vote": "up"})
    assert refused.status_code == 503 and "does not keep votes" in refused.get_json()["error"]
    assert client.get("/api/feedback/summary").status_code == 503


def test_a_result_kept_by_an_earlier_version_still_shows(app, client, folders, song):
    body = post(client, "/api/analyze", song).get_json()
    result_id = body["result_url"].rsplit("/", 1)[1]
    old = {k: body[k] for k in ("genre", "probabilities", "match", "duration_s", "truncated", "filename", "upload_url")}
    old["recommendations"] = [{k: p[k] for k in ("id", "genre", "distance", "similarity", "duration_s", "why",
                                                 "audio_url")} for p in body["recommendations"]]
    (folders["UPLOAD_DIR"] / f"{result_id}.result.json").write_text(json.dumps(old))
    page = client.get(body["result_url"])
    assert page.status_code == 200 and body["recommendations"][0]["why"][0] in page.get_data(as_text=True)
