"""SalesLogix ids: format, uniqueness across processes, and no reuse after a lost counter."""

from __future__ import annotations

import multiprocessing as mp
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from contactsync.crm.ids import IdAllocator, parse_counter, to_base36
from contactsync.crm.schema import crm_tables, make_engine
from contactsync.crm.setup import init_database


def test_id_format_is_prefix_site_and_seven_base36_digits(allocator: IdAllocator) -> None:
    ids = allocator.allocate("C", 3) + allocator.allocate("a", 1) + allocator.allocate("A", 1)
    assert ids == ["CSYNC0000001", "CSYNC0000002", "CSYNC0000003", "aSYNC0000001", "ASYNC0000001"]
    assert to_base36(36**2 + 35) == "000010Z"
    assert parse_counter("CSYNC00000ZZ", "C", "SYNC") == 36 * 36 - 1
    assert parse_counter("CDEMO00000ZZ", "C", "SYNC") is None


def test_r18_allocation_starts_above_the_highest_id_already_in_the_crm(
    allocator: IdAllocator, crm_engine: sa.Engine
) -> None:
    t = crm_tables(None)
    with crm_engine.begin() as conn:
        conn.execute(sa.insert(t.contact).values(CONTACTID="CSYNC00000ZZ", LASTNAME="Existing",
                                                 CREATEDATE=datetime(2025, 1, 1)))
    assert allocator.allocate("C", 1) == ["CSYNC0000100"]
    assert allocator.allocate("C", 2) == ["CSYNC0000101", "CSYNC0000102"]


def test_r18_a_lost_state_database_never_reuses_an_id(
    crm_engine: sa.Engine, tmp_path: Path
) -> None:
    t = crm_tables(None)
    first_state = make_engine(f"sqlite:///{tmp_path / 'state1.db'}")
    ids = IdAllocator(first_state, crm_engine, None, "SYNC").allocate("C", 5)
    with crm_engine.begin() as conn:  # the ids were written to the CRM...
        conn.execute(sa.insert(t.contact), [{"CONTACTID": i, "LASTNAME": "x"} for i in ids])
    first_state.dispose()
    (tmp_path / "state1.db").unlink()  # ...then the state database was lost
    fresh = make_engine(f"sqlite:///{tmp_path / 'state2.db'}")
    again = IdAllocator(fresh, crm_engine, None, "SYNC").allocate("C", 5)
    fresh.dispose()
    assert not set(ids) & set(again)
    assert again[0] == "CSYNC0000006"


def _worker(state_url: str, crm_url: str, rounds: int, out: mp.Queue) -> None:
    state, crm = make_engine(state_url), make_engine(crm_url)
    alloc = IdAllocator(state, crm, None, "SYNC")
    got: list[str] = []
    for i in range(rounds):
        got += alloc.allocate("C", 1 + i % 7)
    out.put(got)
    state.dispose()
    crm.dispose()


def _run_concurrently(state_url: str, crm_url: str, procs: int = 2, rounds: int = 40) -> list[list[str]]:
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(state_url, crm_url, rounds, queue)) for _ in range(procs)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    return results


def test_r18_two_processes_allocating_at_once_never_get_the_same_id(tmp_path: Path) -> None:
    crm_url = f"sqlite:///{tmp_path / 'crm.db'}"
    init_database(crm_url)
    a, b = _run_concurrently(f"sqlite:///{tmp_path / 'state.db'}", crm_url)
    assert len(a) == len(b) == sum(1 + i % 7 for i in range(40))
    assert not set(a) & set(b)
    assert len(set(a) | set(b)) == len(a) + len(b)


@pytest.mark.postgres
def test_r18_two_processes_share_a_postgres_counter_without_duplicates(
    postgres_url: str, tmp_path: Path
) -> None:
    crm_url = f"sqlite:///{tmp_path / 'crm.db'}"
    init_database(crm_url)
    a, b = _run_concurrently(postgres_url, crm_url)  # the state store on PostgreSQL
    assert not set(a) & set(b)
    assert len(set(a) | set(b)) == len(a) + len(b)


def test_counter_rows_of_a_and_A_are_distinct(allocator: IdAllocator) -> None:
    # ADDRESS ('a') and ACCOUNT ('A') ids count separately, whatever the collation.
    assert allocator.allocate("A", 2) == ["ASYNC0000001", "ASYNC0000002"]
    assert allocator.allocate("a", 1) == ["aSYNC0000001"]
    with pytest.raises(ValueError, match="unknown id prefix"):
        allocator.allocate("Z", 1)
