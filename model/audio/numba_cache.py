"""Where librosa's numba functions are cached on disk, so that many processes can start at once.

librosa compiles its numba functions on first use (about 25 s on 2 cores) and caches them on disk.
numba's cache is not safe when several processes compile at once (numba issue 10128: the two
files of a `guvectorize` function can come from two processes and disagree, after which every
process that loads them segfaults), and librosa's own cache folder sits in site-packages, which
may be read-only. So no process here ever writes a cache folder that another process reads:

- each process gets a private folder (`run-<pid>-<random>`), seeded with a copy of the shared snapshot
  when there is one, and numba reads and writes only that folder;
- a process that found no snapshot publishes its folder, once its warm-up has compiled everything
  the features use, as the snapshot: a copy renamed into place in one step. A published snapshot
  never changes; a later librosa, numba or Python gets a snapshot of its own (the key below).

The folder holding the snapshots is `SOUNDALIKE_NUMBA_CACHE_DIR`, else `NUMBA_CACHE_DIR`, else the
user's cache folder (`$XDG_CACHE_HOME` or `~/.cache`)/soundalike/numba, else a temporary folder.
"""
from __future__ import annotations

import hashlib
import multiprocessing.util
import os
import shutil
import sys
import tempfile
import warnings
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

BASE_ENV = "SOUNDALIKE_NUMBA_CACHE_DIR"
# Folders named <prefix><pid>-<random>: a process's private cache, and a snapshot being published.
_PREFIXES = ("run-", ".publish-")
# What the features' warm-up compiles: bump it when that grows (2: librosa's tempo estimate), so that a
# snapshot without the new functions is not taken, after which every process would compile them privately.
WARM_UP_VERSION = 2
_run_dir: Path | None = None
_seeded = False


def base_dir() -> Path:
    """The folder of snapshots and private folders (created; falls back to a temporary folder)."""
    named = os.environ.get(BASE_ENV) or os.environ.get("NUMBA_CACHE_DIR")
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates = [Path(named)] if named else []
    candidates += [Path(cache_home) / "soundalike" / "numba",
                   Path(tempfile.gettempdir()) / f"soundalike-numba-{os.getuid() if hasattr(os, 'getuid') else 0}"]
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK | os.X_OK):
                return folder
        except OSError:
            continue
    raise RuntimeError(f"no writable folder for numba's cache among {[str(c) for c in candidates]}")


def snapshot_key() -> str:
    """Names what a snapshot was compiled from: Python, numba, librosa's installed sources, and WARM_UP_VERSION.
    numba checks each cached function against its source file's time stamp and size, so a
    reinstalled librosa must not find the old snapshot (it would compile every time, privately)."""
    librosa_dir = Path(find_spec("librosa").origin).parent
    stamps = sorted((str(p.relative_to(librosa_dir)), p.stat().st_mtime_ns, p.stat().st_size)
                    for p in librosa_dir.rglob("*.py"))
    digest = hashlib.sha256(repr((str(librosa_dir), stamps)).encode()).hexdigest()[:16]
    return (f"py{sys.version_info[0]}{sys.version_info[1]}-numba{metadata.version('numba')}-librosa-{digest}"
            f"-w{WARM_UP_VERSION}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_dead_folders(base: Path) -> None:
    """Folders of processes that were killed before they could remove their own."""
    for prefix in _PREFIXES:
        for folder in base.glob(f"{prefix}*"):
            try:
                pid = int(folder.name[len(prefix):].split("-", 1)[0])
            except ValueError:
                continue
            if not _pid_alive(pid):
                shutil.rmtree(folder, ignore_errors=True)


def configure() -> Path:
    """Point numba at this process's private cache folder. Call before librosa's first computation:
    numba reads its cache folder when librosa's functions are defined, as librosa's modules load.
    Idempotent; returns the folder. A process forked after that shares its parent's folder: start
    workers with spawn or forkserver (as model.stores.ingest does)."""
    global _run_dir, _seeded
    if _run_dir is not None:
        return _run_dir
    base = base_dir()
    # Child processes (a preprocess pool) inherit the base, not this process's private folder.
    os.environ[BASE_ENV] = str(base)
    _remove_dead_folders(base)
    run = Path(tempfile.mkdtemp(prefix=f"{_PREFIXES[0]}{os.getpid()}-", dir=base))
    # Run at exit by the main process and by multiprocessing's workers alike (which skip atexit).
    multiprocessing.util.Finalize(None, shutil.rmtree, args=(run, True), exitpriority=0)
    snapshot = base / snapshot_key()
    if snapshot.is_dir():
        shutil.copytree(snapshot, run, dirs_exist_ok=True)
        _seeded = True
    os.environ["NUMBA_CACHE_DIR"] = str(run)
    if "numba" in sys.modules:   # imported already: its configuration was read, set it there too
        sys.modules["numba"].config.CACHE_DIR = str(run)
    if "librosa.util.utils" in sys.modules:   # loaded with librosa's first numba function
        warnings.warn("librosa computed before model.audio.numba_cache.configure(): its numba cache is "
                      "librosa's own, which is not safe for processes started at once", RuntimeWarning)
    _run_dir = run
    return run


def seeded() -> bool:
    """Whether this process found a snapshot to start from (else its warm-up compiles)."""
    return _seeded


def publish() -> None:
    """After the warm-up: share what this process compiled, if there was no snapshot to seed it."""
    if _run_dir is None or _seeded:
        return
    base = Path(os.environ[BASE_ENV])
    snapshot = base / snapshot_key()
    if snapshot.exists():
        return
    staging = Path(tempfile.mkdtemp(prefix=f"{_PREFIXES[1]}{os.getpid()}-", dir=base))
    try:
        shutil.copytree(_run_dir, staging, dirs_exist_ok=True)
        os.rename(staging, snapshot)   # one step; fails if another process published first
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
