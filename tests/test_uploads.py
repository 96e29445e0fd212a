"""model.service.uploads: kept uploads bounded in count and bytes; a killed server's half-written files cleaned."""
import os
import time

from model.service.uploads import STALE_TMP_S, Uploads


def test_kept_uploads_are_bounded_in_count_and_in_bytes(tmp_path):
    uploads = Uploads(tmp_path, max_kept=10, max_bytes=3000)
    ids = [uploads.save(bytes(1000), ".wav") for _ in range(5)]
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(ids[-3:])   # three of 1000 bytes fit in 3000
    assert uploads.path(ids[-1]) is not None and uploads.path(ids[0]) is None
    few = Uploads(tmp_path / "few", max_kept=2, max_bytes=10**9)
    ids = [few.save(b"x", ".ogg") for _ in range(4)]
    assert sorted(p.name for p in (tmp_path / "few").iterdir()) == sorted(ids[-2:])


def test_a_killed_servers_half_written_uploads_are_removed_at_the_next_start(tmp_path):
    stale = tmp_path / f".{'a' * 32}.wav.x1y2.tmp"
    fresh = tmp_path / f".{'b' * 32}.wav.z3w4.tmp"   # perhaps another server process writing it now
    for leftover in (stale, fresh):
        leftover.write_bytes(b"half an upload")
    old = time.time() - STALE_TMP_S - 60
    os.utime(stale, (old, old))
    Uploads(tmp_path)
    assert not stale.exists() and fresh.exists()


def test_a_start_prunes_what_a_smaller_bound_no_longer_allows(tmp_path):
    ids = [Uploads(tmp_path).save(bytes(100), ".flac") for _ in range(4)]
    Uploads(tmp_path, max_kept=1)
    assert [p.name for p in tmp_path.iterdir()] == [ids[-1]]
