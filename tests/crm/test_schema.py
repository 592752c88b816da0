"""The CRM tables are exactly those of spec/CRM_SCHEMA.md, and `crm init` makes them."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from contactsync.cli import app
from contactsync.crm.schema import crm_tables, make_engine
from contactsync.crm.setup import init_database
from contactsync.errors import ConfigError

AUDIT = {"CREATEDATE", "CREATEUSER", "MODIFYDATE", "MODIFYUSER"}
# Transcribed from spec/CRM_SCHEMA.md: the real Infor CRM names.
EXPECTED: dict[str, set[str]] = {
    "CONTACT": {
        "CONTACTID", "ACCOUNTID", "ACCOUNT", "LASTNAME", "FIRSTNAME", "MIDDLENAME", "LASTNAME_UC",
        "PREFIX", "SUFFIX", "TITLE", "DEPARTMENT", "EMAIL", "SECONDARYEMAIL", "EMAIL3",
        "WORKPHONE", "HOMEPHONE", "MOBILE", "FAX", "OTHERPHONE", "WEBADDRESS", "ASSISTANT",
        "SPOUSE", "BIRTHDAY", "ADDRESSID", "SHIPPINGID", "TYPE", "STATUS", "ISPRIMARY",
        "DESCRIPTION", "CATEGORIES", "SECCODEID", "ACCOUNTMANAGERID",
    },
    "ACCOUNT": {
        "ACCOUNTID", "ACCOUNT", "ACCOUNT_UC", "TYPE", "STATUS", "SUBTYPE", "ADDRESSID",
        "SHIPPINGID", "MAINPHONE", "FAX", "EMAIL", "WEBADDRESS", "SECCODEID", "ACCOUNTMANAGERID",
    },
    "ADDRESS": {
        "ADDRESSID", "ENTITYID", "TYPE", "DESCRIPTION", "ADDRESS1", "ADDRESS2", "ADDRESS3",
        "ADDRESS4", "CITY", "STATE", "POSTALCODE", "COUNTY", "COUNTRY", "ISPRIMARY", "ISMAILING",
    },
    "SECCODE": {"SECCODEID", "SECCODEDESC", "SECCODETYPE"},
    "SECRIGHTS": {"SECRIGHTSID", "SECCODEID", "ACCESSID", "PROFILEID", "RECORDACCESS"},
    "USERSECURITY": {"USERID", "USERCODE", "TYPE", "DEFAULTSECCODEID", "ENABLED"},
    "USERINFO": {"USERID", "USERNAME", "FIRSTNAME", "LASTNAME", "EMAIL"},
    "PLUGIN": {"PLUGINID", "NAME", "FAMILY", "TYPE", "USERID", "ISPUBLIC", "BASEDON", "DATA"},
    "ADHOCGROUP": {"GROUPID", "ENTITYID"},
}
KEYS = {"CONTACT": ["CONTACTID"], "ACCOUNT": ["ACCOUNTID"], "ADDRESS": ["ADDRESSID"],
        "SECCODE": ["SECCODEID"], "SECRIGHTS": ["SECRIGHTSID"], "USERSECURITY": ["USERID"],
        "USERINFO": ["USERID"], "PLUGIN": ["PLUGINID"], "ADHOCGROUP": ["GROUPID", "ENTITYID"]}
LENGTHS = {("CONTACT", "LASTNAME"): 32, ("CONTACT", "PREFIX"): 16, ("CONTACT", "TITLE"): 64,
           ("CONTACT", "EMAIL"): 128, ("CONTACT", "CATEGORIES"): 255, ("ACCOUNT", "ACCOUNT"): 128,
           ("ADDRESS", "ADDRESS1"): 64, ("ADDRESS", "POSTALCODE"): 24, ("USERSECURITY", "USERCODE"): 30,
           ("CONTACT", "CONTACTID"): 12, ("ADHOCGROUP", "ENTITYID"): 12}


def test_created_tables_have_exactly_the_spec_columns_and_keys(crm_url: str) -> None:
    init_database(crm_url)
    engine = make_engine(crm_url)
    try:
        insp = sa.inspect(engine)
        assert set(insp.get_table_names()) == set(EXPECTED)
        for table, columns in EXPECTED.items():
            found = {c["name"]: c for c in insp.get_columns(table)}
            assert set(found) == columns | AUDIT, table
            assert insp.get_pk_constraint(table)["constrained_columns"] == KEYS[table]
        for (table, column), length in LENGTHS.items():
            col_type = {c["name"]: c["type"] for c in insp.get_columns(table)}[column]
            assert col_type.length == length, (table, column)
    finally:
        engine.dispose()


def test_ids_are_char12_and_schema_name_is_configurable() -> None:
    tables = crm_tables("sysdba")
    assert tables.contact.fullname == "sysdba.CONTACT"
    assert crm_tables("sysdba") is tables  # cached: readers and writers share the tables
    assert crm_tables(None).contact.fullname == "CONTACT"
    assert isinstance(tables.contact.c.CONTACTID.type, sa.CHAR)
    assert tables.contact.c.CONTACTID.type.length == 12


@pytest.mark.postgres
def test_init_creates_tables_in_a_named_schema_on_postgres(postgres_url: str) -> None:
    summary = init_database(postgres_url, schema="sysdba", demo=True)
    assert "sysdba" in summary
    engine = make_engine(postgres_url)
    try:
        assert "CONTACT" in sa.inspect(engine).get_table_names(schema="sysdba")
        with engine.connect() as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(crm_tables("sysdba").contact)).scalar()
        assert n == 30
    finally:
        engine.dispose()


def test_init_refuses_a_database_that_already_has_contact(crm_url: str) -> None:
    init_database(crm_url)
    with pytest.raises(ConfigError, match="already has a CONTACT table"):
        init_database(crm_url, demo=True)


def test_cli_crm_init_demo_creates_tables_and_demo_data(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    runner = CliRunner()
    result = runner.invoke(app, ["crm", "init", "--url", f"sqlite:///{db}", "--demo"])
    assert result.exit_code == 0, result.output
    assert "30 contacts" in result.output
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            t = crm_tables(None)
            assert conn.execute(sa.select(sa.func.count()).select_from(t.contact)).scalar() == 30
            groups = conn.execute(sa.select(t.plugin.c.USERID, t.plugin.c.NAME, t.plugin.c.TYPE)).all()
        assert sorted(groups) == [("UDEMOA000001", "Outlook Sync", 8), ("UDEMOA000002", "Outlook Sync", 8)]
    finally:
        engine.dispose()
    again = runner.invoke(app, ["crm", "init", "--url", f"sqlite:///{db}"])
    assert again.exit_code == 2
    assert "already has a CONTACT table" in again.output


def test_sqlite_engine_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30000
    finally:
        engine.dispose()


def test_init_refuses_a_schema_name_on_sqlite(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SQLite has no schema"):
        init_database(f"sqlite:///{tmp_path / 'y.db'}", schema="sysdba")


#: The indexes the sync's queries use (README "A real Infor CRM database"), by Infor's names.
INDEXES = {
    "ADHOCGROUP": {"ADHOCGROUPID": ["GROUPID"], "ADHOCGROUP_ENTITYID": ["ENTITYID"]},
    "SECRIGHTS": {"SECRIGHTS_ACCESSID": ["ACCESSID", "SECCODEID", "RECORDACCESS"],
                  "SECRIGHTS_SECCODEID": ["SECCODEID"]},
    "CONTACT": {"CONTACT_ACCOUNTID": ["ACCOUNTID"], "CONTACT_SECCODEID": ["SECCODEID"]},
}


def test_crm_init_creates_the_indexes_the_group_read_and_lookups_use(crm_url: str) -> None:
    """Issue 15 item 1: `crm init` makes ADHOCGROUP, SECRIGHTS and CONTACT indexed as Infor
    CRM is, on SQLite and on PostgreSQL (read back from the database, not the metadata)."""
    init_database(crm_url)
    engine = make_engine(crm_url)
    try:
        insp = sa.inspect(engine)
        for table, wanted in INDEXES.items():
            found = {i["name"]: i["column_names"] for i in insp.get_indexes(table)}
            for name, columns in wanted.items():
                assert found.get(name) == columns, (table, name, found)
    finally:
        engine.dispose()


def test_the_group_read_uses_the_indexes_on_sqlite(tmp_path: Path) -> None:
    """The security-scoped group read (R1/R2) looks rows up by index: no full scan of CONTACT
    or SECRIGHTS (SQLite's EXPLAIN QUERY PLAN of the very statement the reader runs)."""
    from contactsync.crm import demo
    from contactsync.crm.extract import CrmReader

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    init_database(url, demo=True)
    engine = make_engine(url)
    try:
        reader = CrmReader(engine, schema=None, user_id=demo.LEE)
        plan = reader.query_plan(demo.GROUP_NAME)
        text = "\n".join(plan)
        assert "SCAN CONTACT" not in text and "SCAN SECRIGHTS" not in text, text
        assert "SECRIGHTS_ACCESSID" in text, text
        assert reader.extract_group(demo.GROUP_NAME).shape[0] > 0
    finally:
        engine.dispose()
