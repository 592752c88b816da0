"""Writes the CRM side of a plan: accounts, contacts, addresses and sync-group membership.

What a user relies on here:

- the sync never deletes a CONTACT or ACCOUNT row (R15): the only DELETE it issues is of
  its own ADHOCGROUP membership rows (``group_remove``);
- it writes only the columns it owns, so the many other columns of a real Infor CRM
  database are left as they are, and it stamps MODIFYDATE/MODIFYUSER (CREATE* on insert)
  with the time (UTC) and the padded USERID;
- each contact is one unit: a unit that fails is rolled back alone and reported with the
  record and the rule, the others go on; a value longer than its column is never
  truncated (R19, the last line of defence behind the pipeline's quarantine);
- a create carrying a pre-allocated id (the pipeline journals ids before writing, R18)
  whose row already exists is reported as applied, so a re-run never duplicates;
- rows are written with executemany in chunks (one transaction per chunk, falling back
  to one transaction per unit when the chunk fails), so a first sync of 50,000 contacts
  takes seconds.
"""

# SIM300 mistakes the CRM's upper-case column names (p.c.NAME) for constants.
# ruff: noqa: SIM300

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from contactsync import model
from contactsync.crm.columns import (
    ACCOUNT_NAME_LENGTH,
    ValueTooLong,
    address_columns,
    check_length,
    contact_columns,
    listed_fields,
    record_name,
    value_or_none,
)
from contactsync.crm.extract import (
    ADDRESS_FIELD_COLUMNS,
    CONTACT_FIELD_COLUMNS,
    GROUP_FAMILY,
    GROUP_TYPE,
    STREET_COLUMNS,
    CrmReader,
)
from contactsync.crm.ids import IdAllocator
from contactsync.crm.schema import crm_tables
from contactsync.crm.units import RESULT_COLUMNS, Unit, execute, fail, result_of

CHUNK = 1000
EVERYONE = "SYST00000001"
#: Execution order of CRM operations: accounts before the contacts that refer to them.
OP_ORDER = ("create_account", "create", "update", "group_add", "group_remove")
NOOP_OPS = ("link", "unlink", "skip")


class CrmWriter:
    """Executes the CRM rows of a plan for one user (see the module docstring)."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        schema: str | None,
        user_id: str,
        site_code: str,
        allocator: IdAllocator,
    ) -> None:
        self.engine = engine
        self.tables = crm_tables(schema)
        self.user = model.pad_user(user_id)
        self.site_code = site_code
        self.allocator = allocator
        self.reader = CrmReader(engine, schema=schema, user_id=user_id)
        self._owner: str | None = None
        t = self.tables
        self._stmts: dict[Hashable, Any] = {}
        self._insert = {tb.name: sa.insert(tb) for tb in (t.account, t.contact, t.address, t.adhocgroup)}

    # --- groups ------------------------------------------------------------------------
    def ensure_group(self, name: str) -> str:
        """The PLUGINID of the user's contact sync group ``name``, created if missing (R2)."""
        found = self.reader.group_id(name)
        if found is not None:
            return found
        if len(name) > 64:
            raise ValueTooLong(f"PLUGIN.NAME {name!r} is {len(name)} characters; the CRM holds 64")
        (gid,) = self.allocator.allocate("p", 1)
        now = self._now()
        with self.engine.begin() as conn:
            conn.execute(sa.insert(self.tables.plugin).values(
                PLUGINID=gid, NAME=name, FAMILY=GROUP_FAMILY, TYPE=GROUP_TYPE, USERID=self.user,
                ISPUBLIC="F", BASEDON="CONTACT", DATA=None, **self._audit(now, insert=True),
            ))
        return self.reader.group_id(name) or gid

    # --- the plan ----------------------------------------------------------------------
    def apply(
        self,
        actions: pd.DataFrame,
        *,
        group_id: str,
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> pd.DataFrame:
        """Execute the CRM rows of ``actions`` (plan.schema.ACTION_COLUMNS); one result each.

        Order: create_account, create, update, group_add, group_remove; link/unlink/skip
        write nothing here (status 'noop'). ``on_result`` gets each result as soon as its
        unit is committed, so the pipeline can journal it (R18).
        """
        self._now_value = self._now()
        self._group = group_id
        self._accounts: dict[str, tuple[str, str | None]] = {}  # account_key -> (id, name)
        self._new_ids: dict[str, str] = {}  # new_key -> CONTACTID
        results: list[dict[str, Any]] = []

        def emit(res: dict[str, Any]) -> None:
            results.append(res)
            if on_result is not None:
                on_result(res)

        if actions is None or actions.empty:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in RESULT_COLUMNS})
        crm_rows = actions[actions["side"] == "crm"] if "side" in actions else actions
        # The rows of each operation, by position, in plan order; they become dicts a chunk
        # at a time as they are written: a first sync's 50,000 CRM rows as dicts at once were
        # ~50 MB of its peak (issue 15 goal 3).
        ops = crm_rows["op"].to_numpy(dtype=object).astype(str) if len(crm_rows) else np.array([], dtype=str)
        by_op = {str(op): np.flatnonzero(ops == op) for op in pd.unique(ops)}
        for op, at in by_op.items():
            if op not in OP_ORDER:
                for row in _dicts(crm_rows, at):
                    status = "noop" if op in NOOP_OPS else "failed"
                    err = None if op in NOOP_OPS else f"unknown CRM operation {op!r} for {record_name(row)}"
                    emit(result_of(row, status, error=err))
        handlers = {
            "create_account": self._create_accounts,
            "create": self._create_contacts,
            "update": self._update_contacts,
            "group_add": self._group_add,
            "group_remove": self._group_remove,
        }
        # R18: new accounts commit in the same transaction as the first chunk of contacts
        # (the ones they are made for), so a cycle cut between the two never leaves an
        # account without its contact - R5a would make a second one on the next cycle.
        no_rows = np.array([], dtype=np.intp)
        accounts = by_op.get("create_account", no_rows)
        account_units = self._create_accounts(_dicts(crm_rows, accounts)) if len(accounts) else []
        if account_units and not len(by_op.get("create", no_rows)):
            execute(self.engine, account_units, emit)
            self._forget_failed(account_units)
            account_units = []
        for op in OP_ORDER[1:]:
            at = by_op.get(op, no_rows)
            for chunk_start in range(0, len(at), CHUNK):
                chunk = _dicts(crm_rows, at[chunk_start : chunk_start + CHUNK])
                units = handlers[op](chunk)
                if account_units:
                    units, account_units = account_units + units, []
                execute(self.engine, units, emit)
                self._forget_failed(units)
        out = pd.DataFrame.from_records(results, columns=list(RESULT_COLUMNS))
        return out.astype(object).where(out.notna(), None)

    # --- operations: each returns its units, built and validated before any write ------
    def _create_accounts(self, rows: list[dict[str, Any]]) -> list[Unit]:
        a = self.tables.account
        preset = [v for v in (value_or_none(r.get("account_id")) for r in rows) if v is not None]
        existing = self.reader.existing(a.c.ACCOUNTID, preset)
        need = [r for r in rows if value_or_none(r.get("account_id")) is None]
        new_ids = iter(self.allocator.allocate("A", len(need)))
        units = []
        for row in rows:
            name = value_or_none(row.get("account_name"))
            account_id = value_or_none(row.get("account_id")) or next(new_ids)
            unit = Unit(result_of(row, "applied", account_id=account_id))
            units.append(unit)
            key = value_or_none(row.get("account_key")) or f"acct:{name}"
            if name is None:
                fail(unit, f"account for {record_name(row)} has no name (R5a/R5c)")
                continue
            name = str(name)
            try:
                check_length("ACCOUNT", "ACCOUNT", name, ACCOUNT_NAME_LENGTH, record_name(row))
            except ValueTooLong as exc:
                fail(unit, str(exc))
                continue
            self._accounts[key] = (account_id, name)
            if account_id.rstrip() in existing:
                continue  # created by an earlier, interrupted run (R18)
            unit.ops.append((("ins", "ACCOUNT"), self._insert["ACCOUNT"], {
                "ACCOUNTID": account_id, "ACCOUNT": name, "ACCOUNT_UC": name.upper()[:ACCOUNT_NAME_LENGTH],
                "TYPE": "Prospect", "STATUS": "Active", "SECCODEID": EVERYONE,
                "ACCOUNTMANAGERID": self.user, **self._audit(self._now_value, insert=True),
            }))
        return units

    def _create_contacts(self, rows: list[dict[str, Any]]) -> list[Unit]:
        t = self.tables
        preset = [v for v in (value_or_none(r.get("crm_id")) for r in rows) if v is not None]
        existing = self.reader.existing(t.contact.c.CONTACTID, preset, t.contact.c.ACCOUNTID)
        need = [r for r in rows if value_or_none(r.get("crm_id")) is None]
        contact_ids = iter(self.allocator.allocate("C", len(need)))
        address_ids = iter(self.allocator.allocate("a", len(rows) - len(set(existing) & set(preset))))
        names = self.reader.account_names(
            [value_or_none(r.get("account_id")) for r in rows if value_or_none(r.get("account_name")) is None])
        owner = self._default_owner()
        units = []
        for row in rows:
            crm_id = value_or_none(row.get("crm_id")) or next(contact_ids)
            key = value_or_none(row.get("new_key"))
            if key is not None:
                self._new_ids[key] = crm_id
            unit = Unit(result_of(row, "applied", crm_id=crm_id))
            units.append(unit)
            if crm_id.rstrip() in existing:  # written by an earlier, interrupted run (R18)
                unit.result["account_id"] = existing[crm_id.rstrip()]
                continue
            account_id, account_name = self._account_for(row, names)
            unit.result["account_id"] = account_id
            if account_id is None:
                fail(unit, f"no account for new contact {record_name(row)}: its account "
                                 f"{value_or_none(row.get('account_key')) or '(none given)'} was not created (R5)")
                continue
            fields = listed_fields(row) or [f for f in model.FIELDS if value_or_none(row.get(f)) is not None]
            record = record_name(row)
            try:
                contact = {col: None for col in CONTACT_FIELD_COLUMNS.values()}
                contact["LASTNAME_UC"] = None
                contact.update(contact_columns(row, fields, record))
                address = {col: None for col in (*STREET_COLUMNS, *ADDRESS_FIELD_COLUMNS.values())}
                address.update(address_columns(row, fields, record))
                check_length("CONTACT", "ACCOUNT", account_name, ACCOUNT_NAME_LENGTH, record)
            except ValueTooLong as exc:
                fail(unit, str(exc))
                continue
            address_id = next(address_ids)
            audit = self._audit(self._now_value, insert=True)
            unit.ops.append((("ins", "ADDRESS"), self._insert["ADDRESS"], {
                "ADDRESSID": address_id, "ENTITYID": crm_id, "TYPE": "Business",
                "DESCRIPTION": "Business", "ISPRIMARY": "T", "ISMAILING": "T", **address, **audit,
            }))
            unit.ops.append((("ins", "CONTACT"), self._insert["CONTACT"], {
                "CONTACTID": crm_id, "ACCOUNTID": account_id, "ACCOUNT": account_name,
                "ADDRESSID": address_id, "ISPRIMARY": "F", "SECCODEID": owner,
                "ACCOUNTMANAGERID": self.user, **contact, **audit,
            }))
            unit.ops.append((("ins", "ADHOCGROUP"), self._insert["ADHOCGROUP"],
                             {"GROUPID": self._group, "ENTITYID": crm_id, **audit}))
        return units

    def _update_contacts(self, rows: list[dict[str, Any]]) -> list[Unit]:
        t = self.tables
        c, ad = t.contact, t.address
        targets = self.reader.visible([self._crm_id(r) for r in rows])
        need_address = []
        units = []
        for row in rows:
            crm_id = self._crm_id(row)
            unit = Unit(result_of(row, "applied", crm_id=crm_id))
            units.append(unit)
            record = record_name(row) if crm_id is None else crm_id.rstrip()
            target = targets.get((crm_id or "").rstrip())
            if target is None:
                fail(unit, f"contact {record} is not visible to user {self.user.strip()} "
                                 "or no longer exists; not updated (R1)")
                continue
            unit.result["account_id"] = target["account_id"]
            if target["read_only"]:
                fail(unit, f"contact {record} is read-only for user {self.user.strip()} "
                                 "(SECRIGHTS.RECORDACCESS 'R'); not updated (R1)")
                continue
            fields = [f for f in listed_fields(row) if f not in model.CRM_TO_OUTLOOK_ONLY]  # R6
            if not fields:
                unit.result["status"] = "noop"
                continue
            try:
                contact = contact_columns(row, fields, record)
                address = address_columns(row, fields, record)
            except ValueTooLong as exc:
                fail(unit, str(exc))
                continue
            audit = self._audit(self._now_value, insert=False)
            if address:
                if target["address_id"] is not None:
                    key, stmt = self._update_stmt(ad, "ADDRESSID", (*address, *audit))
                    unit.ops.append((key, stmt, {"k_id": target["address_id"],
                                                 **{f"v_{k}": v for k, v in {**address, **audit}.items()}}))
                else:
                    need_address.append((unit, crm_id, address))
            key, stmt = self._update_stmt(c, "CONTACTID", (*contact, *audit))
            unit.ops.append((key, stmt, {"k_id": crm_id,
                                         **{f"v_{k}": v for k, v in {**contact, **audit}.items()}}))
        new_ids = iter(self.allocator.allocate("a", len(need_address)))
        empty_address = {col: None for col in (*STREET_COLUMNS, *ADDRESS_FIELD_COLUMNS.values())}
        for unit, crm_id, address in need_address:
            # The contact had no address row: make its primary one (and point CONTACT at it).
            address_id = next(new_ids)
            unit.ops.append((("ins", "ADDRESS"), self._insert["ADDRESS"], {
                "ADDRESSID": address_id, "ENTITYID": crm_id, "TYPE": "Business",
                "DESCRIPTION": "Business", "ISPRIMARY": "T", "ISMAILING": "T",
                **empty_address, **address, **self._audit(self._now_value, insert=True),
            }))
            key, stmt = self._update_stmt(c, "CONTACTID", ("ADDRESSID",))
            unit.ops.append((key, stmt, {"k_id": crm_id, "v_ADDRESSID": address_id}))
        return units

    def _group_add(self, rows: list[dict[str, Any]]) -> list[Unit]:
        ids = [self._crm_id(r) for r in rows]
        targets = self.reader.visible(ids)
        members = self.reader.members(self._group, ids)
        units, seen = [], set()
        for row in rows:
            crm_id = self._crm_id(row)
            unit = Unit(result_of(row, "applied", crm_id=crm_id))
            units.append(unit)
            key = (crm_id or "").rstrip()
            if key not in targets:
                fail(unit, f"contact {record_name(row) if crm_id is None else key} is not visible to "
                                 f"user {self.user.strip()} or no longer exists; not added to the group (R1)")
                continue
            if key in members or key in seen:
                continue  # already a member: nothing to write (R17)
            seen.add(key)
            unit.ops.append((("ins", "ADHOCGROUP"), self._insert["ADHOCGROUP"], {
                "GROUPID": self._group, "ENTITYID": crm_id,
                **self._audit(self._now_value, insert=True)}))
        return units

    def _group_remove(self, rows: list[dict[str, Any]]) -> list[Unit]:
        g = self.tables.adhocgroup
        stmt = sa.delete(g).where(g.c.GROUPID == sa.bindparam("k_group"),
                                  g.c.ENTITYID == sa.bindparam("k_id"))
        units = []
        for row in rows:
            crm_id = self._crm_id(row)
            unit = Unit(result_of(row, "applied", crm_id=crm_id))
            units.append(unit)
            if crm_id is None:
                fail(unit, f"group removal of {record_name(row)} names no contact (R11)")
                continue
            # Only the membership row goes; the CONTACT row is never deleted (R15).
            unit.ops.append((("del", "ADHOCGROUP"), stmt, {"k_group": self._group, "k_id": crm_id}))
        return units

    def _update_stmt(self, table: sa.Table, key: str, columns: Sequence[str]) -> tuple[Hashable, Any]:
        """UPDATE of ``columns`` by key, built once per column set (executemany needs one
        statement per set; building one per row would cost more than the write)."""
        cache_key = ("upd", table.name, tuple(sorted(columns)))
        stmt = self._stmts.get(cache_key)
        if stmt is None:
            stmt = sa.update(table).where(table.c[key] == sa.bindparam("k_id")).values(
                {col: sa.bindparam(f"v_{col}") for col in cache_key[2]})
            self._stmts[cache_key] = stmt
        return cache_key, stmt

    def _forget_failed(self, units: list[Unit]) -> None:
        """Ids of creates that did not commit must not be used by later rows of the plan."""
        failed = [u.result for u in units if u.result["status"] == "failed"]
        if not failed:
            return
        dead_contacts = {r["crm_id"] for r in failed if r["crm_id"]}
        dead_accounts = {r["account_id"] for r in failed if r["account_id"] and not r["crm_id"]}
        self._new_ids = {k: v for k, v in self._new_ids.items() if v not in dead_contacts}
        self._accounts = {k: v for k, v in self._accounts.items() if v[0] not in dead_accounts}

    # --- helpers -----------------------------------------------------------------------
    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)  # the CRM stores naive UTC

    def _audit(self, now: datetime, *, insert: bool) -> dict[str, Any]:
        audit = {"MODIFYDATE": now, "MODIFYUSER": self.user}
        if insert:
            audit.update(CREATEDATE=now, CREATEUSER=self.user)
        return audit

    def _crm_id(self, row: dict[str, Any]) -> str | None:
        crm_id = value_or_none(row.get("crm_id"))
        if crm_id is None:
            key = value_or_none(row.get("new_key"))
            crm_id = self._new_ids.get(key) if key is not None else None
        return crm_id

    def _default_owner(self) -> str:
        if self._owner is None:
            self._owner = self.reader.default_owner()
        return self._owner

    def _account_for(self, row: dict[str, Any], names: dict[str, str | None]) -> tuple[str | None, str | None]:
        """The account of a new contact: an existing one (R5b) or one made for its key (R5a/R5c)."""
        account_id = value_or_none(row.get("account_id"))
        name = value_or_none(row.get("account_name"))
        if account_id is None:
            key = value_or_none(row.get("account_key"))
            if key is None or key not in self._accounts:
                return None, None
            account_id, made_name = self._accounts[key]
            name = name or made_name
        if name is None:
            name = names.get(str(account_id).rstrip()) or value_or_none(row.get("company"))
        return account_id, name


def _dicts(rows: pd.DataFrame, at: np.ndarray) -> list[dict[str, Any]]:
    """The rows at positions ``at`` as dicts, each column's values as ``tolist`` gives them."""
    part = rows.iloc[at]
    columns = [str(c) for c in part.columns]
    return [dict(zip(columns, values, strict=True))
            for values in zip(*(part.iloc[:, k].tolist() for k in range(len(columns))), strict=True)]
