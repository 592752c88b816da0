"""The per-user cycle lock: one cycle per user at a time, across processes and hosts.

Acquisition is one atomic statement (INSERT on the primary key, or a compare-and-swap
UPDATE of a gone holder's exact token), so two processes never both hold it. A holder
proves it is alive by a heartbeat thread; a holder on this host whose process died is
taken over at once, any other once its heartbeat is older than ``lock_ttl``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from contactsync.errors import LockedError
from contactsync.model import unpad_user
from contactsync.state.base import Store
from contactsync.state.schema import locks_table

_HOST = socket.gethostname()


def _proc_start(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # psutil missing or process gone: no pid-reuse check
        return None


def pid_alive(pid: int, proc_start: float | None = None) -> bool:
    """Is the lock holder's process still running (on this host)?

    A zombie (killed, not yet reaped) counts as dead; so does a pid reused by a process
    that started later than the holder.
    """
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not (proc_start is not None and abs(proc.create_time() - proc_start) > 1.0)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


@dataclass
class LockHandle:
    """A held lock. ``lost`` turns True if another process took it over (heartbeat failed)."""

    user: str
    token: str
    _lost: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()


class LockStore(Store):
    """The ``locks`` table. ``lock_ttl``: seconds after which a lock whose heartbeat
    stopped is taken over (the spec's 2 minutes; tests use 1-2 s). ``heartbeat``: seconds
    between heartbeats."""

    def __init__(self, engine: Engine, *, lock_ttl: float = 120.0, heartbeat: float = 10.0) -> None:
        super().__init__(engine)
        self.lock_ttl = lock_ttl
        self.heartbeat = heartbeat

    @contextlib.contextmanager
    def lock(self, user: str, *, wait: float = 0.0) -> Iterator[LockHandle]:
        """Hold the user's cycle lock; raise LockedError (exit code 4) if it stays taken
        for ``wait`` seconds (see the module docstring for who takes over a lock when)."""
        handle = LockHandle(user=user, token=uuid.uuid4().hex)
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            holder = self._try_lock(handle)
            if holder is None:
                break
            if holder and time.monotonic() >= deadline:
                since = datetime.fromtimestamp(holder["acquired_at"], UTC).isoformat(timespec="seconds")
                raise LockedError(
                    f"another cycle for user {unpad_user(user)} is running "
                    f"(host {holder['host']}, pid {holder['pid']}, since {since})",
                    hint="wait for it to finish; a lock whose holder died is taken over at once "
                    f"on the same host, elsewhere after {self.lock_ttl:g} s without heartbeat",
                )
            if holder:
                time.sleep(min(0.1, max(deadline - time.monotonic(), 0.01)))
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(handle, stop), name=f"lock-heartbeat-{user.strip()}",
            daemon=True,
        )
        beat.start()
        try:
            yield handle
        finally:
            stop.set()
            beat.join()
            with self._write() as conn:
                conn.execute(sa.delete(locks_table).where(
                    locks_table.c.crm_user == user, locks_table.c.token == handle.token))

    @staticmethod
    def _clock(conn: Connection) -> float:
        """Lock times come from one clock: the database server's when it is shared by
        hosts (PostgreSQL), so a skewed worker clock never steals a live lock."""
        if conn.dialect.name == "postgresql":
            return float(conn.execute(sa.text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())
        return time.time()

    def _try_lock(self, handle: LockHandle) -> dict[str, Any] | None:
        """None = acquired; {} = the holder changed meanwhile (retry); else the live holder."""
        lt = locks_table
        mine: dict[str, Any] = dict(host=_HOST, pid=os.getpid(), proc_start=_proc_start(os.getpid()),
                                    token=handle.token)
        try:
            with self._write() as conn:
                now = self._clock(conn)
                conn.execute(lt.insert().values(crm_user=handle.user, acquired_at=now,
                                                heartbeat_at=now, **mine))
            return None
        except IntegrityError:
            pass
        with self.engine.connect() as conn:
            holder = conn.execute(sa.select(lt).where(lt.c.crm_user == handle.user)).mappings().first()
            now = self._clock(conn)
        if holder is None:
            return {}
        holder = dict(holder)
        gone = (holder["host"] == _HOST and not pid_alive(holder["pid"], holder["proc_start"])) or (
            now - holder["heartbeat_at"] > self.lock_ttl)
        if not gone:
            return holder
        with self._write() as conn:  # compare-and-swap: only if nobody moved it since we looked
            now = self._clock(conn)
            taken = conn.execute(
                sa.update(lt).where(lt.c.crm_user == handle.user, lt.c.token == holder["token"],
                                    lt.c.heartbeat_at == holder["heartbeat_at"])
                .values(acquired_at=now, heartbeat_at=now, **mine)
            ).rowcount
        return None if taken == 1 else {}

    def _heartbeat(self, handle: LockHandle, stop: threading.Event) -> None:
        lt = locks_table
        while not stop.wait(self.heartbeat):
            try:
                with self._write() as conn:
                    n = conn.execute(
                        sa.update(lt).where(lt.c.crm_user == handle.user, lt.c.token == handle.token)
                        .values(heartbeat_at=self._clock(conn))
                    ).rowcount
                if n == 0:
                    handle._lost.set()
                    return
            except sa.exc.SQLAlchemyError:
                continue  # a hiccup of the store: try again at the next beat

    def lock_holder(self, user: str) -> dict[str, Any] | None:
        """Who holds the user's lock now (host, pid, token, acquired_at, heartbeat_at)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(locks_table).where(locks_table.c.crm_user == user)
            ).mappings().first()
        return dict(row) if row else None
