"""Fault injection for the crash tests; inert unless one of these variables is set.

RELAYWATCH_FAULT_AFTER_WRITES=N   SIGKILL at the N-th file write of the run (any stage)
RELAYWATCH_FAULT_AT=STAGE:N       SIGKILL at the N-th file write of a stage: ingest, detect,
                                  report (between writing the temporary file and renaming it)
RELAYWATCH_FAULT_PAUSE=SECONDS    sleep that long once the lake lock is held (concurrency tests)
RELAYWATCH_FAULT_TASK_PAUSE=S     sleep that long as each Spark ingest task starts (tests that kill
                                  an executor or the driver while tasks run)
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

_writes: Counter[str] = Counter()
_stage = ["ingest"]


@contextmanager
def stage(name: str) -> Iterator[None]:
    _stage.append(name)
    try:
        yield
    finally:
        _stage.pop()


def write_point() -> None:
    """Called between writing a temporary file and renaming it into place."""
    now = _stage[-1]
    _writes[now] += 1
    _writes["*"] += 1
    limit = os.environ.get("RELAYWATCH_FAULT_AFTER_WRITES")
    at = os.environ.get("RELAYWATCH_FAULT_AT", "")
    if (limit and _writes["*"] >= int(limit)) or (
            at and at.split(":")[0] == now and _writes[now] >= int(at.split(":")[1])):
        os.kill(os.getpid(), signal.SIGKILL)


def task_point() -> None:
    pause = os.environ.get("RELAYWATCH_FAULT_TASK_PAUSE")
    if pause:
        time.sleep(float(pause))


def locked_point() -> None:
    pause = os.environ.get("RELAYWATCH_FAULT_PAUSE")
    if pause:
        time.sleep(float(pause))
