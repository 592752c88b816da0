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


def release() -> bool:
    """Collect cyclic garbage and return free heap pages to the OS; True if trimmed."""
    gc.collect()
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
