"""Schema version in ``meta`` and stepwise migrations (vdirsyncer's status.py)."""

from __future__ import annotations

import multiprocessing as mp

import pandas as pd
import pytest
import sqlalchemy as sa

from contactsync import state as state_mod
from contactsync.errors import FatalError
from contactsync.state import SCHEMA_VERSION, StateStore, meta_table

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

    def step2(conn: sa.Connection) -> None:
        ran.append(2)
        conn.execute(sa.text("CREATE TABLE extra_v2 (id INTEGER PRIMARY KEY)"))

    monkeypatch.setattr(state_mod, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(state_mod.MIGRATIONS, 2, step2)
    for _ in range(2):  # the step runs once
        with StateStore(store_url) as store:
            assert store.schema_version == 2
    assert ran == [2]
    assert version_in(store_url) == "2"


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
