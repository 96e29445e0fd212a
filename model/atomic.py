"""Writing files so that a crash at any moment leaves either the old file or the new one."""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_write(target: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `target`; on success it is flushed, synced and renamed over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_leftovers(folder: Path, older_than_s: float = 0.0, name: str = "") -> int:
    """Delete temporary files that a killed writer left in `folder` (those last written more than
    `older_than_s` seconds ago; only those of the file `name`, if given); returns how many."""
    removed = 0
    cutoff = time.time() - older_than_s
    for leftover in folder.glob(f".{name}*{TMP_SUFFIX}"):
        try:
            if older_than_s and leftover.stat().st_mtime > cutoff:
                continue
            leftover.unlink()
        except FileNotFoundError:   # removed meanwhile (its writer finished, or another cleaner)
            continue
        removed += 1
    return removed
