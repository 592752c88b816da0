"""Issue 16: what a quiet cycle of a small user must not pay in the command's process.

``cycle.memory.release`` gives a big step's freed frames back to the OS (issue 15's peak
RSS), but its full garbage collection costs 0.1-0.25 s of CPU under the GIL in a process
holding Prefect, pandas and GX: a step that read a few thousand rows skips it."""

from __future__ import annotations

import gc

import pytest

from contactsync.cycle import memory


def test_release_skips_the_collection_after_a_small_read(monkeypatch: pytest.MonkeyPatch) -> None:
    collections: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(1) or 0)
    assert memory.release(7) is False and memory.release(memory.RELEASE_MIN_ROWS - 1) is False
    assert collections == []
    memory.release(memory.RELEASE_MIN_ROWS)  # a big read (100,000 contacts): collected and trimmed
    memory.release()  # no size given: as before, always
    assert collections == [1, 1]


def test_release_without_collecting_only_trims(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extract steps' garbage goes with its last reference: their release trims the
    heap without the full collection (issue 15: 0.06-0.08 s each that found nothing)."""
    collections: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(1) or 0)
    trimmed = memory.release(memory.RELEASE_MIN_ROWS, collect=False)
    assert collections == []
    assert trimmed is (memory._libc() is not None)


def test_release_returns_what_the_arrow_pool_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Freed Arrow-backed text stays in pyarrow's own pool (mimalloc), which malloc_trim
    does not reach: release asks the pool to give it back (issue 15 goal 3)."""
    pa = pytest.importorskip("pyarrow")
    asked: list[int] = []

    class Pool:
        def release_unused(self) -> None:
            asked.append(1)

    monkeypatch.setattr(pa, "default_memory_pool", lambda: Pool())
    memory.release(7)  # a small read: nothing at all
    assert asked == []
    memory.release(memory.RELEASE_MIN_ROWS, collect=False)
    assert asked == [1]
