"""Hand the memory a step freed back to the operating system (issue 15: the first sync's
peak RSS at 100,000 contacts).

A cycle's steps build and drop frames of 100,000 rows, each column an array of several
hundred kB to MB. glibc serves such blocks from its heap once its mmap threshold has
risen (it rises with every large block freed), and a freed block in the middle of the
heap stays in the process: RSS only grows, and the next step's frames land beside the
last one's garbage. ``malloc_trim(0)`` returns every free page of the heap (not only its
top) with ``madvise``; it costs a few milliseconds and changes no value. Elsewhere than
glibc (macOS, musl) there is nothing to call and :func:`release` does nothing.

:func:`tune_allocator` goes at the cause: with the mmap threshold fixed, those columns are
mmapped and unmapped when freed, so no hole is left to trim (it runs once per process).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from contactsync.model import EMAIL_FIELDS


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


#: glibc's mallopt(3) parameters (malloc.h): M_MMAP_THRESHOLD and M_ARENA_MAX.
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8
#: Blocks from this size up are mmapped, and unmapped when freed: a column of 100,000 rows
#: (0.8 MB of pointers) goes back to the OS with its frame instead of leaving a hole in the
#: heap. Setting it fixes the threshold (glibc's manual, "Malloc Tunable Parameters": the
#: dynamic adjustment, which raised it to the size of every big block freed, is disabled).
MMAP_THRESHOLD = 128 * 1024
#: One arena for every thread: the CRM read runs in a thread beside the Outlook extract
#: (cycle.run._extract_both), and a second arena kept that thread's freed pages apart from
#: the main thread's, so the plan and the loads could not reuse them. The GIL serialises
#: most allocations anyway; numpy and sqlite3 allocate outside it rarely enough.
ARENA_MAX = 1


@lru_cache(maxsize=1)
def tune_allocator() -> bool:
    """Set glibc's malloc up for a cycle's large, short-lived frames, once per process.

    Issue 15 goal 3: the whole first sync at 100,000 contacts peaked at 570.6 MB with
    glibc's defaults and at 506.9 MB with these two settings, for 1.03x its steps' CPU (one
    run, ``bench/allocator_bench.py``, ``bench/results/allocator.json``). Process-wide, which is why it runs at the cycle's start
    (``cycle.run.run_cycle``) and not at import: the CLI, the flows' tasks and the Dask
    workers all get it, a program merely importing the package does not. Where glibc is
    absent (macOS, musl) nothing is set and False is returned; True when both were set.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(libc.mallopt(_M_ARENA_MAX, ARENA_MAX))


#: Below this many rows a step freed too little to give back: skipped, because the full
#: collection costs 0.1-0.25 s CPU under the GIL in a process that holds Prefect, pandas
#: and GX (issue 16: half of a quiet cycle of a small user, once per user).
RELEASE_MIN_ROWS = 10_000


def release(rows: int | None = None, *, collect: bool = True) -> bool:
    """Collect cyclic garbage and return free heap pages to the OS; True if trimmed.

    ``rows``: the size of what the step read (None: always release). ``collect=False``:
    trim only, for a step whose garbage goes with its last reference: after the CRM read
    and the Outlook extract at 100,000 contacts the collection found nothing (0 and 2
    objects) for 0.06-0.08 s of CPU each, while the trim gave back 5-65 MB (issue 15)."""
    if rows is not None and rows < RELEASE_MIN_ROWS:
        return False
    if collect:
        gc.collect()
    _arrow_pool_release()
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def _arrow_pool_release() -> None:
    """Give back what pyarrow's own pool (mimalloc here) holds after Arrow-backed columns
    were freed: ``malloc_trim`` does not reach it. 56 MB of freed Arrow text stayed in the
    process without this, and went in 0.5 ms with it (issue 15 goal 3). Only where pandas
    or a read already imported pyarrow: importing it here would cost a cycle 0.2 s."""
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()


#: Operations whose history row has no "before" values (history.record_history).
_NO_BEFORE = ("create", "create_account", "skip")


def _named(values: pd.Series, ids: set[str]) -> np.ndarray:
    return values.astype(str).isin(ids).to_numpy() & values.notna().to_numpy()


def kept_through_the_loads(
    crm: pd.DataFrame, outlook: pd.DataFrame, actions: pd.DataFrame, conflicts: pd.DataFrame,
    problems: pd.DataFrame | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The parts of the cycle's two side frames that the loads and the history still read,
    so that the whole frames can be freed before the loads (issue 15: a first sync's peak
    is in its loads, with both 100,000-row frames still held for the history at the end).

    Returns (CRM rows, Outlook rows), every column, no record twice:
    - whole rows of the records a write with "before" values names (an update or group
      change with fields: the history's "before"), and of the Outlook contacts an update
      or delete names (the writer reads their stored copy: untouched address lines,
      changeKey, tag);
    - id and emails only (the other columns missing, or absent when no whole row is
      kept) of every other record an action, a conflict or a quarantined record names:
      the history's ``emails`` search column.
    Taken from the plan before any write, so a superset of what the committed writes
    need, with the values as read before the writes (what ``record_history`` wants).
    """
    problem_ids = (set() if problems is None or problems.empty
                   else set(problems["record_id"].dropna().astype(str)))
    op = actions["op"]
    before = actions[(~op.isin(_NO_BEFORE) & actions["fields"].fillna("").astype(str).ne("")).to_numpy()]
    stored = actions[((actions["side"] == "outlook") & op.isin(("update", "delete"))).to_numpy()]
    kept = []
    for frame, key, extra, read in ((crm, "crm_id", problem_ids, before.iloc[:0]),
                                    (outlook, "outlook_id", {r.removeprefix("new:") for r in problem_ids}, stored)):
        whole = set(before[key].dropna().astype(str)) | set(read[key].dropna().astype(str))
        named = whole | set(actions[key].dropna().astype(str)) | set(conflicts[key].dropna().astype(str)) | extra
        ids = frame[key]
        full = _named(ids, whole)
        emails = _named(ids, named) & ~full
        mail_columns = [key, *(c for c in EMAIL_FIELDS if c in frame.columns)]
        # (no whole row wanted, e.g. a first sync: no column beyond the emails either, so
        # the rows cost no pointer per missing value)
        columns = list(frame.columns) if full.any() else mail_columns
        kept.append(pd.concat([frame.loc[full, columns], frame.loc[emails, mail_columns]], ignore_index=True)
                    .reindex(columns=columns))
    return kept[0], kept[1]
