"""Issue 16 item 3 / issue 15 goal 1: the local Prefect server (flows/local_server.py)
lets concurrent writers wait for SQLite's write lock instead of failing them.

Prefect's server begins its write transactions DEFERRED: one that read before another
connection's write is refused "database is locked" at its own first write, answered 503,
and Prefect's client sleeps ~2 s before retrying: users fanned out at once started seconds
apart (PrefectHQ/prefect issue 18934). The two transactions here are exactly that shape,
through Prefect's own database configuration.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.server.database.configurations import AioSqliteConfiguration

from flows.local_server import sqlite_writes_begin_immediate


async def _read_then_write_beside_another_writer(db: Path) -> list[str]:
    """T1 reads, T2 writes and commits meanwhile, then T1 writes; the rows written."""
    config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{db}")
    engine = await config.engine()
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS run (who TEXT)"))

        async def other_writer() -> None:
            async with await config.session(engine) as s2, config.begin_transaction(s2):
                await s2.execute(sa.text("INSERT INTO run VALUES ('T2')"))

        async with await config.session(engine) as s1:
            async with config.begin_transaction(s1):
                await s1.execute(sa.text("SELECT count(*) FROM run"))  # the read before the write
                t2 = asyncio.create_task(other_writer())
                await asyncio.sleep(0.3)  # T2 commits here unless T1 holds the write lock
                await s1.execute(sa.text("INSERT INTO run VALUES ('T1')"))
            await t2
        async with engine.connect() as conn:
            return sorted(r[0] for r in await conn.execute(sa.text("SELECT who FROM run")))
    finally:
        await engine.dispose()


def test_prefect_as_shipped_refuses_the_read_then_write_transaction(tmp_path: Path) -> None:
    """The failure this server mends: without the change, T1's write is refused at once."""
    with pytest.raises(sa.exc.OperationalError, match="database is locked"):
        asyncio.run(_read_then_write_beside_another_writer(tmp_path / "prefect.db"))


def test_the_local_server_lets_the_second_writer_wait_instead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Restored after the test: only the local server's own process keeps the change.
    monkeypatch.setattr(AioSqliteConfiguration, "begin_transaction", AioSqliteConfiguration.begin_transaction)
    assert sqlite_writes_begin_immediate()
    assert sqlite_writes_begin_immediate()  # a second call changes nothing more
    assert asyncio.run(_read_then_write_beside_another_writer(tmp_path / "prefect.db")) == ["T1", "T2"]
