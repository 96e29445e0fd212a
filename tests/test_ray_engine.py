"""preprocess.py --engine ray: the local engine's store from Ray Data tasks, a track that kills its worker
skipped with its reason, and a clear message where Ray is not installed. Skipped where Ray cannot start."""
import dataclasses
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import preprocess
from conftest import shared_clips
from model.network.weights import network_digest
from model.service.settings import from_env
from model.stores.collection import discover
from model.stores.feature_store import Store
from model.stores.engine import EngineError, Job
from model.stores.ingest import attempt, ingest
from test_preprocess import make_collection


def ray_or_skip(run):
    """`run()`, or a skip where Ray is not installed or cannot start on this machine."""
    pytest.importorskip("ray.data")
    try:
        return run()
    except EngineError as error:
        pytest.skip(f"Ray cannot start here: {error}")


def test_without_ray_preprocess_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)   # `import ray` fails as where it is not installed
    source = make_collection(tmp_path / "src", per_genre=1)
    assert preprocess.main([str(source), "--data", str(tmp_path / "data"), "--engine", "ray"]) == 2
    error = capsys.readouterr().err
    assert "pip install '.[cluster]'" in error and "Traceback" not in error


def test_the_ray_engine_builds_the_store_the_local_engine_builds(tmp_path, shared_gtzan):
    source = tmp_path / "src"
    by_genre: dict[str, list[Path]] = {}
    for path, genre in shared_clips():
        by_genre.setdefault(genre, []).append(path)
    for genre, paths in by_genre.items():   # each genre's first and last clip: 30 s, 15 s and 2-3 s ones
        for path in (paths[0], paths[-1]):
            (source / genre).mkdir(parents=True, exist_ok=True)
            os.symlink(path, source / genre / path.name)
    (source / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(100))   # as Kaggle's
    local = ingest(source, tmp_path / "local", workers=2, progress=False)
    ray = ray_or_skip(lambda: ingest(source, tmp_path / "ray", workers=2, progress=False, engine="ray"))
    assert ray.stored == local.stored == 20 and sorted(ray.skipped) == sorted(local.skipped)
    assert len(ray.skipped) == 1 and "jazz.00054.wav" in ray.skipped[0][0]
    a, b = Store(tmp_path / "local"), Store(tmp_path / "ray")
    tracks = a.tracks()
    # The same rows, but for when each was written.
    assert [dataclasses.replace(t, written_ns=0) for t in b.tracks()] == \
           [dataclasses.replace(t, written_ns=0) for t in tracks]
    assert np.allclose(b.chroma_summaries(tracks), a.chroma_summaries(tracks), atol=1e-6)
    for x, y in zip(a.fingerprints(tracks), b.fingerprints(tracks)):   # landmarks (hash, time) in common
        common = Counter(zip(x.hashes.tolist(), x.times.tolist())) & Counter(zip(y.hashes.tolist(), y.times.tolist()))
        assert sum(common.values()) >= 0.99 * max(len(x.hashes), len(y.hashes)) > 0
    for track in tracks[::5]:   # the features files the workers wrote
        assert np.allclose(b.load(track)["mel"], a.load(track)["mel"], atol=1e-4)
    assert ingest(source, tmp_path / "ray", progress=False, engine="ray").already == 20   # resumed: nothing to do


def _crashing(job, candidate):
    if candidate.id == "crash":
        os._exit(1)   # as a decoder that segfaults takes its worker down with it
    return attempt(job, candidate)


def test_a_track_that_kills_its_worker_is_skipped_with_its_reason_and_the_run_goes_on(tmp_path):
    ray = pytest.importorskip("ray")
    from model.stores import ray_engine

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers cannot import tests/
    source = make_collection(tmp_path / "src", genres=("rock",), per_genre=3)
    os.link(source / "rock" / "rock.00000.wav", source / "rock" / "crash.wav")
    todo, _ = discover(source)
    results = {}
    weights = from_env().weights_dir
    job = Job(None, "folders", weights, network_digest(weights))
    ray_or_skip(lambda: ray_engine.run(_crashing, job, todo, lambda c, r: results.__setitem__(c.id, r), workers=2))
    assert set(results) == {c.id for c in todo}
    assert "worker died on it 3 times" in results.pop("crash")
    assert all(isinstance(result, tuple) for result in results.values())
