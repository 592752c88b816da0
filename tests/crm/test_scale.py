"""Scale: a 100,000-member group extracts whole and right; a first sync's 20,000 creates are
all written in one call, each in the group. Their speed is bench/speed_floors.py's
(crm_extract_100k, crm_create_20k), not a timed test's."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from contactsync.crm import demo
from contactsync.crm.extract import CrmReader
from contactsync.crm.ids import IdAllocator
from contactsync.crm.load import CrmWriter
from contactsync.crm.schema import crm_tables, make_engine
from contactsync.crm.setup import init_database
from contactsync.plan.schema import ACTION_COLUMNS

pytestmark = pytest.mark.slow
T = crm_tables(None)


def test_extract_of_100k_members_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"
    init_database(url, demo=True)
    engine = make_engine(url)
    n = 100_000
    now = datetime(2025, 6, 1)
    contacts = [{"CONTACTID": f"CBIGA{i:07d}", "ACCOUNTID": demo.aid(1 + i % 7), "ACCOUNT": "x",
                 "FIRSTNAME": f"F{i}", "LASTNAME": f"L{i}", "EMAIL": f"p{i}@big.example",
                 "WORKPHONE": "+1 555 0100", "ADDRESSID": f"aBIGA{i:07d}", "SECCODEID": demo.EVERYONE,
                 "CREATEDATE": now, "MODIFYDATE": now} for i in range(n)]
    addresses = [{"ADDRESSID": f"aBIGA{i:07d}", "ENTITYID": f"CBIGA{i:07d}", "ADDRESS1": f"{i} Main St",
                  "ADDRESS2": "Floor 2" if i % 2 else None, "CITY": "Town", "MODIFYDATE": now}
                 for i in range(n)]
    members = [{"GROUPID": demo.LEE_GROUP, "ENTITYID": f"CBIGA{i:07d}"} for i in range(n)]
    with engine.begin() as conn:
        conn.execute(sa.insert(T.contact), contacts)
        conn.execute(sa.insert(T.address), addresses)
        conn.execute(sa.insert(T.adhocgroup), members)
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
    plan = pd.DataFrame([
        {"action_id": f"a{i}", "side": "crm", "op": "create", "new_key": f"new:o{i}",
         "account_key": "acct:Big Co", "fields": "first_name,last_name,email1,street,city,work_phone",
         "first_name": f"F{i}", "last_name": f"L{i}", "email1": f"x{i}@y.example",
         "street": "1 Road\nFloor 2", "city": "Town", "work_phone": "+1 555 0100"} for i in range(n)
    ] + [{"action_id": "acct", "side": "crm", "op": "create_account", "account_key": "acct:Big Co",
          "account_name": "Big Co"}]).reindex(columns=list(ACTION_COLUMNS))
    result = writer.apply(plan, group_id=demo.LEE_GROUP)
    assert (result["status"] == "applied").all()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T.adhocgroup)).scalar() == 20 + n
        made = sa.select(sa.func.count(sa.distinct(T.contact.c.CONTACTID))).where(T.contact.c.EMAIL.like("%@y.example"))
        assert conn.execute(made).scalar() == n
    engine.dispose()
    state.dispose()
