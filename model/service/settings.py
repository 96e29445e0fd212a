"""The service's configuration, from SOUNDALIKE_* environment variables.

It imports nothing heavy, so that the server (model/service/server.py) can read its address and limits
from it before the application loads its network."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from model.params import MAX_DURATION_S

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = ROOT / "data"
DEFAULT_WEIGHTS_DIR = ROOT / "weights"
DEFAULT_UPLOAD_DIR = ROOT / "input_data"
# Room for a multipart request's own bytes (boundaries, part headers, a short field or two) beyond
# the file itself, so that a file of exactly the size limit is accepted.
FORM_OVERHEAD_BYTES = 64 * 1024
FEEDBACK_FILE = "feedback.sqlite3"   # in the data folder, unless SOUNDALIKE_FEEDBACK_DB names another file


@dataclass(frozen=True)
class Settings:
    data_dir: Path           # the feature store
    weights_dir: Path        # the network's and the genre head's weights
    upload_dir: Path         # kept uploads
    host: str
    port: int
    features: str            # recommender feature space: chroma | embedding | mix
    scope: str               # recommender search: genre | library
    max_upload_mb: float
    max_uploads: int         # kept uploads beyond this many are deleted, oldest first
    max_uploads_mb: float    # ... and beyond this many MB in all
    max_analyses: int        # uploads decoded and analysed at once: bounds the service's memory
    max_queued: int          # uploads waiting for an analysis; beyond, 503 with Retry-After
    runtime: str             # what runs the network: onnx (ONNX Runtime, CPU) | keras (TensorFlow: GPU hosts)
    playback_max_s: float    # seconds of an upload's playable copy (formats browsers do not play)
    body_budget_mb: float    # request bodies being received, all together; beyond, 503 with Retry-After
    min_pick_s: float        # library tracks shorter than this (seconds) are never picks: picks are songs
    feedback_db: Path | None # listeners' votes on picks (SQLite); None: FEEDBACK_FILE in the data folder
    max_votes: int           # votes kept; beyond, the oldest are deleted

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_body_bytes(self) -> int:
        """The largest request body taken: a form holding a file of `max_file_bytes`."""
        return self.max_file_bytes + FORM_OVERHEAD_BYTES

    @property
    def body_budget_bytes(self) -> int:
        """Bytes of request bodies held at once (in memory or spooled to disk), at least one whole body."""
        return max(int(self.body_budget_mb * 1024 * 1024), self.max_body_bytes)


def from_env(env: Mapping[str, str] = os.environ) -> Settings:
    def get(name: str, default: str) -> str:
        return env.get(f"SOUNDALIKE_{name}") or default

    return Settings(
        data_dir=Path(get("DATA_DIR", str(DEFAULT_DATA_DIR))),
        weights_dir=Path(get("WEIGHTS_DIR", str(DEFAULT_WEIGHTS_DIR))),
        upload_dir=Path(get("UPLOAD_DIR", str(DEFAULT_UPLOAD_DIR))),
        host=get("HOST", "127.0.0.1"),
        port=int(get("PORT", "5000")),
        features=get("FEATURES", "chroma"),
        scope=get("SCOPE", "genre"),
        max_upload_mb=float(get("MAX_UPLOAD_MB", "50")),
        max_uploads=int(get("MAX_UPLOADS", "200")),
        max_uploads_mb=float(get("MAX_UPLOADS_MB", "2000")),
        max_analyses=int(get("MAX_ANALYSES", "2")),
        max_queued=int(get("MAX_QUEUED", "16")),
        runtime=get("RUNTIME", "onnx"),
        playback_max_s=float(get("PLAYBACK_MAX_S", str(MAX_DURATION_S))),
        body_budget_mb=float(get("BODY_BUDGET_MB", "1024")),
        min_pick_s=float(get("MIN_PICK_S", "10")),
        feedback_db=Path(get("FEEDBACK_DB", "")) if get("FEEDBACK_DB", "") else None,
        max_votes=int(get("MAX_VOTES", "100000")),
    )
