"""The CRM reader: only what the user may see (R1), in canonical values."""

# SIM300 mistakes the CRM's upper-case column names (T.contact.c.CONTACTID) for constants.
# ruff: noqa: SIM300

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from contactsync import model
from contactsync.crm import demo
from contactsync.crm.extract import CrmReader
from contactsync.crm.schema import crm_tables
from contactsync.errors import FatalError

from .conftest import GROUP, LEE, SAM

T = crm_tables(None)
INVISIBLE_TO_LEE = demo.cid(10)  # Jonas Weber, owned by Sam only, yet in Lee's group


@pytest.fixture()
def lee(crm_engine: sa.Engine) -> CrmReader:
    return CrmReader(crm_engine, schema=None, user_id=LEE)


def test_r2_extract_returns_the_visible_group_members_in_canonical_columns(lee: CrmReader) -> None:
    frame = lee.extract_group(GROUP)
    assert list(frame.columns) == list(model.CRM_COLUMNS)
    assert sorted(frame["crm_id"]) == [demo.cid(n) for n in range(1, 10)]
    assert frame["in_group"].all()
    assert "UTC" in str(frame["crm_modified"].dtype)
    ana = frame.set_index("crm_id").loc[demo.cid(1)]
    assert (ana["first_name"], ana["last_name"], ana["email2"]) == ("Ana", "Lopez", "ana.lopez@gmail.example")
    assert ana["company"] == "Contoso Ltd"
    assert ana["birthday"] == "1985-04-12"
    assert ana["account_id"] == demo.aid(1)
    assert ana["crm_created"] == pd.Timestamp("2025-01-17 09:00", tz="UTC")


def test_r1_a_group_member_without_rights_is_never_returned(lee: CrmReader) -> None:
    assert INVISIBLE_TO_LEE not in set(lee.extract_group(GROUP)["crm_id"])
    # not even by email (R7 lookups)...
    assert lee.candidates_by_email(["jonas.weber@proseware.example"]).empty
    # ...whereas Sam, who owns it, sees it.
    sam = CrmReader(lee.engine, schema=None, user_id=SAM)
    assert len(sam.candidates_by_email(["jonas.weber@proseware.example"])) == 1


def test_r1_read_only_rights_mark_the_row_read_only(lee: CrmReader) -> None:
    frame = lee.extract_group(GROUP).set_index("crm_id")
    assert frame.loc[demo.cid(8), "read_only"]  # Marketing: Lee has 'R'
    assert not frame.drop(index=demo.cid(8))["read_only"].any()


def test_r1_the_most_permissive_of_several_rights_wins(lee: CrmReader) -> None:
    # Yara Haddad is owned by Support: Lee has an 'R' row and a full row; Sam only 'R'.
    yara = "yara.haddad@litware.example"
    assert not lee.candidates_by_email([yara])["read_only"].iloc[0]
    sam = CrmReader(lee.engine, schema=None, user_id=SAM)
    assert sam.candidates_by_email([yara])["read_only"].iloc[0]


def test_address_lines_join_into_street_and_trailing_empty_lines_drop(
    lee: CrmReader, crm_engine: sa.Engine
) -> None:
    frame = lee.extract_group(GROUP).set_index("crm_id")
    assert frame.loc[demo.cid(3), "street"] == "500 Pine St\nSuite 1200"
    assert (frame.loc[demo.cid(3), "city"], frame.loc[demo.cid(3), "postal_code"]) == ("Seattle", "98101")
    assert frame.loc[demo.cid(7), "street"] is None  # Grace Liu has no address row
    with crm_engine.begin() as conn:
        address_id = conn.execute(sa.select(T.contact.c.ADDRESSID).where(T.contact.c.CONTACTID == demo.cid(1))).scalar()
        conn.execute(sa.update(T.address).where(T.address.c.ADDRESSID == address_id)
                     .values(ADDRESS1="", ADDRESS2="Building 4", ADDRESS3="", ADDRESS4=None))
    assert lee.extract_group(GROUP).set_index("crm_id").loc[demo.cid(1), "street"] == "\nBuilding 4"


def test_r9_crm_modified_is_the_newest_of_contact_address_and_account(
    lee: CrmReader, crm_engine: sa.Engine
) -> None:
    c, ad, a = T.contact, T.address, T.account
    with crm_engine.begin() as conn:
        address_id = conn.execute(sa.select(c.c.ADDRESSID).where(c.c.CONTACTID == demo.cid(2))).scalar()
        conn.execute(sa.update(ad).where(ad.c.ADDRESSID == address_id).values(MODIFYDATE=datetime(2026, 3, 1, 12)))
    assert lee.extract_group(GROUP).set_index("crm_id").loc[demo.cid(2), "crm_modified"] == pd.Timestamp(
        "2026-03-01 12:00", tz="UTC")
    with crm_engine.begin() as conn:
        conn.execute(sa.update(a).where(a.c.ACCOUNTID == demo.aid(1)).values(MODIFYDATE=datetime(2026, 4, 1)))
    frame = lee.extract_group(GROUP).set_index("crm_id")
    assert frame.loc[demo.cid(2), "crm_modified"] == pd.Timestamp("2026-04-01", tz="UTC")
    assert frame.loc[demo.cid(1), "crm_modified"] == pd.Timestamp("2026-04-01", tz="UTC")  # same account


def test_r1_company_of_an_invisible_account_comes_from_the_contact_copy(
    crm_engine: sa.Engine
) -> None:
    # Sam's Olivia Brown works at Proseware (owned by Sam). Lee sees a contact of that
    # account only through CONTACT.ACCOUNT, never by reading the ACCOUNT row.
    with crm_engine.begin() as conn:
        conn.execute(sa.update(T.contact).where(T.contact.c.CONTACTID == demo.cid(15))
                     .values(SECCODEID=demo.EVERYONE, ACCOUNT="Proseware (copy)"))
        conn.execute(sa.update(T.account).where(T.account.c.ACCOUNTID == demo.aid(8))
                     .values(MODIFYDATE=datetime(2030, 1, 1)))
    lee = CrmReader(crm_engine, schema=None, user_id=LEE)
    row = lee.candidates_by_email(["olivia.brown@proseware.example"]).iloc[0]
    assert row["company"] == "Proseware (copy)"
    assert row["crm_modified"] < pd.Timestamp("2030-01-01", tz="UTC")


def test_r7_candidates_match_any_email_column_case_insensitively_in_and_out_of_group(
    lee: CrmReader,
) -> None:
    lee.group_id(GROUP)
    found = lee.candidates_by_email(
        ["ana.lopez@gmail.example", "info@fabrikam.example", "chloe@martin.example", "nobody@x.example"]
    ).set_index("crm_id")
    assert sorted(found.index) == [demo.cid(1), demo.cid(3), demo.cid(20), demo.cid(21)]
    assert found.loc[demo.cid(1), "in_group"] and found.loc[demo.cid(3), "in_group"]
    assert not found.loc[demo.cid(20), "in_group"] and not found.loc[demo.cid(21), "in_group"]
    assert list(found.reset_index().columns) == list(model.CRM_COLUMNS)


def test_r7_candidates_compare_stored_emails_trimmed_and_case_insensitively(
    lee: CrmReader, crm_engine: sa.Engine
) -> None:
    with crm_engine.begin() as conn:
        conn.execute(sa.update(T.contact).where(T.contact.c.CONTACTID == demo.cid(22))
                     .values(EMAIL="  Uma.PATEL@Northwind.example "))
    found = lee.candidates_by_email(["uma.patel@northwind.example"], group_name=GROUP)
    assert found["crm_id"].tolist() == [demo.cid(22)]
    assert not found["in_group"].iloc[0]


@pytest.mark.parametrize("padding", [1200, 2500])  # IN lists in chunks / one scan of emails
def test_r1_r7_candidates_by_email_for_long_lists(lee: CrmReader, padding: int) -> None:
    emails = [f"nobody{i}@x.example" for i in range(padding)]
    emails += ["INFO@fabrikam.example ".strip().lower(), "jonas.weber@proseware.example", "chloe@martin.example"]
    found = lee.candidates_by_email(emails, group_name=GROUP).set_index("crm_id")
    assert sorted(found.index) == [demo.cid(3), demo.cid(20), demo.cid(21)]  # never Jonas (R1)
    assert found["in_group"].to_dict() == {demo.cid(3): True, demo.cid(20): False, demo.cid(21): False}


def test_r5b_accounts_by_name_is_exact_visible_and_oldest_first(
    lee: CrmReader, crm_engine: sa.Engine
) -> None:
    with crm_engine.begin() as conn:
        conn.execute(sa.insert(T.account), [
            {"ACCOUNTID": "ADEMOA000009", "ACCOUNT": "contoso ltd", "SECCODEID": demo.EVERYONE,
             "CREATEDATE": datetime(2020, 1, 1)},
            {"ACCOUNTID": "ADEMOA00000A", "ACCOUNT": "Contoso Ltd", "SECCODEID": demo.EVERYONE,
             "CREATEDATE": datetime(2020, 1, 1)},
        ])
    found = lee.accounts_by_name(["Contoso Ltd", "Proseware Inc", "Nope"])
    assert list(found.columns) == list(model.ACCOUNT_COLUMNS)
    # exact case only; Proseware is Sam's (R1); the older duplicate comes first (R5b).
    assert found["account_id"].tolist() == ["ADEMOA00000A", demo.aid(1)]
    assert set(found["account_name"]) == {"Contoso Ltd"}
    sam = CrmReader(crm_engine, schema=None, user_id=SAM)
    assert sam.accounts_by_name(["Proseware Inc"])["account_id"].tolist() == [demo.aid(8)]


def test_r13_gone_status_reads_only_existence(lee: CrmReader, crm_engine: sa.Engine) -> None:
    with crm_engine.begin() as conn:  # the CRM (not the sync) deletes a contact
        conn.execute(sa.delete(T.contact).where(T.contact.c.CONTACTID == demo.cid(4)))
    gone = lee.gone_status([demo.cid(4), INVISIBLE_TO_LEE, demo.cid(1)])
    assert gone.to_dict("records") == [
        {"crm_id": demo.cid(4), "exists": False},
        {"crm_id": INVISIBLE_TO_LEE, "exists": True},
        {"crm_id": demo.cid(1), "exists": True},
    ]


def test_group_id_and_default_owner(lee: CrmReader, crm_engine: sa.Engine) -> None:
    assert lee.group_id(GROUP) == demo.LEE_GROUP
    assert lee.group_id("Other") is None
    assert lee.extract_group("Other").empty
    assert lee.default_owner() == LEE
    assert CrmReader(crm_engine, schema=None, user_id="NOBODY").group_id(GROUP) is None
    with pytest.raises(FatalError, match="default owner"):
        CrmReader(crm_engine, schema=None, user_id="NOBODY").default_owner()


def test_padded_user_ids_match_char12_columns(crm_engine: sa.Engine) -> None:
    admin = CrmReader(crm_engine, schema=None, user_id="ADMIN")  # stored 'ADMIN       '
    assert admin.default_owner() == demo.EVERYONE
    found = admin.candidates_by_email(["jonas.weber@proseware.example", "info@fabrikam.example"])
    assert len(found) == 3


def test_r1_every_query_that_reads_contact_or_account_content_joins_secrights(
    lee: CrmReader, crm_engine: sa.Engine
) -> None:
    statements: list[str] = []
    sa.event.listen(crm_engine, "before_cursor_execute",
                    lambda conn, cur, stmt, params, ctx, many: statements.append(stmt))
    lee.extract_group(GROUP)
    lee.candidates_by_email(["info@fabrikam.example"])
    lee.accounts_by_name(["Contoso Ltd"])
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")
             and ('"CONTACT"' in s or '"ACCOUNT"' in s)]
    assert len(reads) == 3
    for stmt in reads:
        assert '"SECRIGHTS"' in stmt and '"ACCESSID" =' in stmt, stmt
    # gone_status reads only the key: nothing of the row's content (R1).
    statements.clear()
    lee.gone_status([demo.cid(10)])
    (only,) = [s for s in statements if '"CONTACT"' in s]
    assert only.split("FROM")[0].count(",") == 0 and '"CONTACTID"' in only.split("FROM")[0]
