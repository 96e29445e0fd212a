"""preprocess.py, paused by the test that runs it at points of its own progress (tests/test_preprocess.py).

    python tests/paced_preprocess.py PAUSES_FD RESUME_FD preprocess.py SOURCE [options]

At start-up, and whenever a shard of the store is written to its temporary file but not yet renamed into
place, the run writes a line ("start", "shard") to the file descriptor PAUSES_FD and waits for a line on
RESUME_FD. The test kills it there, or lets it go on: its kills land at the same points of the run on a
machine of any speed, where a clock's would not (a fast machine finishes between two polls)."""
from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import pyarrow.parquet as pq

pauses_fd, resume_fd, script, *args = sys.argv[1:]
for fd in (int(pauses_fd), int(resume_fd)):
    os.set_inheritable(fd, False)   # not the pool's workers': the test sees end of file when the run is gone
pauses, resume = os.fdopen(int(pauses_fd), "w", buffering=1), os.fdopen(int(resume_fd))


def pause(point: str) -> None:
    pauses.write(point + "\n")
    if not resume.readline():   # the test has gone
        os._exit(1)


write_table = pq.write_table


def paused_write_table(table, where, *a, **k) -> None:
    write_table(table, where, *a, **k)
    pause("shard")


pq.write_table = paused_write_table
sys.path.insert(0, str(Path(script).resolve().parent))
sys.argv = [script, *args]
pause("start")
runpy.run_path(script, run_name="__main__")
