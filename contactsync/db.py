"""One way to open a SQLAlchemy engine, for the CRM and for the state store alike.

Both sides are written by several processes at once (a fan-out, a backfill beside a
schedule), so both want the same care: on SQLite WAL (readers never block the writer)
and a busy timeout (a second writer waits instead of failing at once); on a server,
pre-ping and recycling (a connection the server dropped is replaced instead of failing a
cycle). ``write`` is the write transaction that never meets SQLITE_BUSY half-way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


def make_engine(url: str, *, busy_timeout: float = 60.0) -> Engine:
    """An engine for ``url`` that copes with concurrent writers (see the module docstring).

    An in-memory SQLite database is one connection shared by every thread (StaticPool),
    so what one thread writes the others read.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(
            url, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800
        )
    memory = parsed.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout, "check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = sa.StaticPool
    engine = sa.create_engine(url, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction. On SQLite it is BEGIN IMMEDIATE: the write lock is taken
    first (waiting up to the busy timeout), so a transaction that reads before it
    writes never fails with SQLITE_BUSY against another process's writer."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def shown_url(engine: Engine) -> str:
    """The engine's URL as it may appear in a message: never with its password."""
    return engine.url.render_as_string(hide_password=True)
