"""model.service.uploads: kept uploads bounded in count and bytes; a killed server's half-written files cleaned."""
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from model.service.uploads import Uploads


def test_kept_uploads_are_bounded_in_count_and_in_bytes(tmp_path):
    uploads = Uploads(tmp_path, max_kept=10, max_bytes=3000)
    ids = [uploads.save(bytes(1000), ".wav") for _ in range(5)]
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(ids[-3:])   # three of 1000 bytes fit in 3000
    assert uploads.path(ids[-1]) is not None and uploads.path(ids[0]) is None
    few = Uploads(tmp_path / "few", max_kept=2, max_bytes=10**9)
    ids = [few.save(b"x", ".ogg") for _ in range(4)]
    assert sorted(p.name for p in (tmp_path / "few").iterdir()) == sorted(ids[-2:])


WRITER = """
import sys, time
from pathlib import Path
from model.atomic import atomic_write
with atomic_write(Path(sys.argv[1])) as f:
    f.write(bytes(2 * 1024 * 1024))
    f.flush()
    print("written", flush=True)
    time.sleep(600)
"""


def half_written(target: Path) -> subprocess.Popen:
    """A process in the middle of writing `target` (2 MB written, not yet renamed)."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert writer.stdout.readline() == "written\n"
    return writer


def test_a_killed_servers_half_written_uploads_are_removed_at_the_next_start(tmp_path):
    killed = half_written(tmp_path / f"{'a' * 32}.wav")
    killed.send_signal(signal.SIGKILL)   # kill -9 mid-write: its temporary file stays
    killed.wait()
    live = half_written(tmp_path / f"{'b' * 32}.wav")   # another server process, writing now
    try:
        left = {p.name[1:34] for p in tmp_path.glob(".*.tmp")}
        assert left == {f"{'a' * 32}.", f"{'b' * 32}."}
        Uploads(tmp_path)   # fresh files both: only the one nobody writes goes
        assert {p.name[1:34] for p in tmp_path.glob(".*.tmp")} == {f"{'b' * 32}."}
    finally:
        live.kill()
        live.wait()
    Uploads(tmp_path)
    assert not list(tmp_path.iterdir())


def test_ids_are_random_and_say_nothing_of_the_time(tmp_path):
    uploads = Uploads(tmp_path)
    ids = [uploads.save(b"x", ".wav") for _ in range(20)]
    heads = {i[:8] for i in ids}
    assert len(heads) == 20 and all(len(i.split(".")[0]) == 32 for i in ids)   # no shared time prefix
    assert uploads.path(ids[0]) is not None


def test_a_format_browsers_do_not_play_gets_a_copy_counted_and_pruned_with_it(tmp_path):
    audio = io.BytesIO()
    sf.write(audio, np.zeros((44100, 2), np.float32) + 0.1, 44100, format="AIFF")
    uploads = Uploads(tmp_path, max_kept=10, max_bytes=2 * len(audio.getvalue()) + 1000)
    first = uploads.save(audio.getvalue(), ".aiff")
    copy = uploads.playable(first)
    assert copy is not None and copy != uploads.path(first) and sf.info(copy).duration == pytest.approx(1.0, abs=0.01)
    assert uploads.playable(uploads.save(b"x", ".wav")).suffix == ".wav"   # played as it is
    uploads.save(audio.getvalue(), ".aiff")   # with its copy, over the bytes: the first goes, copy and all
    assert uploads.path(first) is None and not copy.exists()


def test_a_start_prunes_what_a_smaller_bound_no_longer_allows(tmp_path):
    ids = [Uploads(tmp_path).save(bytes(100), ".flac") for _ in range(4)]
    Uploads(tmp_path, max_kept=1)
    assert [p.name for p in tmp_path.iterdir()] == [ids[-1]]
