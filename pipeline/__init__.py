"""relaywatch: find Microsoft 365 tenants relaying spam through EOP, and say block or unblock.

Data flows one way: formats → lake → queries → report → mail.
"""

import os

__version__ = "0.1.0"

# Polars allocates with jemalloc, which by default hands freed pages back to the kernel at
# once; ingest frees and refills gigabytes in parts, so that cost a page fault per page
# again. They are kept 5 s (a 5M-row ingest: 0.35 s less system time than with 1 s); with
# the parts read ahead as formats.STREAM_ROWS and PARTS_AHEAD_PER_CORE set them, a 10M-row
# ingest peaks at 1.61-1.65 GiB (goal 2 GiB). Set before Polars is first imported; a value
# the user set is kept.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:5000,muzzy_decay_ms:5000")


def _heap_for_large_blocks() -> None:
    """glibc maps every block over 32 MB fresh and unmaps it when freed, so each one costs
    a page fault per 4 KB again: transcoding a 5M-row UTF-16 export a 60 MB chunk at a time
    faulted 1.5 M times (3.8 s of system time). Large blocks come from the heap instead,
    which keeps freed memory for the next chunk (0.74 M faults). No effect off glibc."""
    import ctypes

    try:  # os.confstr, not platform.libc_ver: that reads the interpreter's binary (3 ms)
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return
        libc = ctypes.CDLL("libc.so.6")
    except (ValueError, OSError, AttributeError):
        return
    libc.mallopt(-3, 256 * 2**20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 512 * 2**20)  # M_TRIM_THRESHOLD


_heap_for_large_blocks()
