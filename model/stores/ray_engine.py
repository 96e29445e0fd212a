"""Running the per-track function of `model.stores.ingest` as Ray Data tasks: on a local Ray started
here, or on a Ray cluster (`ray start --head` on one machine, `ray start --address HEAD:6379` on the
others). Ray is an optional extra (`pip install '.[cluster]'`): this module is imported only for it.

Only the driver (the process running preprocess.py) writes the store's rows, so workers need the
project installed and the collection at the same path; with log-mels kept, the store's folder too.
Each task is one track: a worker that dies (a decoder that crashes, the memory killer) is restarted
by Ray and its track tried again, and a track that kills its worker every time is skipped with that
reason, never the whole run.
"""
from __future__ import annotations

import logging
import os
import pickle
import warnings

from model.stores.collection import Candidate
from model.stores.engine import Attempt, EngineError, Job, Record, limit_threads

# Tries of a track after its worker died (Ray retries a task whose worker died, not one that raised:
# the per-track function returns bad audio's reason instead of raising).
MAX_RETRIES = 2
# The object store of a local Ray: rows are a few kB and features files are written by the workers,
# so Ray's default (30 % of memory) would only take memory from the workers.
LOCAL_OBJECT_STORE_BYTES = 100 * 1024 * 1024
_worker_ready = False


def _connect(address: str | None, workers: int | None):
    """Ray, connected to the cluster at `address` or to a local Ray started with `workers` CPUs."""
    try:
        import ray
    except ImportError:
        raise EngineError("the ray engine needs Ray: pip install '.[cluster]'") from None
    # Ray's own log lines go to its session folder; a run's progress is preprocess's own bar.
    quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            # "local": a Ray of this run's own, never a cluster that `ray start` left on this machine.
            ray.init(address="local", num_cpus=workers or os.cpu_count() or 1,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False, **quiet)
    except Exception as error:   # Ray raises ConnectionError, RuntimeError, ValueError... with its own message
        hint = (" (a cluster with token authentication, the default of `ray start` since Ray 2.59, also needs "
                "RAY_AUTH_MODE=token and its token here: docs/catalogue.md)") if address else ""
        raise EngineError(f"Ray could not start{' at ' + address if address else ''}: {error}{hint}") from error
    return ray


def _prepare_worker() -> None:
    """Once per Ray worker process: single-threaded maths, and librosa's numba code from a private cache
    folder seeded with the shared snapshot (model.audio.numba_cache), never compiled into a shared one."""
    global _worker_ready
    if not _worker_ready:
        from model.audio.features import warm_up
        limit_threads()
        warm_up()
        _worker_ready = True


def _task(row: dict, attempt: Attempt, job: Job) -> dict:
    _prepare_worker()
    candidate: Candidate = pickle.loads(row["candidate"])   # with a partial re-analysis's stored row
    # Pickled: a row's arrays (fingerprints of every length) need no Arrow schema of their own.
    return {"n": row["n"], "result": pickle.dumps(attempt(job, candidate))}


def run(attempt: Attempt, job: Job, todo: list[Candidate], record: Record,
        workers: int | None = None, address: str | None = None) -> None:
    """`model.stores.engine.Run` on Ray: call `record(candidate, attempt(job, candidate))` for every
    candidate, `attempt` running in Ray tasks (at most `workers` at once; default: every CPU of the
    cluster). `attempt` must be importable (or registered with cloudpickle) where the workers run."""
    from model.audio.features import warm_up

    ray = _connect(address, workers)
    try:
        from ray.data import DataContext, TaskPoolStrategy

        warm_up()   # publishes librosa's compiled code before a local worker needs it, so none compiles it

        context = DataContext.get_current()
        context.max_errored_blocks = -1   # a block (one track) whose worker died every time is skipped
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)   # its notes on the run; errors still show
        items = [{"n": n, "candidate": pickle.dumps(c)} for n, c in enumerate(todo)]
        with warnings.catch_warnings():
            # Ray 2.60 names no parameter for max_retries but warns about the generic ones; its default for
            # Ray Data tasks (-1) would retry a track that kills its worker for ever.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            dataset = ray.data.from_items(items, override_num_blocks=len(items)).map(
                _task, fn_kwargs={"attempt": attempt, "job": job},
                compute=TaskPoolStrategy(size=workers) if workers else None, num_cpus=1, max_retries=MAX_RETRIES)
        done = set()
        for row in dataset.iter_rows():
            done.add(row["n"])
            record(todo[row["n"]], pickle.loads(row["result"]))
        for n, candidate in enumerate(todo):
            if n not in done:
                record(candidate, f"its worker died on it {1 + MAX_RETRIES} times (a crash in the decoder, "
                                  "or out of memory)")
    finally:
        ray.shutdown()
