"""Writing files so that a crash at any moment leaves either the old file or the new one."""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_write(target: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `target`; on success it is flushed, synced and renamed over it.
    The writer holds a lock on the temporary file until it is renamed (or removed): a file that nobody
    holds was left by a writer that died (`remove_leftovers`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
    owner = os.dup(fd)   # holds the lock past the file object's close, until the rename
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        os.close(owner)


def remove_leftovers(folder: Path, older_than_s: float = 0.0, name: str = "") -> int:
    """Delete temporary files that a killed writer left in `folder` (those last written more than
    `older_than_s` seconds ago; only those of the file `name`, if given); returns how many. A file
    that a live writer holds (`atomic_write`'s lock) is never deleted, whatever its age."""
    removed = 0
    cutoff = time.time() - older_than_s
    for leftover in folder.glob(f".{name}*{TMP_SUFFIX}"):
        try:
            if older_than_s and leftover.stat().st_mtime > cutoff:
                continue
            if _remove_unowned(leftover):
                removed += 1
        except FileNotFoundError:   # removed meanwhile (its writer finished, or another cleaner)
            continue
    return removed


def _remove_unowned(path: Path) -> bool:
    """Delete `path` unless a live process holds its lock; whether it was deleted."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        path.unlink()   # while locked: its writer, if any, is gone
        return True
    finally:
        os.close(fd)
