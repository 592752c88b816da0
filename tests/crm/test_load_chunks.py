"""The CRM writer turns a plan's rows into dicts a chunk at a time as it writes them
(issue 15 goal 3: a first sync's 50,000 CRM rows as dicts at once were ~50 MB of its
peak); chunking must change nothing a user sees: every action answered once, the new
accounts committed with the first contacts made for them (R18), R5 and R8 as before."""

# SIM300 mistakes the CRM's upper-case column names for constants.
# ruff: noqa: SIM300

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from contactsync.crm import demo
from contactsync.crm import load as crm_load
from contactsync.crm.load import CrmWriter
from contactsync.crm.schema import crm_tables

from .test_load import actions, new_contact

T = crm_tables(None)


def test_rows_become_dicts_a_chunk_at_a_time_and_every_action_is_answered_once(
    lee_writer: CrmWriter, crm_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [{"op": "create_account", "rule": "R5c", "account_key": "acct:Chunky", "account_name": "Chunky"}]
    rows += [new_contact(i, account_key="acct:Chunky", company="Chunky") for i in range(7)]
    rows.insert(3, {"op": "link", "rule": "R7"})
    rows.append({"op": "teleport", "rule": "R0"})
    sizes: list[int] = []
    real = crm_load._dicts

    def counted(frame: pd.DataFrame, at):  # type: ignore[no-untyped-def]
        sizes.append(len(at))
        return real(frame, at)

    monkeypatch.setattr(crm_load, "_dicts", counted)
    monkeypatch.setattr(crm_load, "CHUNK", 3)
    plan = actions(*rows)
    seen: list[str] = []
    result = lee_writer.apply(plan, group_id=demo.LEE_GROUP, on_result=lambda r: seen.append(r["action_id"]))
    assert max(sizes) <= 3 and sum(sizes) == len(plan)  # never all rows as dicts at once
    assert sorted(seen) == sorted(plan["action_id"]) and len(seen) == len(set(seen))
    status = result.set_index("action_id")["status"]
    assert status["act3"] == "noop" and status[plan["action_id"].iloc[-1]] == "failed"
    made = result[plan.set_index("action_id").loc[result["action_id"], "op"].to_numpy() == "create"]
    assert len(made) == 7 and (made["status"] == "applied").all() and made["crm_id"].is_unique
    with crm_engine.connect() as conn:
        accounts = conn.execute(sa.select(sa.func.count()).select_from(T.account)
                                .where(T.account.c.ACCOUNT == "Chunky")).scalar()
        members = conn.execute(sa.select(sa.func.count()).select_from(T.adhocgroup).where(
            T.adhocgroup.c.GROUPID == demo.LEE_GROUP, T.adhocgroup.c.ENTITYID.in_(made["crm_id"].tolist()))).scalar()
    assert accounts == 1 and members == 7  # one account (R5c) for all seven, each one in the group (R2)
