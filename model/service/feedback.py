"""Listeners' votes on picks: a thumbs up or down per result and pick, kept in SQLite.

One vote per (result, pick): voting again replaces it. Each vote is one transaction in write-ahead-log
mode with full synchronisation, so a vote that was answered is on disk, and a server killed mid-vote
(kill -9, power loss) leaves every committed vote and none half-written. At most `max_votes` are kept:
beyond, the oldest are deleted in the same transaction. Several server processes may share the file
(SQLite locks it; a writer waits up to BUSY_TIMEOUT_S).

Result ids give access to an upload, so what leaves the service (the summary, the CSV) names a result
only by a digest of its id.
"""
from __future__ import annotations

import csv
import hashlib
import io
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

VOTES = {"up": 1, "down": -1}
BUSY_TIMEOUT_S = 30.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    result_id TEXT NOT NULL,
    pick_id TEXT NOT NULL,
    vote INTEGER NOT NULL CHECK (vote IN (-1, 1)),
    rank INTEGER NOT NULL,          -- 1 for the closest pick
    pick_genre TEXT NOT NULL,
    genre TEXT NOT NULL,            -- the upload's: the recognised track's, else the model's guess
    percentile REAL,                -- the pick's, as the page showed it
    main_reason TEXT,               -- the kind of the pick's main reason, if it had one
    at REAL NOT NULL,               -- Unix time of the vote
    PRIMARY KEY (result_id, pick_id)
);
CREATE INDEX IF NOT EXISTS votes_at ON votes (at);
"""
CSV_COLUMNS = ("result", "pick_id", "vote", "rank", "pick_genre", "genre", "percentile", "main_reason", "at")


def result_digest(result_id: str) -> str:
    """A result's name outside the service: votes on one result group together, and nobody learns its URL."""
    return hashlib.sha256(result_id.encode()).hexdigest()[:16]


class Feedback:
    def __init__(self, path: Path, max_votes: int = 100000) -> None:
        self.path, self.max_votes = Path(path), max_votes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()   # one connection per thread: sqlite3 connections are not shared
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")   # a vote answered is on disk, not only in the OS's cache
            self._local.db = db
        return db

    def vote(self, result_id: str, pick_id: str, vote: str, rank: int, pick_genre: str, genre: str,
             percentile: float | None = None, main_reason: str | None = None) -> None:
        """Keep a vote ("up" or "down"), replacing this result's earlier vote on this pick."""
        if vote not in VOTES:
            raise ValueError(f"a vote is one of {tuple(VOTES)}, not {vote!r}")
        with _Transaction(self._db()) as db:
            db.execute("INSERT INTO votes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (result_id, pick_id) DO "
                       "UPDATE SET vote = excluded.vote, at = excluded.at",
                       (result_id, pick_id, VOTES[vote], rank, pick_genre, genre, percentile, main_reason, time.time()))
            db.execute("DELETE FROM votes WHERE rowid IN (SELECT rowid FROM votes ORDER BY at DESC, rowid DESC "
                       "LIMIT -1 OFFSET ?)", (self.max_votes,))

    def votes_of(self, result_id: str) -> dict[str, str]:
        """A result's votes: pick id -> "up" or "down"."""
        rows = self._db().execute("SELECT pick_id, vote FROM votes WHERE result_id = ?", (result_id,)).fetchall()
        return {pick: "up" if vote > 0 else "down" for pick, vote in rows}

    def summary(self) -> dict[str, Any]:
        """Counts for the operator: in all, by the pick's rank, by whether it shares the upload's genre,
        and by its main reason."""
        with _Transaction(self._db(), "BEGIN") as db:   # one snapshot for all the counts
            def counts(column: str) -> dict[str, dict[str, int]]:
                rows = db.execute(f"SELECT {column}, SUM(vote > 0), SUM(vote < 0) FROM votes GROUP BY 1 ORDER BY 1")
                return {str(key): {"up": up, "down": down} for key, up, down in rows}

            up, down = db.execute("SELECT COALESCE(SUM(vote > 0), 0), COALESCE(SUM(vote < 0), 0) FROM votes").fetchone()
            return {"votes": up + down, "up": up, "down": down, "max_votes": self.max_votes,
                    "by_rank": counts("rank"),
                    "by_genre": counts("CASE WHEN pick_genre = genre THEN 'same' ELSE 'other' END"),
                    "by_main_reason": counts("COALESCE(main_reason, 'none')")}

    def csv(self) -> str:
        """Every vote kept, oldest first, as CSV (results named by `result_digest`)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        with _Transaction(self._db(), "BEGIN") as db:
            for row in db.execute("SELECT result_id, pick_id, CASE WHEN vote > 0 THEN 'up' ELSE 'down' END, rank, "
                                  "pick_genre, genre, percentile, main_reason, at FROM votes ORDER BY at, rowid"):
                writer.writerow([result_digest(row[0]), *row[1:8],
                                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row[8]))])
        return out.getvalue()

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class _Transaction:
    """`with`: BEGIN IMMEDIATE by default (the write lock taken up front, so two writers never deadlock on
    an upgrade; plain BEGIN for a consistent read), COMMIT on success, ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> None:
        self.db, self.begin = db, begin

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute(self.begin)
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
