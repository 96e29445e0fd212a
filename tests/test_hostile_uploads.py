"""Every hostile upload of tests/hostile_audio.py through Flask's test client: no 5xx, a sentence
for every refusal, and bounded time and memory per request (issue 6)."""
import io
import os
import time
from pathlib import Path

import pytest

from app import create_app
from hostile_audio import EMPTY, NOT_AUDIO, OK, UNUSABLE, hostile_cases
from model.service.settings import from_env
from serving import rss_mb, small_store

CASES = hostile_cases()
MAX_REQUEST_S = 20.0          # CPU seconds per upload (all threads; a loaded machine adds none); the slowest take well under 1 s
MAX_REQUEST_GROWTH_MB = 300   # peak resident memory above what the process held before the request
CLEAR_REFS = Path("/proc/self/clear_refs")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    app = create_app({"DATA_DIR": small_store(root), "UPLOAD_DIR": root / "uploads",
                      "WEIGHTS_DIR": from_env().weights_dir, "MAX_UPLOADS": 3})
    return app.test_client()


def _reset_peak() -> bool:
    """Set the process's peak resident memory (VmHWM) back to what it holds now; False where Linux
    does not let us."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def test_the_corpus_is_large_modest_and_deterministic():
    assert len(CASES) >= 500 and len({c.name for c in CASES}) == len(CASES)
    assert sum(len(c.data) for c in CASES) < 60e6
    again = hostile_cases()
    assert all(a.data == b.data for a, b in zip(CASES, again))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_hostile_upload_gets_its_status_and_a_sentence(client, case):
    measured = _reset_peak()
    before_mb = rss_mb(os.getpid(), "VmRSS")
    start = time.process_time()   # the process's CPU time: what a loaded machine does not inflate
    response = client.post("/api/analyze", data={"file": (io.BytesIO(case.data), case.name)},
                           content_type="multipart/form-data")
    seconds = time.process_time() - start
    body = response.get_json()
    assert response.status_code in {OK, EMPTY, NOT_AUDIO, UNUSABLE}, body
    assert response.status_code in case.expected, body
    if response.status_code == OK:
        assert body["genre"] and body["duration_s"] >= 1.0
        assert case.truncated is None or body["truncated"] is case.truncated
    else:
        message = body["error"]
        assert len(message.split()) >= 4 and "Traceback" not in message and body["status"] == response.status_code
    assert seconds < MAX_REQUEST_S
    if measured:
        growth_mb = rss_mb(os.getpid(), "VmHWM") - before_mb
        assert growth_mb < MAX_REQUEST_GROWTH_MB, f"{growth_mb:.0f} MB"
