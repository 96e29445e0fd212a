"""The real server under load: 32 uploads at once. Every one is answered (200, or 503 with Retry-After
beyond the analyses running and waiting), and the server's memory stays bounded. And its log."""
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from model.params import GENRES
from serving import multipart, read_response, running_server, small_store, wav

CONCURRENT = 32
# What 32 uploads at once may add to the idle server's resident memory: the analyses running at
# once (2) hold their samples and features, the rest wait in files. Measured: about 150 MB.
MAX_GROWTH_MB = 500


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def send(server, body: bytes, content_type: str) -> tuple[int, dict, bytes]:
    request = (f"POST /api/analyze HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    with socket.create_connection(server.address, timeout=300) as sock:
        sock.sendall(request)
        return read_response(sock)


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
    Path(f"/proc/{server.pid}/clear_refs").write_text("5")   # the peak (VmHWM) starts again from here
    answers: list[tuple[int, tuple[int, dict, bytes]]] = []
    start = threading.Barrier(CONCURRENT)

    def upload(i: int) -> None:
        start.wait()
        answers.append((i, send(server, *clips[i])))

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    peak = rss_mb(server.pid, "VmHWM")
    assert len(answers) == CONCURRENT
    refused = []
    for i, (status, headers, body) in answers:
        answer = json.loads(body)
        if status == 503:
            assert int(headers["retry-after"]) >= 1 and "busy" in answer["error"]
            refused.append(i)
            continue
        assert status == 200, answer
        assert set(answer["probabilities"]) == set(GENRES) and len(answer["recommendations"]) == 3
    deadline = time.monotonic() + 300
    for i in refused:   # a refused upload is answered when it comes back
        status, headers, body = send(server, *clips[i])
        while status == 503 and time.monotonic() < deadline:
            time.sleep(int(headers["retry-after"]))
            status, headers, body = send(server, *clips[i])
        assert status == 200, body
    assert server.process.poll() is None
    assert peak - idle < MAX_GROWTH_MB, f"idle {idle:.0f} MB, peak {peak:.0f} MB"
    print(f"idle {idle:.0f} MB, peak {peak:.0f} MB, {len(refused)} of {CONCURRENT} refused at first")
