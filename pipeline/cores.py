"""A core of its own for one thread while it runs (Linux; elsewhere nothing happens).

Ingest hashes a big file in a thread beside its parsing, and no row of the file is written
before the hash ends; shared with the parsing threads, the hash ended late enough that the
parsing, its buffers full, waited for it. On its own core it ends first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _threads() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return []


def _pin(tid: int, cpus: set[int]) -> None:
    try:
        os.sched_setaffinity(tid, cpus)
    except OSError:
        pass  # a thread that has just ended


@contextmanager
def own_core() -> Iterator[None]:
    """While the block runs, the calling thread has the last allowed core and every other
    thread of the process the others; then every thread gets back all of them."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = set()
    if len(allowed) < 2:
        yield
        return
    me, mine = threading.get_native_id(), {max(allowed)}
    try:
        for tid in _threads():
            _pin(tid, mine if tid == me else allowed - mine)
        yield
    finally:
        done: set[int] = set()
        for _ in range(3):  # again for threads started by a pinned thread meanwhile
            new = set(_threads()) - done
            for tid in new:
                _pin(tid, allowed)
            done |= new
            if not new:
                break
