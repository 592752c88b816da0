"""The Infor CRM (SalesLogix) tables the sync reads and writes (spec/CRM_SCHEMA.md).

Only the columns the sync uses are declared: a real Infor CRM database has many more, and
because every statement names its columns, those are never touched. The same ``Table``
objects serve the embedded SQLite database, the PostgreSQL tests and a real SQL Server
database (schema ``sysdba``); only the schema name differs, so it is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import CHAR, Column, DateTime, Index, Integer, LargeBinary, MetaData, String, Table

from contactsync.db import make_engine as make_engine  # re-exported: the CRM side's engine
from contactsync.model import FIELD, FIELD_REGISTRY

ID = CHAR(12)  # "STANDARDID": every key and foreign key
FLAG = CHAR(1)  # 'T' / 'F'
_COMPANY = FIELD["company"].length  # ACCOUNT.ACCOUNT, and its copy CONTACT.ACCOUNT


def _field_columns(table: str) -> list[Column]:
    """The columns of ``table`` that hold synced fields, typed and sized by the field
    registry (model.FIELD_REGISTRY): the lengths the quarantine checks are the schema's."""
    return [
        Column(col, DateTime if f.kind == "date" else String(f.length))
        for f in FIELD_REGISTRY if f.crm_table == table
        for col in f.crm_columns
    ]


def _audit() -> list[Column]:
    """CREATEDATE/CREATEUSER/MODIFYDATE/MODIFYUSER: every table has them (UTC, padded USERID)."""
    return [
        Column("CREATEDATE", DateTime),
        Column("CREATEUSER", ID),
        Column("MODIFYDATE", DateTime),
        Column("MODIFYUSER", ID),
    ]


def _indexes() -> dict[str, tuple[Index, ...]]:
    """The indexes ``crm init`` creates on the tables the sync's queries filter and join on,
    named as Infor CRM names them (TABLE_COLUMN; ``ADHOCGROUPID`` and
    ``ADHOCGROUP_ENTITYID`` are Infor's own, from its database reference). The sync never
    requires them (every query runs without), but the group read (ADHOCGROUP by GROUPID ->
    CONTACT by CONTACTID -> SECRIGHTS by ACCESSID and SECCODEID, R1/R2) and the account
    and address joins use them when they are there (README "A real Infor CRM database";
    ``bench/fleet.py`` records the query plans). Fresh objects per call: an Index belongs
    to one table, and each schema has its own tables.
    """
    return {
        "CONTACT": (
            Index("CONTACT_ACCOUNTID", "ACCOUNTID"),
            Index("CONTACT_SECCODEID", "SECCODEID"),
        ),
        # ACCESSID first: the rights subquery reads one user's grants; RECORDACCESS last so
        # the read-only flag (R1) comes from the index alone.
        "SECRIGHTS": (
            Index("SECRIGHTS_ACCESSID", "ACCESSID", "SECCODEID", "RECORDACCESS"),
            Index("SECRIGHTS_SECCODEID", "SECCODEID"),
        ),
        "ADHOCGROUP": (
            Index("ADHOCGROUPID", "GROUPID"),
            Index("ADHOCGROUP_ENTITYID", "ENTITYID"),
        ),
    }


@dataclass(frozen=True)
class CrmTables:
    """The CRM tables of one schema, bound to one ``MetaData``."""

    metadata: MetaData
    contact: Table
    account: Table
    address: Table
    seccode: Table
    secrights: Table
    usersecurity: Table
    userinfo: Table
    plugin: Table
    adhocgroup: Table

    @property
    def all(self) -> tuple[Table, ...]:
        return (
            self.contact, self.account, self.address, self.seccode, self.secrights,
            self.usersecurity, self.userinfo, self.plugin, self.adhocgroup,
        )


@cache
def crm_tables(schema: str | None = None) -> CrmTables:
    """The CRM tables in ``schema`` (``"sysdba"`` on SQL Server; None on SQLite/PostgreSQL).

    Cached so every reader and writer of one schema shares the same ``Table`` objects.
    """
    md = MetaData(schema=schema or None)
    idx = _indexes()
    contact = Table(
        "CONTACT", md,
        Column("CONTACTID", ID, primary_key=True),
        Column("ACCOUNTID", ID),
        Column("ACCOUNT", String(_COMPANY)),
        *_field_columns("CONTACT"),
        Column("LASTNAME_UC", String(FIELD["last_name"].length)),
        Column("FAX", String(32)),
        Column("OTHERPHONE", String(32)),
        Column("ADDRESSID", ID),
        Column("SHIPPINGID", ID),
        Column("TYPE", String(64)),
        Column("STATUS", String(64)),
        Column("ISPRIMARY", FLAG),
        Column("DESCRIPTION", String(128)),
        Column("SECCODEID", ID),
        Column("ACCOUNTMANAGERID", ID),
        *_audit(),
        *idx["CONTACT"],
    )
    account = Table(
        "ACCOUNT", md,
        Column("ACCOUNTID", ID, primary_key=True),
        Column("ACCOUNT", String(_COMPANY)),
        Column("ACCOUNT_UC", String(_COMPANY)),
        Column("TYPE", String(64)),
        Column("STATUS", String(64)),
        Column("SUBTYPE", String(64)),
        Column("ADDRESSID", ID),
        Column("SHIPPINGID", ID),
        Column("MAINPHONE", String(32)),
        Column("FAX", String(32)),
        Column("EMAIL", String(128)),
        Column("WEBADDRESS", String(128)),
        Column("SECCODEID", ID),
        Column("ACCOUNTMANAGERID", ID),
        *_audit(),
        Index("ACCOUNT_ACCOUNT", "ACCOUNT"),
    )
    address = Table(
        "ADDRESS", md,
        Column("ADDRESSID", ID, primary_key=True),
        Column("ENTITYID", ID),
        Column("TYPE", String(64)),
        Column("DESCRIPTION", String(64)),
        *_field_columns("ADDRESS"),
        Column("COUNTY", String(32)),
        Column("ISPRIMARY", FLAG),
        Column("ISMAILING", FLAG),
        *_audit(),
        Index("ADDRESS_ENTITYID", "ENTITYID"),
    )
    seccode = Table(
        "SECCODE", md,
        Column("SECCODEID", ID, primary_key=True),
        Column("SECCODEDESC", String(64)),
        Column("SECCODETYPE", CHAR(1)),
        *_audit(),
    )
    secrights = Table(
        "SECRIGHTS", md,
        Column("SECRIGHTSID", ID, primary_key=True),
        Column("SECCODEID", ID),
        Column("ACCESSID", ID),
        Column("PROFILEID", ID),
        Column("RECORDACCESS", CHAR(1)),
        *_audit(),
        *idx["SECRIGHTS"],
    )
    usersecurity = Table(
        "USERSECURITY", md,
        Column("USERID", ID, primary_key=True),
        Column("USERCODE", String(30)),
        Column("TYPE", CHAR(1)),
        Column("DEFAULTSECCODEID", ID),
        Column("ENABLED", FLAG),
        *_audit(),
    )
    userinfo = Table(
        "USERINFO", md,
        Column("USERID", ID, primary_key=True),
        Column("USERNAME", String(64)),
        Column("FIRSTNAME", String(32)),
        Column("LASTNAME", String(32)),
        Column("EMAIL", String(128)),
        *_audit(),
    )
    plugin = Table(
        "PLUGIN", md,
        Column("PLUGINID", ID, primary_key=True),
        Column("NAME", String(64)),
        Column("FAMILY", String(32)),
        Column("TYPE", Integer),
        Column("USERID", ID),
        Column("ISPUBLIC", FLAG),
        Column("BASEDON", String(64)),
        Column("DATA", LargeBinary),
        *_audit(),
        Index("PLUGIN_USER", "USERID", "TYPE", "FAMILY"),
    )
    adhocgroup = Table(
        "ADHOCGROUP", md,
        Column("GROUPID", ID, primary_key=True),
        Column("ENTITYID", ID, primary_key=True),
        *_audit(),
        *idx["ADHOCGROUP"],
    )
    return CrmTables(
        md, contact, account, address, seccode, secrights, usersecurity, userinfo, plugin, adhocgroup
    )
