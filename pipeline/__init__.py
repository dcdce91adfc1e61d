"""relaywatch: find Microsoft 365 tenants relaying spam through EOP, and say block or unblock.

Data flows one way: formats → lake → queries → report → mail.
"""

import os

__version__ = "0.1.0"

# Polars allocates with jemalloc, which by default hands freed pages back to the kernel at
# once; ingest frees and refills gigabytes in parts, so that cost a page fault per page
# again. They are kept 1 s: 5 s saved another 0.65 s of system time on a 5M-row ingest
# (3%), but held ~250 MB more at the peak, and a 10M-row file went over 2 GiB. Set before
# Polars is first imported; a value the user set is kept.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:1000,muzzy_decay_ms:1000")
