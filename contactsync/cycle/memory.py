"""Hand the memory a step freed back to the operating system (issue 15: the first sync's
peak RSS at 100,000 contacts).

A cycle's steps build and drop frames of 100,000 rows, each column an array of several
hundred kB to MB. glibc serves such blocks from its heap once its mmap threshold has
risen (it rises with every large block freed), and a freed block in the middle of the
heap stays in the process: RSS only grows, and the next step's frames land beside the
last one's garbage. ``malloc_trim(0)`` returns every free page of the heap (not only its
top) with ``madvise``; it costs a few milliseconds and changes no value. Elsewhere than
glibc (macOS, musl) there is nothing to call and :func:`release` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


#: Below this many rows a step freed too little to give back: skipped, because the full
#: collection costs 0.1-0.25 s CPU under the GIL in a process that holds Prefect, pandas
#: and GX (issue 16: half of a quiet cycle of a small user, once per user).
RELEASE_MIN_ROWS = 10_000


def release(rows: int | None = None) -> bool:
    """Collect cyclic garbage and return free heap pages to the OS; True if trimmed.

    ``rows``: the size of what the step read (None: always release)."""
    if rows is not None and rows < RELEASE_MIN_ROWS:
        return False
    gc.collect()
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
