"""A core of its own for a thread (the background hash of a big file)."""

from __future__ import annotations

import os
import threading

import pytest

from pipeline.cores import own_core

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="thread affinity needs Linux and two cores")


def test_the_caller_gets_a_core_the_other_threads_the_rest_then_all_get_all() -> None:
    allowed = os.sched_getaffinity(0)
    started, stop = threading.Event(), threading.Event()
    tids: dict[str, int] = {}

    def other(name: str) -> None:
        tids[name] = threading.get_native_id()
        tids[name + " mask"] = len(os.sched_getaffinity(0))  # what it started with
        started.set()
        stop.wait(10)

    before = threading.Thread(target=other, args=("before",))
    before.start()
    started.wait(10)
    started.clear()
    with own_core():
        mine = os.sched_getaffinity(0)
        theirs = os.sched_getaffinity(tids["before"])
        during = threading.Thread(target=other, args=("during",))  # inherits the caller's
        during.start()
        started.wait(10)
    try:
        assert mine == {max(allowed)}
        assert theirs == allowed - {max(allowed)}
        assert tids["during mask"] == 1
        for tid in (tids["before"], tids["during"], threading.get_native_id()):
            assert os.sched_getaffinity(tid) == allowed  # every thread, even one born inside
    finally:
        stop.set()
        before.join()
        during.join()


def test_the_cores_come_back_when_the_block_fails() -> None:
    allowed = os.sched_getaffinity(0)
    with pytest.raises(OSError), own_core():
        assert os.sched_getaffinity(0) == {max(allowed)}
        raise OSError("the file went away")
    assert os.sched_getaffinity(0) == allowed
