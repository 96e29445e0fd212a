"""The headers the application sets (issue 20): security headers on every route, a Content-Disposition
that any library file name fits in, and a relative Location for the redirect of a `//` path."""
import io
import re
from urllib.parse import unquote

import pytest
import soundfile as sf

from app import create_app
from conftest import tone, write_audio
from model.service.headers import SECURITY_HEADERS, content_disposition
from model.service.settings import from_env
from model.stores.feature_store import Store
from model.stores.ingest import ingest

# Names a listener's collection may hold: other scripts, a newline, quotes and what looks like a header.
NAMES = {
    "blues": ["Кино - Группа\nкрови.au", "plain.wav"],
    "rock": ['a "quoted";\r\nX-Evil: 1.wav', "日本の歌.aiff", "plain rock.wav"],
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("names")
    for genre, names in NAMES.items():
        for seed, name in enumerate(names):
            kind = {".au": ("AU", 8000), ".aiff": ("AIFF", 22050), ".wav": ("WAV", 22050)}[name[name.rindex("."):]]
            write_audio(root / "audio" / genre / name, tone(4.0, kind[1], seed=seed), kind[1], format=kind[0],
                        subtype="PCM_16")
    ingest(root / "audio", root / "data", workers=1, progress=False)
    return create_app({"DATA_DIR": root / "data", "UPLOAD_DIR": root / "uploads",
                       "WEIGHTS_DIR": from_env().weights_dir})


def filename_star(header: str) -> str:
    """The name an RFC 6266 client reads: filename* (RFC 8187) where given."""
    match = re.search(r"filename\*=UTF-8''([^;\s]*)", header)
    assert match, header
    return unquote(match.group(1))


def test_every_library_file_is_played_whatever_its_name(app):
    client = app.test_client()
    played = set()
    for track in Store(app.config["DATA_DIR"]).tracks():
        response = client.get(f"/audio/{track.id}")
        assert response.status_code == 200, response.get_data(as_text=True)
        header = response.headers["Content-Disposition"]
        assert "\n" not in header and "\r" not in header and header.isascii()
        name = track.source.rsplit("/", 1)[1]
        if name.endswith((".au", ".aiff")):   # played from its copy, a WAV
            assert response.mimetype == "audio/wav" and sf.info(io.BytesIO(response.data)).samplerate == 22050
            name = name[:name.rindex(".")] + ".wav"
        assert filename_star(header) == name
        played.add(name)
    assert len(played) == 5


@pytest.mark.parametrize("name", ["plain.wav", "Кино - Группа\nкрови.wav", 'a "b";\r\nX: 1', "", "..", "日本の歌"])
def test_content_disposition_fits_any_name(name):
    header = content_disposition(name)
    assert header.isascii() and "\n" not in header and "\r" not in header
    assert filename_star(header) == name if name else "filename*=UTF-8''" in header
    fallback = re.search(r'filename="([^"]*)"', header).group(1)
    assert fallback and '"' not in fallback and "\\" not in fallback


ROUTES = [("GET", "/"), ("GET", "/api/health"), ("GET", "/favicon.ico"), ("GET", "/static/app.js"),
          ("GET", "/static/style.css"), ("GET", "/results/" + "0" * 32), ("GET", "/uploads/" + "0" * 32 + ".wav"),
          ("GET", "/audio/nothing"), ("POST", "/"), ("POST", "/api/analyze"), ("GET", "/nowhere"),
          ("DELETE", "/api/health"), ("GET", "/api//health")]


@pytest.mark.parametrize("method, path", ROUTES)
def test_every_answer_carries_the_security_headers(app, method, path):
    response = app.test_client().open(path, method=method)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"].split("style-src-attr")[0]


def test_the_redirect_of_a_double_slash_names_no_host(app):
    response = app.test_client().get("/", query_string="x=1", headers={"Host": "evil.example"},
                                     environ_overrides={"PATH_INFO": "//api//health"})
    assert response.status_code == 308
    assert response.headers["Location"] == "/api/health?x=1"
