"""Scale: a 100,000-member group extracts whole and right; a first sync's 20,000 creates are
all written in one call, each in the group. Their speed is bench/speed_floors.py's
(crm_extract_100k, crm_create_20k), not a timed test's."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.speed_floors import big_group, create_plan
from contactsync.crm import demo
from contactsync.crm.extract import CrmReader
from contactsync.crm.ids import IdAllocator
from contactsync.crm.load import CrmWriter
from contactsync.crm.schema import crm_tables, make_engine
from contactsync.crm.setup import init_database

pytestmark = pytest.mark.slow
T = crm_tables(None)


def test_extract_of_100k_members_on_sqlite(tmp_path: Path) -> None:
    n = 100_000
    engine = big_group(f"sqlite:///{tmp_path / 'big.db'}", n)
    reader = CrmReader(engine, schema=None, user_id=demo.LEE)
    frame = reader.extract_group(demo.GROUP_NAME)
    assert len(frame) == n + 9 and frame["crm_id"].is_unique
    row = frame.set_index("crm_id").loc["CBIGA0000001"]
    assert (row["street"], row["company"]) == ("1 Main St\nFloor 2", "Fabrikam Inc")
    engine.dispose()


def test_bulk_create_of_20k_contacts_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    init_database(url, demo=True)
    engine, state = make_engine(url), make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    writer = CrmWriter(engine, schema=None, user_id=demo.LEE, site_code="SYNC",
                       allocator=IdAllocator(state, engine, None, "SYNC"))
    n = 20_000
    plan = create_plan(n)
    result = writer.apply(plan, group_id=demo.LEE_GROUP)
    assert (result["status"] == "applied").all()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T.adhocgroup)).scalar() == 20 + n
        made = sa.select(sa.func.count(sa.distinct(T.contact.c.CONTACTID))).where(T.contact.c.EMAIL.like("%@y.example"))
        assert conn.execute(made).scalar() == n
    engine.dispose()
    state.dispose()
