"""librosa's numba cache with many processes at once (model.audio.numba_cache).

numba's on-disk cache is corrupted when processes compile the same functions at once (numba issue
10128), after which every run segfaults. These tests start from an empty cache folder each time."""
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, tone, write_audio

# librosa's own cache would be in its package folder (site-packages), which may be read-only.
LIBROSA_DIR = Path(subprocess.check_output(
    [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('librosa').origin)"], text=True).strip()).parent


def cache_env(base: Path, **extra: str) -> dict:
    # NUMBA_CACHE_DIR too: code that left the cache to numba would then share this empty folder.
    return dict(os.environ, SOUNDALIKE_NUMBA_CACHE_DIR=str(base), NUMBA_CACHE_DIR=str(base), **extra)


def librosa_cache_files() -> set[Path]:
    return {p for p in LIBROSA_DIR.rglob("*") if p.suffix in (".nbi", ".nbc")}


def run_python(code: str, env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600, **kwargs)


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("collection")
    for genre in ("blues", "rock"):
        for i in range(3):
            write_audio(root / genre / f"{genre}.{i:05d}.wav", tone(4.0, 22050, seed=10 * i + len(genre)), 22050)
    return root


@pytest.mark.parametrize("trial", range(2))
def test_two_parallel_preprocess_runs_from_an_empty_cache_then_a_later_run(tmp_path, collection, trial):
    """What broke: two runs of 2 workers each, started together from an empty cache, then any run."""
    before = librosa_cache_files()
    env = cache_env(tmp_path / "numba")
    runs = [subprocess.Popen([sys.executable, "preprocess.py", str(collection), "--data", str(tmp_path / name),
                              "--workers", "2"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
            for name in ("a", "b")]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-3000:]
        assert "stored 6 tracks" in output, output[-3000:]
    later = subprocess.run([sys.executable, "preprocess.py", str(collection), "--data", str(tmp_path / "c"),
                            "--workers", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert later.returncode == 0 and "stored 6 tracks" in later.stdout, later.stdout + later.stderr[-3000:]
    assert librosa_cache_files() == before   # nothing written beside librosa
    # Every process removed its private folder; one snapshot was published.
    left = sorted(p.name for p in (tmp_path / "numba").iterdir())
    assert len(left) == 1 and left[0].startswith("py"), left


WARM_THEN_EVERYTHING = """
import os, numpy as np
from pathlib import Path
from model.audio import features, numba_cache
features.warm_up()
run = Path(os.environ['NUMBA_CACHE_DIR'])   # this process's private folder, set by the warm-up
assert run.name.startswith('run-'), run
files = lambda: sorted(str(p.relative_to(run)) for p in run.rglob('*'))
compiled = files()
y = np.random.default_rng(1).uniform(-0.5, 0.5, 70 * 16000)
for signal in (y, y.astype(np.float32), y[:16000 * 5]):
    features.log_mel(signal); features.chromagram(signal); features.log_mel_patches(signal)
    features.tempo(features.log_mel(signal))
assert files() == compiled, set(files()) - set(compiled)
print('seeded' if numba_cache.seeded() else 'compiled', len(compiled))
"""


def test_the_warm_up_compiles_all_the_features_use_and_the_next_process_starts_from_it(tmp_path):
    env = cache_env(tmp_path / "numba")
    first = run_python(WARM_THEN_EVERYTHING, env)
    assert first.returncode == 0 and first.stdout.startswith("compiled"), first.stderr[-3000:]
    second = run_python(WARM_THEN_EVERYTHING, env)
    assert second.returncode == 0 and second.stdout.startswith("seeded"), second.stderr[-3000:]


def test_folders_of_killed_processes_are_removed(tmp_path):
    base = tmp_path / "numba"
    dead = base / "run-999999999-abc"   # no such pid
    (dead / "x").mkdir(parents=True)
    publishing = base / ".publish-999999999-abc"
    publishing.mkdir()
    result = run_python("from model.audio import numba_cache; print(numba_cache.configure())", cache_env(base))
    assert result.returncode == 0, result.stderr
    assert not dead.exists() and not publishing.exists()


def test_with_no_writable_cache_folder_at_home_a_temporary_one_serves(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith("CACHE_DIR")}
    env.update(HOME="/proc/no-home", XDG_CACHE_HOME="/proc/no-cache", TMPDIR=str(tmp_path))   # /proc takes no folders
    result = run_python("from model.audio import features, numba_cache; features.warm_up(); print(numba_cache.base_dir())", env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith(str(tmp_path / "soundalike-numba-"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to run as another user")
def test_an_unprivileged_user_with_no_home_and_a_site_packages_it_cannot_write(tmp_path):
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    env = {k: v for k, v in os.environ.items() if not k.endswith("CACHE_DIR")}
    env.update(HOME="/nonexistent", XDG_CACHE_HOME="/nonexistent")
    try:
        probe = run_python("import model", env, user=nobody.pw_uid, group=nobody.pw_gid)
    except PermissionError as error:
        pytest.skip(f"user nobody cannot run this Python: {error}")
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot read the checkout or the virtualenv: {probe.stderr[-300:]}")
    before = librosa_cache_files()
    result = run_python("from model.audio import features, numba_cache; features.warm_up(); "
                        "print(numba_cache.base_dir())", env, user=nobody.pw_uid, group=nobody.pw_gid)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "soundalike-numba-" in result.stdout   # the temporary folder's fall-back
    assert librosa_cache_files() == before
