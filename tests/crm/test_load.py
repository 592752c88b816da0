"""The CRM writer: R5 account rows, field-scoped updates, R15, R18 idempotence, R19 limits."""

# SIM300 mistakes the CRM's upper-case column names (T.contact.c.CONTACTID) for constants.
# ruff: noqa: SIM300

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from contactsync.crm import demo
from contactsync.crm.extract import CrmReader
from contactsync.crm.load import CrmWriter
from contactsync.crm.schema import crm_tables
from contactsync.plan.schema import ACTION_COLUMNS

from .conftest import GROUP, LEE

T = crm_tables(None)
LEE_PADDED = LEE  # 12 characters already
ADMIN_PADDED = "ADMIN       "


def actions(*rows: dict[str, Any]) -> pd.DataFrame:
    filled = [{"side": "crm", "action_id": f"act{i}", **r} for i, r in enumerate(rows)]
    return pd.DataFrame(filled).reindex(columns=list(ACTION_COLUMNS)).astype(object)


def fetch(engine: sa.Engine, table: sa.Table, **where: Any) -> dict[str, Any]:
    with engine.connect() as conn:
        stmt = sa.select(table).where(*(table.c[k] == v for k, v in where.items()))
        row = conn.execute(stmt).mappings().one()
    return dict(row)


def new_contact(n: int, **values: Any) -> dict[str, Any]:
    base = {"op": "create", "rule": "R5", "outlook_id": f"o{n}", "new_key": f"new:o{n}",
            "first_name": f"New{n}", "last_name": "Person", "email1": f"new{n}@x.example"}
    base.update(values)
    base.setdefault("fields", ",".join(k for k in base if k in {
        "first_name", "last_name", "email1", "street", "city", "company", "birthday", "job_title"}))
    return base


def test_r5c_create_account_then_contact_with_its_address_and_membership(
    lee_writer: CrmWriter, crm_engine: sa.Engine
) -> None:
    result = lee_writer.apply(actions(
        {"op": "create_account", "rule": "R5c", "account_key": "acct:Acme Corp", "account_name": "Acme Corp"},
        new_contact(1, account_key="acct:Acme Corp", company="Acme Corp", street="1 Road\nUnit 2",
                    city="Bern", birthday="1990-07-01"),
    ), group_id=demo.LEE_GROUP)
    assert result["status"].tolist() == ["applied", "applied"]
    account_id, contact_id = result["account_id"].iloc[0], result["crm_id"].iloc[1]
    assert account_id == "ASYNC0000001" and contact_id == "CSYNC0000001"
    account = fetch(crm_engine, T.account, ACCOUNTID=account_id)
    assert (account["ACCOUNT"], account["ACCOUNT_UC"], account["TYPE"], account["STATUS"]) == (
        "Acme Corp", "ACME CORP", "Prospect", "Active")
    assert (account["SECCODEID"], account["ACCOUNTMANAGERID"], account["CREATEUSER"]) == (
        "SYST00000001", LEE_PADDED, LEE_PADDED)
    assert account["ADDRESSID"] is None  # R5: address goes to the contact only
    contact = fetch(crm_engine, T.contact, CONTACTID=contact_id)
    assert (contact["ACCOUNTID"], contact["ACCOUNT"]) == (account_id, "Acme Corp")
    assert (contact["SECCODEID"], contact["ACCOUNTMANAGERID"]) == (LEE, LEE)  # default owner
    assert (contact["LASTNAME"], contact["LASTNAME_UC"]) == ("Person", "PERSON")
    assert contact["BIRTHDAY"] == datetime(1990, 7, 1)
    assert contact["CREATEUSER"] == contact["MODIFYUSER"] == LEE_PADDED
    assert abs((contact["CREATEDATE"] - datetime.now(UTC).replace(tzinfo=None)).total_seconds()) < 120
    address = fetch(crm_engine, T.address, ADDRESSID=contact["ADDRESSID"])
    assert (address["ENTITYID"], address["ADDRESS1"], address["ADDRESS2"], address["CITY"]) == (
        contact_id, "1 Road", "Unit 2", "Bern")
    assert address["ISPRIMARY"] == "T"
    frame = CrmReader(crm_engine, schema=None, user_id=LEE).extract_group(GROUP).set_index("crm_id")
    assert frame.loc[contact_id, "company"] == "Acme Corp"  # in the group, readable back
    assert frame.loc[contact_id, "street"] == "1 Road\nUnit 2"


def test_r5a_account_named_after_the_person_uses_admin_padding(
    crm_engine: sa.Engine, allocator: Any
) -> None:
    admin = CrmWriter(crm_engine, schema=None, user_id="ADMIN", site_code="SYNC", allocator=allocator)
    gid = admin.ensure_group(GROUP)
    result = admin.apply(actions(
        {"op": "create_account", "rule": "R5a", "account_key": "acct:Kim Lee", "account_name": "Kim Lee"},
        new_contact(2, first_name="Kim", last_name="Lee", account_key="acct:Kim Lee"),
    ), group_id=gid)
    assert result["status"].tolist() == ["applied", "applied"]
    account = fetch(crm_engine, T.account, ACCOUNTID=result["account_id"].iloc[0])
    assert account["ACCOUNT"] == "Kim Lee"
    assert account["ACCOUNTMANAGERID"] == ADMIN_PADDED and account["MODIFYUSER"] == ADMIN_PADDED
    contact = fetch(crm_engine, T.contact, CONTACTID=result["crm_id"].iloc[1])
    assert contact["SECCODEID"] == demo.EVERYONE  # ADMIN's default owner


def test_r5b_create_links_to_the_existing_account(lee_writer: CrmWriter, crm_engine: sa.Engine) -> None:
    result = lee_writer.apply(actions(new_contact(3, account_id=demo.aid(2), company="Fabrikam Inc")),
                              group_id=demo.LEE_GROUP)
    assert result["status"].tolist() == ["applied"]
    contact = fetch(crm_engine, T.contact, CONTACTID=result["crm_id"].iloc[0])
    assert (contact["ACCOUNTID"], contact["ACCOUNT"]) == (demo.aid(2), "Fabrikam Inc")
    with crm_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T.account)).scalar() == 8


def test_r18_create_with_a_preallocated_id_is_idempotent(
    lee_writer: CrmWriter, crm_engine: sa.Engine, allocator: Any
) -> None:
    (cid,) = allocator.allocate("C", 1)
    (aid,) = allocator.allocate("A", 1)
    plan = actions(
        {"op": "create_account", "account_key": "acct:Once Inc", "account_name": "Once Inc", "account_id": aid},
        new_contact(4, crm_id=cid, account_key="acct:Once Inc"),
    )
    first = lee_writer.apply(plan, group_id=demo.LEE_GROUP)
    again = lee_writer.apply(plan, group_id=demo.LEE_GROUP)  # a re-run after a crash
    assert first["status"].tolist() == again["status"].tolist() == ["applied", "applied"]
    assert again["crm_id"].iloc[1] == cid and again["account_id"].iloc[1] == aid
    with crm_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T.contact)
                            .where(T.contact.c.CONTACTID == cid)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(T.account)
                            .where(T.account.c.ACCOUNT == "Once Inc")).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(T.address)
                            .where(T.address.c.ENTITYID == cid)).scalar() == 1


def test_r8_update_writes_only_named_fields_and_keeps_unknown_columns(
    lee_writer: CrmWriter, crm_engine: sa.Engine
) -> None:
    with crm_engine.begin() as conn:  # a real CRM has columns the sync does not know
        conn.exec_driver_sql('ALTER TABLE "CONTACT" ADD COLUMN "USERFIELD1" VARCHAR(80)')
        conn.exec_driver_sql("""UPDATE "CONTACT" SET "USERFIELD1" = 'keep me' WHERE "CONTACTID" = 'CDEMOA000002'""")
    before = fetch(crm_engine, T.contact, CONTACTID=demo.cid(2))
    result = lee_writer.apply(actions(
        {"op": "update", "rule": "R8", "crm_id": demo.cid(2), "fields": "job_title,mobile_phone,company,city",
         "job_title": "CIO", "mobile_phone": None, "company": "Renamed Inc", "city": "Tacoma",
         "first_name": "IGNORED", "email1": "ignored@x.example"},
    ), group_id=demo.LEE_GROUP)
    assert result.to_dict("records")[0]["status"] == "applied"
    after = fetch(crm_engine, T.contact, CONTACTID=demo.cid(2))
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"TITLE", "MOBILE", "MODIFYDATE", "MODIFYUSER"}
    assert after["MODIFYUSER"] == LEE_PADDED
    assert after["TITLE"] == "CIO" and after["MOBILE"] is None
    assert after["ACCOUNT"] == "Contoso Ltd"  # R6: company never written on update
    with crm_engine.connect() as conn:
        assert conn.exec_driver_sql(
            """SELECT "USERFIELD1" FROM "CONTACT" WHERE "CONTACTID" = 'CDEMOA000002'""").scalar() == "keep me"
    address = fetch(crm_engine, T.address, ADDRESSID=after["ADDRESSID"])
    assert address["CITY"] == "Tacoma" and address["ADDRESS1"] == "1 Microsoft Way"
    assert address["MODIFYUSER"] == LEE_PADDED
    assert fetch(crm_engine, T.account, ACCOUNTID=demo.aid(1))["ACCOUNT"] == "Contoso Ltd"


def test_update_of_street_creates_the_missing_address_row(lee_writer: CrmWriter, crm_engine: sa.Engine) -> None:
    result = lee_writer.apply(actions(
        {"op": "update", "crm_id": demo.cid(7), "fields": "street,postal_code",
         "street": "8 New St\r\nBack\n\n", "postal_code": "12345"},
    ), group_id=demo.LEE_GROUP)
    assert result["status"].tolist() == ["applied"]
    contact = fetch(crm_engine, T.contact, CONTACTID=demo.cid(7))
    address = fetch(crm_engine, T.address, ADDRESSID=contact["ADDRESSID"])
    assert (address["ENTITYID"], address["ADDRESS1"], address["ADDRESS2"], address["ADDRESS3"]) == (
        demo.cid(7), "8 New St", "Back", None)
    assert address["POSTALCODE"] == "12345" and address["ISPRIMARY"] == "T"


def test_r19_too_long_values_fail_the_unit_without_truncating_and_the_rest_goes_on(
    lee_writer: CrmWriter, crm_engine: sa.Engine
) -> None:
    before = fetch(crm_engine, T.contact, CONTACTID=demo.cid(1))
    result = lee_writer.apply(actions(
        {"op": "update", "crm_id": demo.cid(1), "fields": "first_name,job_title",
         "first_name": "X" * 33, "job_title": "Boss"},
        {"op": "update", "crm_id": demo.cid(2), "fields": "street", "street": "1\n2\n3\n4\n5"},
        {"op": "update", "crm_id": demo.cid(3), "fields": "job_title", "job_title": "Chief"},
        new_contact(5, account_id=demo.aid(1), first_name="Y" * 40),
        {"op": "create_account", "account_key": "acct:long", "account_name": "Z" * 129},
    ), group_id=demo.LEE_GROUP).set_index("action_id")
    assert result.loc["act0", "status"] == "failed"
    assert "CONTACT.FIRSTNAME" in result.loc["act0", "error"] and "32" in result.loc["act0", "error"]
    assert demo.cid(1) in result.loc["act0", "error"]
    assert result.loc["act1", "status"] == "failed" and "5 lines" in result.loc["act1", "error"]
    assert result.loc["act2", "status"] == "applied"
    assert result.loc["act3", "status"] == "failed" and "FIRSTNAME" in result.loc["act3", "error"]
    assert result.loc["act4", "status"] == "failed" and "ACCOUNT.ACCOUNT" in result.loc["act4", "error"]
    assert fetch(crm_engine, T.contact, CONTACTID=demo.cid(1)) == before  # none of its changes
    assert fetch(crm_engine, T.contact, CONTACTID=demo.cid(3))["TITLE"] == "Chief"
    with crm_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T.contact)).scalar() == 30


def test_a_database_error_rolls_back_only_its_own_unit(
    lee_writer: CrmWriter, crm_engine: sa.Engine
) -> None:
    # A stray membership row for a pre-allocated id makes that unit's INSERT fail inside
    # the database (primary key); its CONTACT and ADDRESS rows roll back with it, and the
    # other creates of the same chunk still commit.
    with crm_engine.begin() as conn:
        conn.execute(sa.insert(T.adhocgroup).values(GROUPID=demo.LEE_GROUP, ENTITYID="CSYNC00000ZZ"))
    result = lee_writer.apply(actions(
        new_contact(6, account_id=demo.aid(1), crm_id="CSYNC00000ZZ"),
        new_contact(7, account_id=demo.aid(1)),
    ), group_id=demo.LEE_GROUP)
    assert result["status"].tolist() == ["failed", "applied"]
    assert "rolled back" in result["error"].iloc[0]
    with crm_engine.connect() as conn:
        assert conn.execute(sa.select(T.contact.c.CONTACTID).where(
            T.contact.c.CONTACTID == "CSYNC00000ZZ")).first() is None
        assert conn.execute(sa.select(T.address.c.ADDRESSID).where(
            T.address.c.ENTITYID == "CSYNC00000ZZ")).first() is None


def test_r1_writer_refuses_read_only_and_invisible_contacts(
    lee_writer: CrmWriter, crm_engine: sa.Engine
) -> None:
    result = lee_writer.apply(actions(
        {"op": "update", "crm_id": demo.cid(8), "fields": "job_title", "job_title": "x"},
        {"op": "update", "crm_id": demo.cid(10), "fields": "job_title", "job_title": "x"},
        {"op": "group_add", "crm_id": demo.cid(23)},  # Victor Nguyen: Sam's
    ), group_id=demo.LEE_GROUP)
    assert result["status"].tolist() == ["failed", "failed", "failed"]
    assert "read-only" in result["error"].iloc[0] and "R1" in result["error"].iloc[0]
    assert "not visible" in result["error"].iloc[1]
    assert fetch(crm_engine, T.contact, CONTACTID=demo.cid(10))["TITLE"] == "CEO"


def test_r7_group_add_and_r11_group_remove_touch_only_membership(
    lee_writer: CrmWriter, crm_engine: sa.Engine
) -> None:
    result = lee_writer.apply(actions(
        {"op": "group_add", "rule": "R7", "crm_id": demo.cid(20)},
        {"op": "group_add", "rule": "R7", "crm_id": demo.cid(1)},  # already a member
        {"op": "group_remove", "rule": "R11", "crm_id": demo.cid(2)},
        {"op": "link", "rule": "R7", "crm_id": demo.cid(20), "outlook_id": "o20"},
        {"op": "skip", "rule": "R1", "crm_id": demo.cid(8)},
    ), group_id=demo.LEE_GROUP)
    assert dict(zip(result["action_id"], result["status"], strict=True)) == {
        "act0": "applied", "act1": "applied", "act2": "applied", "act3": "noop", "act4": "noop"}
    members = set(CrmReader(crm_engine, schema=None, user_id=LEE).extract_group(GROUP)["crm_id"])
    assert demo.cid(20) in members and demo.cid(2) not in members
    assert fetch(crm_engine, T.contact, CONTACTID=demo.cid(2))["LASTNAME"] == "Carter"  # R15


def test_r15_the_writer_never_deletes_contact_or_account_rows(
    lee_writer: CrmWriter, crm_engine: sa.Engine
) -> None:
    statements: list[str] = []
    sa.event.listen(crm_engine, "before_cursor_execute",
                    lambda conn, cur, stmt, params, ctx, many: statements.append(stmt))
    lee_writer.apply(actions(
        {"op": "create_account", "account_key": "acct:New", "account_name": "New"},
        new_contact(8, account_key="acct:New"),
        {"op": "update", "crm_id": demo.cid(1), "fields": "job_title,street", "job_title": "x", "street": None},
        {"op": "group_remove", "crm_id": demo.cid(1)},
        {"op": "group_remove", "crm_id": demo.cid(3)},
        {"op": "unlink", "crm_id": demo.cid(4)},
    ), group_id=demo.LEE_GROUP)
    deletes = [s for s in statements if s.lstrip().upper().startswith("DELETE")]
    assert deletes and all('"ADHOCGROUP"' in s for s in deletes)
    with crm_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T.contact)).scalar() == 31
        assert conn.execute(sa.select(sa.func.count()).select_from(T.account)).scalar() == 9


def test_on_result_is_called_per_committed_unit_and_new_keys_resolve(
    lee_writer: CrmWriter, crm_engine: sa.Engine
) -> None:
    seen: list[dict[str, Any]] = []
    result = lee_writer.apply(actions(
        new_contact(9, account_id=demo.aid(1)),
        {"op": "update", "new_key": "new:o9", "fields": "job_title", "job_title": "Later"},
    ), group_id=demo.LEE_GROUP, on_result=seen.append)
    assert [r["action_id"] for r in seen] == ["act0", "act1"]
    assert seen == result.to_dict("records")
    assert fetch(crm_engine, T.contact, CONTACTID=seen[0]["crm_id"])["TITLE"] == "Later"


def test_ensure_group_creates_the_sync_group_once(lee_writer: CrmWriter, crm_engine: sa.Engine) -> None:
    gid = lee_writer.ensure_group("Phone List")
    assert gid.startswith("pSYNC")
    assert lee_writer.ensure_group("Phone List") == gid
    plugin = fetch(crm_engine, T.plugin, PLUGINID=gid)
    assert (plugin["NAME"], plugin["TYPE"], plugin["FAMILY"], plugin["USERID"]) == (
        "Phone List", 8, "Contact", LEE)
    assert lee_writer.ensure_group(GROUP) == demo.LEE_GROUP


def test_r5_a_contact_whose_new_account_failed_is_not_created(
    lee_writer: CrmWriter, crm_engine: sa.Engine
) -> None:
    result = lee_writer.apply(actions(
        {"op": "create_account", "rule": "R5c", "account_key": "acct:" + "Q" * 130, "account_name": "Q" * 130},
        new_contact(10, account_key="acct:" + "Q" * 130),
    ), group_id=demo.LEE_GROUP)
    assert result["status"].tolist() == ["failed", "failed"]
    assert "R5" in result["error"].iloc[1] and "was not created" in result["error"].iloc[1]
    with crm_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T.contact)).scalar() == 30


def test_a_lost_database_is_a_transient_error_not_a_failed_record(
    lee_writer: CrmWriter, crm_engine: sa.Engine
) -> None:
    from contactsync.errors import TransientError

    def drop_connection(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith('INSERT INTO "CONTACT"'):
            raise sa.exc.OperationalError(statement, {}, Exception("server closed the connection"))

    sa.event.listen(crm_engine, "before_cursor_execute", drop_connection)
    seen: list[dict[str, Any]] = []
    with pytest.raises(TransientError, match="CRM database failed"):
        lee_writer.apply(actions(new_contact(11, account_id=demo.aid(1))),
                         group_id=demo.LEE_GROUP, on_result=seen.append)
    sa.event.remove(crm_engine, "before_cursor_execute", drop_connection)
    assert seen == []  # nothing reported as failed: the cycle is retried instead
    with crm_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T.contact)).scalar() == 30
