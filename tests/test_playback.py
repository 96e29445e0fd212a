"""Playing back uploads in formats browsers do not play costs bounded memory (issue 20): the real
server, long and small uploads of each such container (tests/hostile_audio.py: LONG_QUIET), played
as the page's player and a curious client do (GET, a Range request, HEADs at once)."""
import io
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app import create_app
from conftest import tone, write_audio
from hostile_audio import LONG_QUIET, LONG_QUIET_S, long_quiet
from model.service.playback import COPY_SUFFIX, PLAYBACK_RATE, PlaybackLimits, write_copy
from model.service.settings import from_env
from model.stores.feature_store import Store
from model.stores.ingest import ingest
from serving import multipart, rss_mb, running_server, send, small_store

MAX_PLAYBACK_GROWTH_MB = 300   # the server's peak over what it held before the upload was played


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("playback")
    env = {"SOUNDALIKE_DATA_DIR": str(small_store(root)), "SOUNDALIKE_WEIGHTS_DIR": str(from_env().weights_dir),
           "SOUNDALIKE_MAX_ANALYSES": "1", "SOUNDALIKE_MAX_QUEUED": "4"}
    with running_server(env, workdir=root / "server") as server:
        yield server


def request(server, method: str, path: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection: (status, headers, body), the body read into one buffer
    (a copy is tens of MB: joining bytes chunk by chunk would take longer than the server's close bound)."""
    with socket.create_connection(server.address, timeout=300) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n".encode())
        data = bytearray()
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, bytes(data)
            data += chunk
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        body = bytearray(rest)
        while method != "HEAD" and len(body) < int(fields["content-length"]):
            chunk = sock.recv(1 << 20)
            assert chunk, "closed before the whole body"
            body += chunk
        return int(lines[0].split()[1]), fields, bytes(body)


@pytest.mark.parametrize("kind", list(LONG_QUIET))
def test_playing_back_a_long_upload_costs_bounded_memory(server, kind):
    name, data = long_quiet(kind)
    status, _, answer = send(server, *multipart(data, name))
    assert status == 200, answer
    url = json.loads(answer)["upload_url"]

    before = rss_mb(server.pid)
    Path(f"/proc/{server.pid}/clear_refs").write_text("5")   # VmHWM from now on
    heads = [None] * 3

    def head(i: int) -> None:
        heads[i] = request(server, "HEAD", url)

    threads = [threading.Thread(target=head, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    status, headers, body = request(server, "GET", url)
    partial = request(server, "GET", url, "Range: bytes=0-1\r\n")
    for thread in threads:
        thread.join(300)
    grew = rss_mb(server.pid, "VmHWM") - before

    assert status == 200 and headers["content-type"] == "audio/wav"
    assert headers["content-disposition"].startswith("inline; filename=")
    info = sf.info(io.BytesIO(body))
    assert info.samplerate == PLAYBACK_RATE and info.channels == 1
    assert info.duration == pytest.approx(LONG_QUIET_S, abs=1.0)   # the whole song (the default limit is 20 min)
    assert partial[0] == 206 and partial[2] == body[:2]
    assert all(h[0] == 200 and int(h[1]["content-length"]) == len(body) for h in heads)
    assert grew < MAX_PLAYBACK_GROWTH_MB, f"{kind}: {before:.0f} MB before, peak {grew:.0f} MB above it"


def test_a_copy_stops_at_its_limits(tmp_path):
    rate = 48000
    y = (0.1 * np.sin(2 * np.pi * 440 * np.arange(30 * rate) / rate)).astype(np.float32)
    source = tmp_path / "song.aiff"
    sf.write(source, np.stack([y] * 4, axis=1), rate, format="AIFF")
    assert write_copy(source, tmp_path / "a.wav", PlaybackLimits(max_s=10.0)) == pytest.approx(10.0, abs=0.01)
    # 4 channels: 2 x 48000 x 10 source samples are 5 s of them
    held = write_copy(source, tmp_path / "b.wav", PlaybackLimits(max_source_samples=2 * rate * 10))
    assert held == pytest.approx(5.0, abs=0.01)
    copy, copy_rate = sf.read(tmp_path / "a.wav")
    assert copy_rate == PLAYBACK_RATE and copy.ndim == 1
    assert np.abs(copy).max() == pytest.approx(0.1, abs=0.01)
    assert not list(tmp_path.glob(".*.tmp"))


def test_library_copies_of_files_a_rescan_removed_or_changed_are_removed_at_the_next_start(tmp_path):
    audio, data, uploads = tmp_path / "audio", tmp_path / "data", tmp_path / "uploads"
    for name, seed in (("kept", 1), ("removed", 2), ("edited", 3)):   # AU: browsers do not play it
        write_audio(audio / "blues" / f"{name}.au", tone(4.0, 8000, seed=seed), 8000, format="AU", subtype="PCM_16")
    write_audio(audio / "blues" / "played.wav", tone(4.0, 8000, seed=4), 8000)   # played as it is: no copy
    ingest(audio, data, workers=1, progress=False)
    config = {"DATA_DIR": data, "UPLOAD_DIR": uploads, "WEIGHTS_DIR": from_env().weights_dir}
    ids = {Path(t.source).stem: t.id for t in Store(data).tracks()}

    def play(*names: str) -> set[Path]:
        """Starts the service, plays the tracks named; the copies there are then."""
        client = create_app(config).test_client()
        for name in names:
            response = client.get(f"/audio/{ids[name]}")
            assert response.status_code == 200 and response.mimetype == "audio/wav"
        return set((uploads / "library-copies").glob(f"*{COPY_SUFFIX}"))

    first = play("kept", "removed", "edited", "played")
    assert len(first) == 3
    (audio / "blues" / "removed.au").unlink()
    write_audio(audio / "blues" / "edited.au", tone(5.0, 8000, seed=5), 8000, format="AU", subtype="PCM_16")
    ingest(audio, data, workers=1, progress=False)   # the rescan: one track gone, one changed
    kept = play()
    assert len(kept) == 1 and kept < first   # the unchanged file's copy only
    again = play("kept", "edited")
    assert len(again) == 2 and kept < again   # the edited file gets a new copy; the kept one is used as it is
