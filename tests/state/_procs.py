"""Process bodies for the lock tests (module level so multiprocessing can run them)."""

from __future__ import annotations

import os
import time
from typing import Any

from contactsync.errors import LockedError
from contactsync.state import StateStore


def hold_forever(url: str, user: str, ready: Any) -> None:
    """Take the lock, say so, and hang until killed (the crashed-holder case)."""
    store = StateStore(url, lock_ttl=60.0, heartbeat=0.2)
    with store.lock(user):
        ready.set()
        time.sleep(600)


def hold_for(url: str, user: str, seconds: float, ready: Any) -> None:
    """Take the lock, say so, hold it a while, release it normally."""
    store = StateStore(url, lock_ttl=1.0, heartbeat=0.2)
    with store.lock(user):
        ready.set()
        time.sleep(seconds)


def critical_sections(url: str, user: str, marker: str, rounds: int, out: Any) -> None:
    """Enter the locked section ``rounds`` times; an existing marker file = two holders."""
    store = StateStore(url, lock_ttl=30.0, heartbeat=0.2)
    overlaps = 0
    entered = 0
    for _ in range(rounds):
        try:
            with store.lock(user, wait=30.0):
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    overlaps += 1
                    continue
                entered += 1
                time.sleep(0.03)
                os.close(fd)
                os.unlink(marker)
        except LockedError:
            pass
    store.close()
    out.put((entered, overlaps))


def open_store(url: str, out: Any) -> None:
    """Open (and so create/migrate) the store; report the version or the error."""
    try:
        store = StateStore(url)
        out.put(store.schema_version)
        store.close()
    except Exception as exc:  # the test shows what went wrong
        out.put(repr(exc))
