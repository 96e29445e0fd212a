"""preprocess.py and the store: GTZAN's layouts, bad files, resuming, kill safety, parameter checks."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, tone, write_audio
from model.params import N_CHROMA, N_MELS, PATCH_FRAMES
from model.stores.collection import UNSORTED, discover
from model.stores.feature_store import MANIFEST, Store, StoreError
from model.stores.ingest import ingest


def make_collection(root, genres=("blues", "rock"), per_genre=2, ext=".wav", seconds=2.5, sr=22050, **kwargs):
    for g in genres:
        for i in range(per_genre):
            write_audio(root / g / f"{g}.{i:05d}{ext}", tone(seconds, sr, seed=hash((g, i)) % 1000), sr, **kwargs)
    return root


def assert_readable(store: Store) -> None:
    tracks = store.tracks()
    assert store.chroma_summaries(tracks).shape == (len(tracks), 3 * N_CHROMA)
    assert all(len(f.hashes) == len(f.times) > 0 for f in store.fingerprints(tracks))
    for track in tracks if store.keeps_mel else []:
        features = store.load(track)
        assert features["mel"].shape[1] == N_MELS and features["chroma"].shape[0] == N_CHROMA


@pytest.mark.parametrize("layout", ["Data/genres_original", "kaggle-data-folder", "genres", "."])
def test_finds_gtzan_in_its_real_layouts(tmp_path, layout):
    top = tmp_path / "gtzan"
    inner = {"Data/genres_original": "Data/genres_original", "kaggle-data-folder": "Data/genres_original",
             "genres": "genres", ".": "."}[layout]
    ext, kwargs = (".au", {"format": "AU", "subtype": "PCM_16"}) if layout == "genres" else (".wav", {})
    make_collection(top / inner, ext=ext, **kwargs)
    source = top / "Data" if layout == "kaggle-data-folder" else top
    if layout == "kaggle-data-folder":  # the folder holding genres_original
        source = top / "Data"
    candidates, passed = discover(source)
    assert [(c.genre, c.id) for c in candidates] == [
        ("blues", "blues.00000"), ("blues", "blues.00001"), ("rock", "rock.00000"), ("rock", "rock.00001")]
    assert passed == []


def test_loose_files_repeated_names_and_non_audio(tmp_path):
    make_collection(tmp_path, genres=("jazz",), per_genre=1)
    write_audio(tmp_path / "loose.flac", tone(2.0), 22050)
    write_audio(tmp_path / "jazz" / "album" / "jazz.00000.flac", tone(2.0), 22050)  # same name, nested
    (tmp_path / "jazz" / "notes.txt").write_text("liner notes")
    candidates, passed = discover(tmp_path)
    # No file is lost to a repeated name: the one nearest the top keeps its name, the other its path.
    assert {(c.genre, c.id) for c in candidates} == {("jazz", "jazz.00000"), ("jazz", "jazz~album~jazz.00000"),
                                                     (UNSORTED, "loose")}
    assert passed == []


def test_builds_stores_per_genre_and_a_rerun_stores_nothing(tmp_path):
    source = make_collection(tmp_path / "src", genres=("blues", "classical", "metal"), ext=".flac")
    summary = ingest(source, tmp_path / "data", workers=2, progress=False)
    assert (summary.stored, summary.already, summary.skipped) == (6, 0, [])
    store = Store(tmp_path / "data")
    assert store.genres == ["blues", "classical", "metal"] and len(store) == 6
    track = store.tracks("metal")[0]
    assert track.source.endswith("metal.00000.flac") and abs(track.duration_s - 2.5) < 0.01
    assert len(track.content_hash) == 64
    assert_readable(store)
    # A 2.5 s clip is shorter than one patch: stored, to be padded at prediction.
    assert store.load(track)["mel"].shape[0] < PATCH_FRAMES
    manifest = json.loads((tmp_path / "data" / MANIFEST).read_text())
    assert manifest["params"]["sample_rate"] == 16000 and "librosa" in manifest["versions"]
    again = ingest(source, tmp_path / "data", workers=2, progress=False)
    assert (again.stored, again.already) == (0, 6)
    write_audio(source / "metal" / "metal.00009.flac", tone(3.0, seed=9), 22050)
    assert ingest(source, tmp_path / "data", workers=1, progress=False).stored == 1


def test_bad_files_are_reported_and_skipped_and_the_run_goes_on(tmp_path):
    source = make_collection(tmp_path / "src", genres=("jazz",), per_genre=2)
    (source / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(100))
    (source / "jazz" / "jazz.00060.wav").write_bytes(b"")
    write_audio(source / "jazz" / "jazz.00061.wav", np.zeros(22050 * 3, np.float32), 22050)
    write_audio(source / "jazz" / "jazz.00062.wav", tone(0.4), 22050)
    summary = ingest(source, tmp_path / "data", workers=2, progress=False)
    assert summary.stored == 2
    reasons = {os.path.basename(path): reason for path, reason in summary.skipped}
    assert set(reasons) == {"jazz.00054.wav", "jazz.00060.wav", "jazz.00061.wav", "jazz.00062.wav"}
    assert "silent" in reasons["jazz.00061.wav"] and "at least" in reasons["jazz.00062.wav"]
    assert "jazz.00054.wav" in summary.report()


def test_a_truncated_file_is_stored_on_what_decodes_and_reported(tmp_path):
    source = make_collection(tmp_path / "src", genres=("jazz",), per_genre=1, seconds=6.0)
    whole = (source / "jazz" / "jazz.00000.wav").read_bytes()
    (source / "jazz" / "jazz.00001.wav").write_bytes(whole[:len(whole) // 2])
    summary = ingest(source, tmp_path / "data", workers=1, progress=False)
    assert summary.stored == 2 and summary.truncated == [str(source / "jazz" / "jazz.00001.wav")]
    assert "jazz.00001.wav: stored on what decodes" in summary.report()
    assert abs(Store(tmp_path / "data").find("jazz.00001").duration_s - 3.0) < 0.05


def test_a_store_built_with_other_parameters_is_a_clear_error(tmp_path):
    ingest(make_collection(tmp_path / "src", per_genre=1), tmp_path / "data", workers=1, progress=False)
    manifest_path = tmp_path / "data" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["params"]["hop_length"] = 512
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="hop_length=512"):
        Store(tmp_path / "data")
    with pytest.raises(StoreError, match="no feature store"):
        Store(tmp_path / "nowhere")


def test_a_store_of_the_whole_track_chromagrams_before_is_refused(tmp_path):
    # What a store built before the chromagram became the middle excerpt's recorded (feature version 1).
    manifest = {"format": 1, "versions": {}, "params": {
        "feature_version": 1, "sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 96,
        "log_mel_scale": 10000.0, "patch_frames": 187, "chroma_n_fft": 4096, "chroma_hop": 512, "n_chroma": 12}}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"has format 1, this version reads format 2: rebuild it"):
        Store(tmp_path)
    # The same parameters in this format's manifest: the differing parameters are named.
    Store(tmp_path / "now", create=True)
    current = json.loads((tmp_path / "now" / MANIFEST).read_text())
    (tmp_path / MANIFEST).write_text(json.dumps({**current, "params": {**current["params"], **manifest["params"],
                                                                       "excerpt_s": None}}))
    with pytest.raises(StoreError, match=r"feature_version=1 \(needs 2\), excerpt_s=None .*run preprocess.py on its collection again"):
        Store(tmp_path)


def test_cli_prints_a_summary_and_fails_cleanly_on_a_missing_source(tmp_path):
    source = make_collection(tmp_path / "src", per_genre=1)
    run = subprocess.run([sys.executable, "preprocess.py", str(source), "--data", str(tmp_path / "d")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "stored 2 tracks" in run.stdout and "tracks/s" in run.stdout and "preprocess" in run.stderr
    missing = subprocess.run([sys.executable, "preprocess.py", str(tmp_path / "none"), "--data", str(tmp_path / "d")],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = subprocess.run([sys.executable, "preprocess.py", str(tmp_path / "empty"), "--data", str(tmp_path / "e")],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert empty.returncode == 1 and "no audio files" in empty.stderr


def _stored(data) -> int:
    """Tracks in the shards right now (read while a writer may be adding or merging them)."""
    ids = set()
    for shard in data.glob("*/part-*.parquet"):
        try:
            ids.update(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
        except FileNotFoundError:   # merged meanwhile: its rows are in a newer shard
            continue
    return len(ids)


class PacedRun:
    """preprocess.py under tests/paced_preprocess.py: it stops at start-up and at every shard write (the
    shard in its temporary file) until `resume()`, so that a kill lands where the test means it to."""

    def __init__(self, args: list[str]) -> None:
        pauses_r, pauses_w = os.pipe()
        resume_r, resume_w = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "tests/paced_preprocess.py", str(pauses_w), str(resume_r), "preprocess.py", *args],
            cwd=REPO, pass_fds=(pauses_w, resume_r), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        os.close(pauses_w)
        os.close(resume_r)
        self.pauses, self.resumes = os.fdopen(pauses_r), os.fdopen(resume_w, "w", buffering=1)

    def next_pause(self) -> str | None:
        """The point where the run now waits ("start", "shard"), or None once it has ended."""
        return self.pauses.readline().strip() or None

    def resume(self) -> None:
        self.resumes.write("\n")

    def run_until(self, point: str, data: Path, stored: int = 0) -> bool:
        """Resumes the run until it waits at `point` with at least `stored` tracks in the store at `data`
        (it waits there); False if the run ended first."""
        while (at := self.next_pause()) is not None:
            if at == point and _stored(data) >= stored:
                return True
            self.resume()
        return False

    def run_to_end(self) -> None:
        """Lets the run go on through every pause until it has ended."""
        while self.next_pause() is not None:
            self.resume()

    def close(self) -> None:
        self.process.wait()
        self.pauses.close()
        try:
            self.resumes.close()
        except BrokenPipeError:
            pass


@pytest.mark.parametrize("keep_mel", ["--keep-mel", "--no-keep-mel"])
def test_kill_9_at_any_moment_leaves_a_readable_store_that_the_next_run_completes(tmp_path, keep_mel):
    source = make_collection(tmp_path / "src", genres=("blues", "disco", "pop", "rock"), per_genre=10, seconds=6.0)
    data = tmp_path / "data"
    command = ["preprocess.py", str(source), "--data", str(data), "--workers", "2", keep_mel]
    partial = []
    # Kills set by the run's progress, not by the clock: at start-up; with a shard half-written (in its
    # temporary file) as soon as the store holds 0, 5 and 15 tracks; and just after a shard's write, once
    # it holds 25 (wherever the run has got to by then: renaming, merging, adding rows, even done). A shard
    # holds one genre's rows (10 at most), so the kills at 5 and 15 land with 0 < stored < 40.
    for kill_at, stored_by_then, mid_write in (("start", 0, True), ("shard", 0, True), ("shard", 5, True),
                                               ("shard", 15, True), ("shard", 25, False)):
        run = PacedRun(command[1:])
        paused = run.run_until(kill_at, data, stored_by_then)
        if paused:
            if not mid_write:
                run.resume()
            os.killpg(run.process.pid, signal.SIGKILL)  # the workers too
        run.close()
        assert paused, "the run ended before it could be killed"
        if (data / MANIFEST).exists():
            store = Store(data)
            assert_readable(store)
            partial.append(len(store))
    assert len(partial) == 4 and all(0 < n < 40 for n in partial[1:3]), f"a kill did not land mid-run: {partial}"
    final = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    store = Store(data)
    assert len(store) == 40 and store.keeps_mel == (keep_mel == "--keep-mel")
    assert_readable(store)
    assert not list(data.rglob("*.tmp"))
    assert len(list(data.glob("*/features/*.npz"))) == (40 if store.keeps_mel else 0)


def _session(sid: int) -> list[int]:
    """Processes of a session (Linux /proc): a killed run's pool workers and forkserver would be here."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _session_after_exit(sid: int) -> list[int]:
    """The session's processes once they have had their chance to exit: polled until none is left (the bound
    is only there to end a failing test, not to wait for progress)."""
    deadline = time.monotonic() + 120
    while (left := _session(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_kill_9_of_preprocess_alone_takes_its_workers_and_the_next_run_drops_their_stray_features(tmp_path):
    source = make_collection(tmp_path / "src", genres=("blues", "rock"), per_genre=12, seconds=6.0)
    data = tmp_path / "data"
    command = ["preprocess.py", str(source), "--data", str(data), "--workers", "2"]
    run = PacedRun(command[1:])
    # Stopped with a shard half-written once 3 tracks are stored: that shard's tracks have their features
    # files and no row (strays), and the workers are alive, with tracks still to do.
    assert run.run_until("shard", data, 3), "the run ended before it could be killed"
    os.kill(run.process.pid, signal.SIGKILL)   # the main process only, as a user's kill -9 would
    run.close()
    # The workers exit as soon as they see their parent gone.
    left = _session_after_exit(run.process.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes of the killed run still alive: {left}"
    final = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    store = Store(data)
    assert len(store) == 24
    named = {store.features_path(t.genre, t.id) for t in store.tracks()}
    assert set(data.glob("*/features/*.npz")) == named
    assert not list(data.rglob("*.tmp"))


def test_features_no_table_row_names_are_removed_by_the_next_run(tmp_path):
    source = make_collection(tmp_path / "src", per_genre=1)
    ingest(source, tmp_path / "data", workers=1, progress=False)
    stray = tmp_path / "data" / "rock" / "features" / "rock.00099.npz"
    stray.write_bytes(b"written by a worker whose run was killed")
    write_audio(source / "rock" / "rock.00001.wav", tone(2.0, seed=5), 22050)
    assert ingest(source, tmp_path / "data", workers=1, progress=False).stored == 1
    assert not stray.exists()


def test_one_writer_at_a_time(tmp_path):
    source = make_collection(tmp_path / "src", per_genre=1)
    first = Store(tmp_path / "data", create=True)
    with first.writer():
        with pytest.raises(StoreError, match="another process is writing"):
            ingest(source, tmp_path / "data", workers=1, progress=False)
    stale = Store(tmp_path / "data")
    ingest(source, tmp_path / "data", workers=1, progress=False)
    with stale.writer():  # taking the lock catches up with what the other writer stored
        assert len(stale) == 2


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_sigterm_stops_a_run_at_once_keeping_what_it_stored_and_the_next_run_completes(tmp_path):
    source = make_collection(tmp_path / "src", genres=("blues", "rock"), per_genre=6, seconds=6.0)
    data = tmp_path / "data"
    command = ["preprocess.py", str(source), "--data", str(data), "--workers", "2"]
    run = PacedRun(command[1:])
    assert run.run_until("shard", data, 2), "the run ended before it could be stopped"
    os.kill(run.process.pid, signal.SIGTERM)   # what docker stop sends (to the main process only)
    run.run_to_end()   # the rows recorded so far are written on the way out
    run.close()
    assert run.process.returncode == 130
    # The pool's workers are ended, not left to finish the queued tracks.
    assert not _session_after_exit(run.process.pid)
    store = Store(data)
    assert_readable(store)
    assert 2 <= len(store) < 12
    final = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    assert f"{len(store)} already stored" in final.stdout and len(Store(data)) == 12


def _rescan_changes(source: Path, data: Path, genres: tuple[str, ...]) -> None:
    """A file added, one changed and one removed per genre; and every stored row's chroma of other parameters,
    as a store built before a new chroma recipe is (its manifest records them, its rows name none)."""
    for n, genre in enumerate(genres):
        write_audio(source / genre / f"{genre}.00090.wav", tone(6.0, seed=90 + n), 22050)
        write_audio(source / genre / f"{genre}.00000.wav", tone(7.0, seed=70 + n), 22050)
        (source / genre / f"{genre}.00001.wav").unlink()
    manifest = json.loads((data / MANIFEST).read_text())
    manifest["params"]["chroma_hop"] = 1024
    (data / MANIFEST).write_text(json.dumps(manifest))
    for shard in data.glob("*/part-*.parquet"):
        table = pq.read_table(shard)
        column = table.schema.get_field_index("analysis")
        pq.write_table(table.set_column(column, "analysis", pa.nulls(table.num_rows, pa.string())), shard)


def _rows_of(data: Path) -> dict[str, tuple]:
    """Each track's row but when it was written: its record, chroma summary, fingerprint, probabilities, embedding."""
    store = Store(data)
    tracks = store.tracks()
    return {t.id: (dataclasses.replace(t, written_ns=0), s.tolist(), f.hashes.tolist(), f.times.tolist(), p, e)
            for t, s, f, p, e in zip(tracks, store.chroma_summaries(tracks), store.fingerprints(tracks),
                                     store.vectors(tracks, "probabilities"), store.vectors(tracks, "embedding"))}


def test_kill_9_during_a_rescan_leaves_a_readable_store_that_the_next_run_completes_as_a_clean_rescan(tmp_path):
    genres = ("blues", "disco", "pop", "rock")
    source = make_collection(tmp_path / "src", genres=genres, per_genre=6, seconds=6.0)
    data, clean = tmp_path / "data", tmp_path / "clean"
    ingest(source, data, workers=2, progress=False, log_mel=False)
    _rescan_changes(source, data, genres)
    shutil.copytree(data, clean)
    command = ["preprocess.py", str(source), "--data", str(data), "--workers", "2"]
    # Each run is killed at its second shard write (the shard in its temporary file): the first is in place,
    # so each run leaves some of the rescan done and some not, on a machine of any speed. A rescan writes a
    # shard per genre at least (its last flush), so the first run cannot end before.
    done = []
    for _ in range(3):
        run = PacedRun(command[1:])
        shards = 0
        while (point := run.next_pause()) is not None:
            shards += point == "shard"
            if shards == 2:
                os.killpg(run.process.pid, signal.SIGKILL)
                break
            run.resume()
        run.close()
        if point is None:   # a later run had less than two shards left to write: it finished
            break
        store = Store(data, rescan=True)
        assert_readable(store)
        done.append(sum(not store.stale_parts(t) for t in store.tracks()))
        # Rows of the old parameters remain: the store is not read as if it were of these.
        with pytest.raises(StoreError, match="chroma_hop=1024"):
            Store(data)
    assert done and 0 < done[0] < 24, f"the first kill did not land mid-rescan: {done}"
    final = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    ingest(source, clean, workers=2, progress=False)
    killed, unkilled = _rows_of(data), _rows_of(clean)
    assert len(killed) == 24 and killed.keys() == unkilled.keys()
    for track_id, (track, summary, hashes, times, probabilities, embedding) in killed.items():
        other = unkilled[track_id]
        assert (track, summary, hashes, times) == other[:4], track_id
        np.testing.assert_allclose(probabilities, other[4], atol=1e-6)
        np.testing.assert_allclose(embedding, other[5], atol=1e-6)
    assert json.loads((data / MANIFEST).read_text())["params"] == json.loads((clean / MANIFEST).read_text())["params"]
    assert not list(data.rglob("*.tmp"))
