"""Listeners' votes on picks: one per result and pick, bounded, and durable: a server killed (SIGKILL)
while votes are coming in loses none that it answered."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import urllib.error
import urllib.request

import pytest

from model.service.feedback import Feedback, result_digest
from serving import post_upload, running_server, small_store, wav


def test_one_vote_per_result_and_pick_the_newest_kept(tmp_path):
    feedback = Feedback(tmp_path / "votes.sqlite3", max_votes=4)
    feedback.vote("r1", "a", "up", 1, "rock", "rock", 97.0, "notes")
    feedback.vote("r1", "a", "down", 1, "rock", "rock", 97.0, "notes")   # replaces the first
    assert feedback.votes_of("r1") == {"a": "down"}
    for i in range(5):
        feedback.vote(f"r{i + 2}", "b", "up", 2, "pop", "rock")
    summary = feedback.summary()
    assert summary["votes"] == 4 and summary["up"] == 4   # the oldest (r1's) went first
    assert feedback.votes_of("r1") == {} and summary["by_genre"] == {"other": {"up": 4, "down": 0}}
    with pytest.raises(ValueError):
        feedback.vote("r1", "a", "sideways", 1, "rock", "rock")
    feedback.close()
    again = Feedback(tmp_path / "votes.sqlite3", max_votes=4)   # what was committed is there when reopened
    assert again.summary()["votes"] == 4 and result_digest("r6") in again.csv()


def test_votes_from_many_threads_are_all_kept(tmp_path):
    feedback = Feedback(tmp_path / "votes.sqlite3")
    threads = [threading.Thread(target=lambda t=t: [feedback.vote(f"r{t}", f"p{i}", "up", 1, "rock", "rock")
                                                    for i in range(25)]) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert feedback.summary()["votes"] == 100


def _post_json(base: str, path: str, data: dict) -> int:
    request = urllib.request.Request(base + path, data=json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status


def test_a_server_killed_mid_vote_keeps_every_vote_it_answered(tmp_path):
    data = small_store(tmp_path)   # 4 s clips: picks of 3 s or more
    env = {"SOUNDALIKE_DATA_DIR": str(data), "SOUNDALIKE_UPLOAD_DIR": str(tmp_path / "uploads"),
           "SOUNDALIKE_MIN_PICK_S": "3"}
    with running_server(env, workdir=tmp_path / "first") as server:
        pairs = []
        for seed in range(4):
            status, body = post_upload(server, wav(5.0, seed=seed))
            assert status == 200, body
            result_id = body["result_url"].rsplit("/", 1)[1]
            pairs += [(result_id, pick["id"]) for pick in body["recommendations"]]
        assert len(pairs) == 12
        answered: dict[tuple[str, str], str] = {}   # the last vote answered 200, per pair
        in_flight: dict[int, tuple[tuple[str, str], str]] = {}
        lock, enough = threading.Lock(), threading.Event()

        def vote(worker: int) -> None:
            mine = pairs[worker::2]
            for n in range(100000):
                pair, choice = mine[n % len(mine)], "up" if (n // len(mine)) % 2 == 0 else "down"
                in_flight[worker] = (pair, choice)
                try:
                    _post_json(server.base, "/api/feedback", {"result_id": pair[0], "pick_id": pair[1], "vote": choice})
                except (urllib.error.URLError, ConnectionError, OSError):
                    return   # the server is gone
                with lock:
                    answered[pair] = choice
                    del in_flight[worker]
                    if len(answered) == len(pairs) and n >= 30:
                        enough.set()

        workers = [threading.Thread(target=vote, args=(w,)) for w in range(2)]
        for worker in workers:
            worker.start()
        assert enough.wait(300), "the votes did not come through"
        os.kill(server.pid, signal.SIGKILL)   # while both workers are sending votes
        server.process.wait()
        for worker in workers:
            worker.join(120)
        # The file as the killed server left it: whole, and holding every answered vote (or the one in flight).
        db = sqlite3.connect(data / "feedback.sqlite3")
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {(r, p): "up" if v > 0 else "down" for r, p, v in db.execute("SELECT result_id, pick_id, vote FROM votes")}
        db.close()
        assert set(stored) == set(pairs)
        for pair, choice in answered.items():
            allowed = {choice} | {c for p, c in in_flight.values() if p == pair}
            assert stored[pair] in allowed, (pair, stored[pair], allowed)
    # A new server on the same folder counts them all, and takes more.
    with running_server(env, workdir=tmp_path / "second") as server:
        with urllib.request.urlopen(server.base + "/api/feedback/summary", timeout=60) as response:
            assert json.load(response)["votes"] == len(pairs)
        result_id, pick = pairs[0]
        assert _post_json(server.base, "/api/feedback", {"result_id": result_id, "pick_id": pick, "vote": "up"}) == 200
