"""Scale: a 100,000-member group extracts in seconds; a first sync's creates run in bulk."""

from __future__ import annotations

import time
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
    start, cpu = time.perf_counter(), time.process_time()
    frame = reader.extract_group(demo.GROUP_NAME)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"\nextract of {len(frame)} members: {wall:.2f} s wall, {cpu:.2f} s CPU")
    assert len(frame) == n + 9
    row = frame.set_index("crm_id").loc["CBIGA0000001"]
    assert (row["street"], row["company"]) == ("1 Main St\nFloor 2", "Fabrikam Inc")
    assert cpu < 6, f"extract took {cpu:.2f} s CPU"  # about 2 s on a busy 2-core machine
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
    start, cpu = time.perf_counter(), time.process_time()
    result = writer.apply(plan, group_id=demo.LEE_GROUP)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"\ncreate of {n} contacts: {n / wall:.0f}/s wall, {n / cpu:.0f}/s CPU")
    assert (result["status"] == "applied").all()
    assert n / cpu > 2500
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T.adhocgroup)).scalar() == 20 + n
    engine.dispose()
    state.dispose()
