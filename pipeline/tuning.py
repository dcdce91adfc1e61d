"""Process-wide memory tuning the command line opts into. Never on import: relaywatch also
runs inside other processes (a Spark executor running its parsers), whose allocator is
theirs to set. `RELAYWATCH_TUNING=off` leaves the process as it is (for measuring).

- Polars allocates with jemalloc, which by default hands freed pages back to the kernel at
  once; ingest frees and refills gigabytes in parts, which then cost a page fault per page
  again. They are kept 5 s. It must be set before Polars is first imported; a value the
  user set is kept.
- glibc maps every block over 32 MB fresh and unmaps it when freed, so each one costs a
  page fault per 4 KB again (a UTF-16 export transcoded 60 MB at a time); large blocks come
  from the heap instead. No effect off glibc.
"""

from __future__ import annotations

import os


def apply() -> None:
    """Tune this process for a relaywatch command (call before Polars is imported)."""
    if os.environ.get("RELAYWATCH_TUNING", "").lower() == "off":
        return
    os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:5000,muzzy_decay_ms:5000")
    _heap_for_large_blocks()


def _heap_for_large_blocks() -> None:
    import ctypes

    try:  # os.confstr, not platform.libc_ver: that reads the interpreter's binary (3 ms)
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return
        libc = ctypes.CDLL("libc.so.6")
    except (ValueError, OSError, AttributeError):
        return
    libc.mallopt(-3, 256 * 2**20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 512 * 2**20)  # M_TRIM_THRESHOLD
