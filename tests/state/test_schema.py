"""Schema version in ``meta`` and stepwise migrations (vdirsyncer's status.py)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from contactsync.errors import FatalError
from contactsync.state import SCHEMA_VERSION, StateStore, meta_table
from contactsync.state import migrations as migrations_mod
from contactsync.state import schema as state_mod

from . import _procs
from .conftest import USER


def version_in(url: str) -> str:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(
            sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
        ).scalar_one()
    engine.dispose()
    return value


def test_open_twice_is_idempotent_and_keeps_data(store_url: str) -> None:
    first = StateStore(store_url)
    first.save_pairs(USER, pd.DataFrame({"crm_id": ["C1"], "outlook_id": ["O1"]}))
    first.close()
    second = StateStore(store_url)
    assert second.schema_version == SCHEMA_VERSION
    assert second.load_links(USER)["crm_id"].tolist() == ["C1"]
    second.close()
    assert version_in(store_url) == str(SCHEMA_VERSION)


def test_migrations_run_stepwise_from_the_stored_version(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    StateStore(store_url).close()
    ran: list[int] = []

    nxt = SCHEMA_VERSION + 1

    def step_next(conn: sa.Connection) -> None:
        ran.append(nxt)
        conn.execute(sa.text(f"CREATE TABLE extra_v{nxt} (id INTEGER PRIMARY KEY)"))

    monkeypatch.setattr(state_mod, "SCHEMA_VERSION", nxt)
    monkeypatch.setitem(migrations_mod.MIGRATIONS, nxt, step_next)
    for _ in range(2):  # the step runs once
        with StateStore(store_url) as store:
            assert store.schema_version == nxt
    assert ran == [nxt]
    assert version_in(store_url) == str(nxt)


def test_a_newer_store_is_refused(store_url: str) -> None:
    StateStore(store_url).close()
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.update(meta_table).values(value=str(SCHEMA_VERSION + 1)))
    engine.dispose()
    with pytest.raises(FatalError, match="newer"):
        StateStore(store_url)


def test_two_processes_creating_the_store_at_once(store_url: str) -> None:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_procs.open_store, args=(store_url, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    assert results == [SCHEMA_VERSION, SCHEMA_VERSION]


def test_memory_store_works_for_one_process() -> None:
    store = StateStore("sqlite://")
    store.save_pairs(USER, pd.DataFrame({"crm_id": ["C1"], "outlook_id": ["O1"]}))
    assert len(store.load_links(USER)) == 1
    store.close()


def test_unreachable_store_is_a_transient_error_without_password() -> None:
    from contactsync.errors import TransientError

    with pytest.raises(TransientError) as info:
        StateStore("postgresql+psycopg://sync:pw-secret@127.0.0.1:1/state")
    assert "pw-secret" not in info.value.describe()
    assert "[state] url" in info.value.describe()


def _as_version_1_store(url: str, *, counter_row: tuple[int, str, int] | None) -> None:
    """Turn a fresh store back into what version 1 left: no counter in the migrations;
    the CRM id allocator had made its own table (with its rows) only if it ever ran."""
    StateStore(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE sync_id_counter"))
        if counter_row is not None:  # the table as contactsync.crm.ids used to create it
            old = sa.MetaData()
            table = sa.Table(
                "sync_id_counter", old,
                sa.Column("prefix_code", sa.Integer, primary_key=True),
                sa.Column("site_code", sa.String(4), primary_key=True),
                sa.Column("next_value", sa.BigInteger, nullable=False),
            )
            old.create_all(conn)
            conn.execute(table.insert().values(
                prefix_code=counter_row[0], site_code=counter_row[1], next_value=counter_row[2]))
        conn.execute(sa.update(meta_table).values(value="1"))
    engine.dispose()


@pytest.mark.parametrize("had_counter", [True, False])
def test_a_version_1_store_gets_the_id_counter_and_keeps_its_values(
    store_url: str, had_counter: bool, tmp_path: Path
) -> None:
    from contactsync.crm.ids import IdAllocator, to_base36
    from contactsync.crm.schema import make_engine
    from contactsync.crm.setup import init_database

    _as_version_1_store(store_url, counter_row=(ord("C"), "SYNC", 500) if had_counter else None)
    with StateStore(store_url) as store:
        assert store.schema_version == SCHEMA_VERSION >= 2
        assert version_in(store_url) == str(SCHEMA_VERSION)
        crm_url = f"sqlite:///{tmp_path / 'crm.db'}"
        init_database(crm_url)
        crm = make_engine(crm_url)
        ids = IdAllocator(store.engine, crm, None, "SYNC").allocate("C", 2)
        crm.dispose()
    # R18: a counter that had reached 500 goes on from there, never back to 1.
    first = 500 if had_counter else 1
    assert ids == [f"CSYNC{to_base36(first)}", f"CSYNC{to_base36(first + 1)}"]
