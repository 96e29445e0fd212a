"""model.service.admission: a bounded number of analyses at once, a bounded waiting room, then Busy."""
import threading
import time

import pytest

from model.service.admission import Admission, Busy


def test_at_most_running_at_once_and_waiting_beyond_that_then_busy():
    admission = Admission(running=2, waiting=1, typical_s=2.0)
    release, inside, peak = threading.Event(), [], []
    lock = threading.Lock()

    def work():
        with admission.turn():
            with lock:
                inside.append(1)
                peak.append(len(inside))
            release.wait()   # set by the test, however it ends: no clock decides when a turn is over
            with lock:
                inside.pop()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        # Threads starting, not the clock, are waited for; the bound only ends a test that has failed.
        deadline = time.monotonic() + 600
        while admission.admitted < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert admission.admitted == 3
        with pytest.raises(Busy) as refused:
            with admission.turn():
                pass
        # Three admitted, two at a time, each taking about 2 s: come back in about 3 s.
        assert refused.value.retry_after_s == 3
    finally:
        release.set()
    for thread in threads:
        thread.join(600)
        assert not thread.is_alive()
    assert max(peak) == 2 and admission.admitted == 0
    with admission.turn():   # room again
        assert admission.admitted == 1


def test_a_failing_analysis_gives_its_turn_back():
    admission = Admission(running=1, waiting=0)
    with pytest.raises(RuntimeError):
        with admission.turn():
            raise RuntimeError("decoder crashed")
    with admission.turn():
        pass
    assert admission.admitted == 0


def test_nonsense_limits_are_refused():
    with pytest.raises(ValueError):
        Admission(running=0, waiting=4)
