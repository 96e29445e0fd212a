"""The uploads the service keeps: under generated names (never the sender's), at most `max_kept` of them."""
from __future__ import annotations

import io
import re
import threading
import uuid
from pathlib import Path

import soundfile as sf

from model.atomic import atomic_write

# libsndfile's container name -> the extension a kept upload gets (its content decides, not its name).
EXTENSIONS = {"WAV": ".wav", "WAVEX": ".wav", "RF64": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3",
              "AIFF": ".aiff", "AU": ".au", "CAF": ".caf", "W64": ".w64"}
_ID = re.compile(r"^[0-9a-f]{32}\.[a-z0-9]{2,4}$")


def audio_extension(data: bytes) -> str | None:
    """The extension for audio bytes, from their container; None when libsndfile reads no audio there."""
    try:
        container = sf.info(io.BytesIO(data)).format
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    return EXTENSIONS.get(container, ".bin")


class Uploads:
    def __init__(self, folder: Path, max_kept: int = 200) -> None:
        self.folder, self.max_kept = Path(folder), max_kept
        self._lock = threading.Lock()   # one pruner at a time: requests run on several threads

    def save(self, data: bytes, extension: str) -> str:
        """Keep `data` under a new random name; returns that name, the upload's id. The oldest
        uploads beyond `max_kept` are deleted."""
        upload_id = uuid.uuid4().hex + extension
        with atomic_write(self.folder / upload_id) as f:
            f.write(data)
        self._prune()
        return upload_id

    def path(self, upload_id: str) -> Path | None:
        """The kept file of an id this class made, or None (a name of any other shape is never a path)."""
        if not _ID.match(upload_id):
            return None
        path = self.folder / upload_id
        return path if path.is_file() else None

    def _prune(self) -> None:
        with self._lock:
            kept = [p for p in self.folder.iterdir() if _ID.match(p.name)]
            kept.sort(key=lambda p: p.stat().st_mtime_ns)
            for old in kept[:max(0, len(kept) - self.max_kept)]:
                old.unlink(missing_ok=True)
