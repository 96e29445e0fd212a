"""Kept results (model.service.uploads): beside their upload, read back by id, pruned with it."""
import os
import time

from model.service.uploads import STALE_TMP_S, Uploads


def test_a_result_is_kept_beside_its_upload_and_read_back(tmp_path):
    uploads = Uploads(tmp_path)
    upload_id = uploads.save(b"audio", ".ogg")
    result_id = uploads.save_result(upload_id, {"genre": "rock", "filename": "“a” song.ogg"})
    assert upload_id.startswith(result_id) and len(result_id) == 32
    assert uploads.result(result_id) == {"genre": "rock", "filename": "“a” song.ogg"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([upload_id, f"{result_id}.result.json"])


def test_ids_of_any_other_shape_are_never_paths(tmp_path):
    uploads = Uploads(tmp_path / "u")
    (tmp_path / "secret.result.json").write_text("{}")
    for bad in ("../secret", "0" * 31, "0" * 32 + ".ogg", "G" * 32, ""):
        assert uploads.result(bad) is None
    assert uploads.result("0" * 32) is None   # the right shape, never made


def test_results_are_pruned_with_their_uploads(tmp_path):
    uploads = Uploads(tmp_path, max_kept=2)
    ids = []
    for n in range(4):
        ids.append(uploads.save(b"x" * 10, ".wav"))
        uploads.save_result(ids[-1], {"n": n})
    uploads.save(b"y", ".wav")   # the next save prunes the oldest result's upload
    assert [uploads.result(i.split(".")[0]) for i in ids] == [None, None, None, {"n": 3}]
    assert len(list(tmp_path.glob("*.result.json"))) == 1


def test_an_old_result_without_its_upload_is_removed_a_new_one_is_left(tmp_path):
    """Another process may prune an upload between its write and its result's write."""
    old, new = tmp_path / f"{'a' * 32}.result.json", tmp_path / f"{'b' * 32}.result.json"
    old.write_text("{}")
    new.write_text("{}")
    long_ago = time.time() - STALE_TMP_S - 60
    os.utime(old, (long_ago, long_ago))
    Uploads(tmp_path)
    assert not old.exists() and new.exists()
