"""The per-user lock: one cycle per user at a time, never blocked for long by a dead one."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from contactsync.errors import LockedError
from contactsync.state import StateStore, locks_table

from . import _procs
from .conftest import OTHER, USER

# fork: fast; the children open their own StateStore (no engine exists in the parent then)
CTX = mp.get_context("fork")


def test_second_holder_is_refused_with_exit_code_4(store: StateStore) -> None:
    with store.lock(USER):
        other = StateStore(store.url, lock_ttl=1.5)
        t0 = time.monotonic()
        with pytest.raises(LockedError) as info, other.lock(USER, wait=0.3):
            pass
        assert 0.25 < time.monotonic() - t0 < 3
        assert info.value.exit_code == 4
        assert "running" in info.value.describe()
        with other.lock(OTHER):  # another user is not blocked
            pass
        other.close()
    with store.lock(USER):  # released on exit: free again
        pass
    assert store.lock_holder(USER) is None


def test_lock_is_released_when_the_body_raises(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.lock(USER):
        raise RuntimeError("cycle failed")
    assert store.lock_holder(USER) is None


def test_heartbeat_keeps_a_live_holder_past_the_ttl(store: StateStore) -> None:
    with store.lock(USER) as held:
        first = store.lock_holder(USER)["heartbeat_at"]
        time.sleep(store.lock_ttl + 0.6)  # longer than the TTL: only the heartbeat saves it
        assert store.lock_holder(USER)["heartbeat_at"] > first
        other = StateStore(store.url, lock_ttl=store.lock_ttl)
        with pytest.raises(LockedError), other.lock(USER):
            pass
        other.close()
        assert not held.lost


def test_stale_holder_on_another_host_is_taken_over_after_the_ttl(store: StateStore) -> None:
    now = time.time()
    with store.engine.begin() as conn:
        conn.execute(locks_table.insert().values(
            crm_user=USER, host="elsewhere.example", pid=1, proc_start=None, token="t" * 32,
            acquired_at=now - 10, heartbeat_at=now))
    with pytest.raises(LockedError), store.lock(USER, wait=0.2):
        pass
    t0 = time.monotonic()
    with store.lock(USER, wait=5.0):
        waited = time.monotonic() - t0
        assert store.lock_holder(USER)["host"] != "elsewhere.example"
    assert 0.5 < waited < 3.0


def test_a_holder_that_lost_the_lock_notices(store: StateStore) -> None:
    with store.lock(USER) as held:
        with store.engine.begin() as conn:  # someone took it over (e.g. after a long pause)
            conn.execute(sa.update(locks_table).values(token="x" * 32))
        time.sleep(0.6)
        assert held.lost


def test_dead_holder_is_taken_over_at_once(store_url: str) -> None:
    """A cycle killed with SIGKILL leaves its lock row; on the same host its pid is gone,
    so the next cycle takes the lock at once instead of waiting out the 2-minute TTL."""
    ready = CTX.Event()
    proc = CTX.Process(target=_procs.hold_forever, args=(store_url, USER, ready))
    proc.start()
    try:
        assert ready.wait(60), "the holder process never took the lock"
        store = StateStore(store_url, lock_ttl=120.0)
        with pytest.raises(LockedError), store.lock(USER):
            pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        t0 = time.monotonic()
        with store.lock(USER, wait=5.0):
            assert time.monotonic() - t0 < 1.0
            assert store.lock_holder(USER)["pid"] == os.getpid()
        store.close()
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()


def test_waiting_cycle_gets_the_lock_when_the_holder_finishes(store_url: str) -> None:
    ready = CTX.Event()
    proc = CTX.Process(target=_procs.hold_for, args=(store_url, USER, 1.0, ready))
    proc.start()
    try:
        assert ready.wait(60)
        store = StateStore(store_url, lock_ttl=120.0)
        with store.lock(USER, wait=10.0):
            assert store.lock_holder(USER)["pid"] == os.getpid()
        store.close()
    finally:
        proc.join(10)


def test_two_processes_never_hold_the_lock_together(store_url: str, tmp_path: Path) -> None:
    StateStore(store_url).close()  # schema in place before the race
    marker = str(tmp_path / "inside")
    out = CTX.Queue()
    procs = [CTX.Process(target=_procs.critical_sections, args=(store_url, USER, marker, 8, out))
             for _ in range(2)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
    assert [overlaps for _, overlaps in results] == [0, 0]
    assert sum(entered for entered, _ in results) == 16
