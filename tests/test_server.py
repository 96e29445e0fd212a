"""End to end: a store of a few shared GTZAN clips, the real server (`python app.py`) on a free loopback
port, real clips uploaded over HTTP."""
import json
import platform
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import shared_clips
from model.params import GENRES
from model.service.settings import from_env
from model.stores.ingest import ingest
from serving import running_server


def request(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers or {}), timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def upload(base: str, path: str, content: bytes, filename: str) -> tuple[int, dict, bytes]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return request(base + path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


@pytest.fixture(scope="module")
def server(shared_gtzan, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    clips = [c for c in shared_clips("full_30s")]
    chosen = [p for p, g in clips if g == "blues"][:4] + [next(p for p, g in clips if g == genre) for genre in GENRES[1:]]
    for path in chosen:   # links, not copies, of the shared clips
        link = root / "source" / path.parent.name / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    summary = ingest(root / "source", root / "data", workers=2, progress=False)
    assert summary.stored == len(chosen), summary.report()
    env = {"SOUNDALIKE_DATA_DIR": str(root / "data"), "SOUNDALIKE_UPLOAD_DIR": str(root / "uploads"),
           "SOUNDALIKE_WEIGHTS_DIR": str(from_env().weights_dir), "SOUNDALIKE_MAX_UPLOAD_MB": "5"}
    with running_server(env, workdir=root) as running:
        yield {"base": running.base, "chosen": chosen, "root": root}


def test_health_over_http(server):
    status, _, body = request(server["base"] + "/api/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["tracks"] == len(server["chosen"])


def test_a_library_clip_uploaded_over_http(server):
    clip = server["chosen"][1]   # blues.00001: a blues store of 4, so the genre's own search excludes it
    status, headers, body = upload(server["base"], "/api/analyze", clip.read_bytes(), clip.name)
    assert status == 200, body
    answer = json.loads(body)
    assert set(answer["probabilities"]) == set(GENRES) and abs(sum(answer["probabilities"].values()) - 1) < 1e-4
    assert answer["genre"] == max(answer["probabilities"], key=answer["probabilities"].get)
    assert (answer["match"]["id"], answer["match"]["genre"]) == (clip.stem, "blues")
    assert abs(answer["duration_s"] - 30.0) < 0.5
    picks = answer["recommendations"]
    assert len(picks) == 3 and clip.stem not in [p["id"] for p in picks]
    for pick in picks:
        status, headers, audio = request(server["base"] + pick["audio_url"])
        assert status == 200 and headers["Content-Type"] == "audio/flac" and audio[:4] == b"fLaC"
    assert headers.get("Server-Timing", "").startswith("app;dur=")


def test_an_unknown_clip_and_the_page_over_http(server):
    clip = next(p for p, g in shared_clips("full_30s") if g == "rock" and p not in server["chosen"])
    status, _, body = upload(server["base"], "/api/analyze", clip.read_bytes(), clip.name)
    assert status == 200 and json.loads(body)["match"] is None
    status, _, page = upload(server["base"], "/", clip.read_bytes(), clip.name)
    html = page.decode()
    assert status == 200 and html.count('<li class="bar') == len(GENRES) and html.count('class="pick"') == 3


def test_bad_input_over_http_is_4xx_and_plain(server):
    status, _, body = upload(server["base"], "/api/analyze", b"just some text\n" * 100, "song.mp3")
    assert status in (415, 422) and "error" in json.loads(body)
    status, _, body = upload(server["base"], "/api/analyze", b"", "song.mp3")
    assert status == 400


def test_malloc_arenas_are_capped_unless_the_environment_sets_them(monkeypatch):
    from model.service.server import fewer_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert fewer_malloc_arenas() is False   # the operator's cap stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    if platform.libc_ver()[0] == "glibc":
        assert fewer_malloc_arenas() is True
