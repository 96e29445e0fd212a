"""The real server under load: 32 uploads at once. Every one is answered (200, or 503 with Retry-After
beyond the analyses running and waiting), and the server's memory stays bounded. And its log."""
import json
from pathlib import Path

import pytest

from model.params import GENRES
from serving import burst, multipart, rss_mb, running_server, send, small_store, wav

CONCURRENT = 32
# What 32 uploads at once may add to the idle server's resident memory: the analyses running at
# once (2) hold their samples and features, the rest wait in files. Measured: about 150 MB.
MAX_GROWTH_MB = 500


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = small_store(tmp_path_factory.mktemp("load"))
    with running_server({"SOUNDALIKE_DATA_DIR": str(data), "SOUNDALIKE_MAX_ANALYSES": "2",
                         "SOUNDALIKE_MAX_QUEUED": "16"}) as running:
        yield running


def test_the_start_up_log_says_what_an_operator_needs_and_no_more(server):
    log = server.log_path.read_text(errors="replace")
    for chatter in ("oneDNN", "cpu_feature_guard", "absl::InitializeLog", "rebuild TensorFlow", "Traceback"):
        assert chatter not in log, log
    assert "serving http://127.0.0.1:" in log and len(log.splitlines()) <= 5, log


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads memory from /proc")
def test_32_concurrent_uploads_are_all_answered_in_bounded_memory(server):
    clips = [multipart(wav(30.0, seed=i)) for i in range(CONCURRENT)]
    send(server, *clips[0])   # the first request's one-time costs are not load
    idle = rss_mb(server.pid, "VmRSS")
    result = burst(server, clips)
    refused = 0
    for (status, headers, body), (final_status, _, final_body) in zip(result.first, result.final):
        answer = json.loads(body)
        if status == 503:
            assert int(headers["retry-after"]) >= 1 and "busy" in answer["error"]
            refused += 1
        else:
            assert status == 200, answer
            assert set(answer["probabilities"]) == set(GENRES) and len(answer["recommendations"]) == 3
        assert final_status == 200, final_body   # a refused upload is answered when it comes back
    assert server.process.poll() is None
    assert result.peak_mb - idle < MAX_GROWTH_MB, f"idle {idle:.0f} MB, peak {result.peak_mb:.0f} MB"
    print(f"idle {idle:.0f} MB, peak {result.peak_mb:.0f} MB, {refused} of {CONCURRENT} refused at first")
