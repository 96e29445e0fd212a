"""Running the per-track function of `model.stores.ingest` in worker processes on this machine, one per core."""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed

from model.audio import numba_cache
from model.audio.features import warm_up
from model.stores.collection import Candidate
from model.stores.engine import Attempt, Job, Record, limit_threads


def _init_worker() -> None:
    limit_threads()
    # A worker dies with the process that started it (even one killed with kill -9), instead of
    # finishing its queued tracks for a store nobody will commit them to.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_when_gone, args=(parent.sentinel,), daemon=True).start()


def _exit_when_gone(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def run(attempt: Attempt, job: Job, todo: list[Candidate], record: Record,
        workers: int | None = None, address: str | None = None) -> None:
    """`model.stores.engine.Run` on this machine's processes (`address` is a cluster's: not used here)."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    if workers == 1:
        for c in todo:
            record(c, attempt(job, c))
        return
    if not numba_cache.seeded():
        warm_up()   # compiled once here and shared, rather than by every worker at once
    context = multiprocessing.get_context("spawn" if os.name == "nt" else "forkserver")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
    try:
        futures = {pool.submit(attempt, job, c): c for c in todo}
        for future in as_completed(futures):
            record(futures[future], future.result())
    except BaseException:
        # Interrupted (Ctrl-C, docker stop's SIGTERM) or failed: the tracks not done are dropped at once, where
        # leaving the pool's `with` would wait for every queued one; what was recorded is kept by the writer.
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in multiprocessing.active_children():
            worker.terminate()
        raise
    pool.shutdown()
