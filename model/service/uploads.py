"""The uploads the service keeps: under generated names (never the sender's), at most `max_kept` of them,
each with the result of its analysis beside it (`<upload hex>.result.json`) and, for a format browsers
do not play, its playable copy (`<upload hex>.play.wav`, model.service.playback), pruned together."""
from __future__ import annotations

import contextlib
import json
import re
import logging
import secrets
import threading
import time
from pathlib import Path

import soundfile as sf

from model.atomic import atomic_write, remove_leftovers
from model.audio import av_decode
from model.audio.decoding import AudioError, ByteStream
from model.service.playback import BROWSER_TYPES, COPY_SUFFIX, PlaybackLimits, write_copy

log = logging.getLogger("soundalike.uploads")

# libsndfile's container name -> the extension a kept upload gets (its content decides, not its name).
EXTENSIONS = {"WAV": ".wav", "WAVEX": ".wav", "RF64": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3",
              "AIFF": ".aiff", "AU": ".au", "CAF": ".caf", "W64": ".w64"}
# What a listener may upload, in the order the page names them: extension -> name. The form's
# `accept`, the page's text and the 415 message are all made from this.
FORMATS = {".mp3": "MP3", ".m4a": "M4A", ".aac": "AAC", ".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG",
           ".opus": "Opus", ".wma": "WMA", ".aiff": "AIFF", ".aif": "AIFF", ".au": "AU", ".caf": "CAF",
           ".w64": "W64", ".mp4": "MP4", ".webm": "WebM", ".mkv": "MKV"}
_ID = re.compile(r"^[0-9a-f]{32}\.[a-z0-9]{2,4}$")
_RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
RESULT_SUFFIX = ".result.json"
STALE_TMP_S = 600.0   # a result without its upload older than this was left by a pruner in another process


def format_names() -> str:
    """The formats a listener may upload, for a sentence: "MP3, WAV, ... or W64"."""
    names = list(dict.fromkeys(FORMATS.values()))
    return f"{', '.join(names[:-1])} or {names[-1]}"


def accept_attribute() -> str:
    """The file input's `accept`: every extension, and audio/* for files named otherwise."""
    return ",".join([*FORMATS, "audio/*"])


def audio_extension(data: bytes) -> str | None:
    """The extension for audio bytes, from their container; None when libsndfile reads no audio there."""
    try:
        container = sf.info(ByteStream(data)).format
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return av_decode.probe(data)   # m4a/AAC, WMA, the audio of a video
    return EXTENSIONS.get(container, ".bin")


class Uploads:
    """Kept uploads: at most `max_kept` files and `max_bytes` bytes (their playable copies
    included), the oldest deleted first."""

    def __init__(self, folder: Path, max_kept: int = 200, max_bytes: int = 2000 * 1024 * 1024,
                 playback: PlaybackLimits = PlaybackLimits()) -> None:
        self.folder, self.max_kept, self.max_bytes, self.playback = Path(folder), max_kept, max_bytes, playback
        self._lock = threading.Lock()   # one pruner at a time: requests run on several threads
        self.folder.mkdir(parents=True, exist_ok=True)
        # Half-written uploads and copies of a server that was killed: every one that no live
        # process is writing (atomic_write's lock), whatever its age.
        removed = remove_leftovers(self.folder)
        if removed:
            log.info("removed %d half-written upload file(s) of a server that was stopped", removed)
        self._prune()

    def save(self, data: bytes, extension: str) -> str:
        """Keep `data` under a new random name, with a playable copy where browsers do not play its
        format; returns that name, the upload's id. The oldest uploads beyond `max_kept` files or
        `max_bytes` bytes are deleted."""
        # 128 random bits: nobody guesses another's upload, and the name says nothing of when it came.
        upload_id = f"{secrets.token_hex(16)}{extension}"
        with atomic_write(self.folder / upload_id) as f:
            f.write(data)
        if extension not in BROWSER_TYPES:
            try:
                write_copy(self.folder / upload_id, self._copy_path(upload_id), self.playback)
            except AudioError as error:   # analysed, but not playable: its player says so (404)
                log.warning("no playable copy of upload %s: %s", upload_id, error)
        self._prune()
        return upload_id

    def save_result(self, upload_id: str, result: dict) -> str:
        """Keep the analysis of a kept upload as JSON beside it; returns the result's id (the
        upload's random name without its extension)."""
        with atomic_write(self._result_path(upload_id), "w") as f:
            json.dump(result, f)
        return upload_id.split(".")[0]

    def result(self, result_id: str) -> dict | None:
        """A kept result, or None (pruned with its upload, or never made)."""
        if not _RESULT_ID.match(result_id):
            return None
        try:
            return json.loads(self._result_path(result_id).read_text())
        except FileNotFoundError:
            return None

    def path(self, upload_id: str) -> Path | None:
        """The kept file of an id this class made, or None (a name of any other shape is never a path)."""
        if not _ID.match(upload_id):
            return None
        path = self.folder / upload_id
        return path if path.is_file() else None

    def playable(self, upload_id: str) -> Path | None:
        """What a browser plays of a kept upload: the file itself, or its playable copy; None where
        neither is kept."""
        path = self.path(upload_id)
        if path is None or path.suffix in BROWSER_TYPES:
            return path
        copy = self._copy_path(upload_id)
        return copy if copy.is_file() else None

    def _prune(self) -> None:
        with self._lock:
            kept, companions, copy_bytes = [], [], {}
            for path in self.folder.iterdir():
                if _ID.match(path.name):
                    with contextlib.suppress(FileNotFoundError):   # pruned by another process
                        kept.append((path.stat(), path))
                elif path.name.endswith((RESULT_SUFFIX, COPY_SUFFIX)):
                    companions.append(path)
                    if path.name.endswith(COPY_SUFFIX):
                        with contextlib.suppress(FileNotFoundError):
                            copy_bytes[path.name.split(".")[0]] = path.stat().st_size
            kept.sort(key=lambda item: (item[0].st_mtime_ns, item[1].name), reverse=True)   # newest first
            total = 0
            for count, (stat, path) in enumerate(kept, 1):
                total += stat.st_size + copy_bytes.get(path.name.split(".")[0], 0)
                if count > self.max_kept or total > self.max_bytes:
                    path.unlink(missing_ok=True)
                    self._result_path(path.name).unlink(missing_ok=True)
                    self._copy_path(path.name).unlink(missing_ok=True)
            # A result or copy whose upload is gone (pruned by another process between the writes).
            # Only old ones: a listing taken while an upload and its result are written may miss the upload.
            listed = {path.name.split(".")[0] for _, path in kept}
            for path in companions:
                with contextlib.suppress(FileNotFoundError):
                    if path.name.split(".")[0] not in listed and time.time() - path.stat().st_mtime > STALE_TMP_S:
                        path.unlink()

    def _result_path(self, upload_or_result_id: str) -> Path:
        return self.folder / f"{upload_or_result_id.split('.')[0]}{RESULT_SUFFIX}"

    def _copy_path(self, upload_id: str) -> Path:
        return self.folder / f"{upload_id.split('.')[0]}{COPY_SUFFIX}"
