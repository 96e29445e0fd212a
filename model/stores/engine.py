"""What an engine of `model.stores.ingest` is: something that runs the per-track function over the tracks
to store, wherever it runs them, and hands each result to the one process that writes the store.

`model.stores.local_engine` runs it on this machine's cores, `model.stores.ray_engine` on a Ray cluster;
ingest calls either through `Run`, and neither knows ingest.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Union

from model.stores.collection import Candidate
from model.stores.feature_store import Entry


@dataclass(frozen=True)
class Job:
    """What every worker needs besides its track."""
    mel_root: Path | None   # where the full features files go (None: the store keeps none)
    genres: str             # the genre route (model.stores.collection.GENRE_ROUTES)
    weights_dir: Path
    network: str            # model.network.weights.network_digest of `weights_dir`
    analysis: str = ""      # model.stores.feature_store.analysis_key of this version's parameters


Result = Union[tuple[Entry, bool], str]   # a row and its truncation flag, or why the file was skipped
Record = Callable[[Candidate, Result], None]
Attempt = Callable[[Job, Candidate], Result]   # the per-track function: (job, candidate) -> Result


class Run(Protocol):
    def __call__(self, attempt: Attempt, job: Job, todo: list[Candidate], record: Record,
                 workers: int | None = None, address: str | None = None) -> None:
        """Call `record(candidate, attempt(job, candidate))` for every candidate of `todo`, in this
        process, with `attempt` run by at most `workers` at once (default: every core); `address`: where
        the engine's cluster is, for those that have one."""


class EngineError(RuntimeError):
    """The engine that runs the per-track function could not start (e.g. Ray is not installed)."""


def limit_threads() -> None:
    """One worker per core: nested BLAS or numba threads would only fight over the same cores."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
