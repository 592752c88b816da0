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

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from contactsync import model
from contactsync.crm.extract import (
    ADDRESS_FIELD_COLUMNS,
    CONTACT_FIELD_COLUMNS,
    GROUP_FAMILY,
    GROUP_TYPE,
    STREET_COLUMNS,
    CrmReader,
    _chunks,
    rights_subquery,
)
from contactsync.crm.ids import IdAllocator
from contactsync.crm.schema import crm_tables
from contactsync.errors import TransientError

RESULT_COLUMNS: tuple[str, ...] = ("action_id", "status", "crm_id", "account_id", "error")
CHUNK = 1000
EVERYONE = "SYST00000001"
#: Execution order of CRM operations: accounts before the contacts that refer to them.
OP_ORDER = ("create_account", "create", "update", "group_add", "group_remove")
NOOP_OPS = ("link", "unlink", "skip")
_CONTACT_COLUMN_LIMITS = {col: model.CRM_LENGTHS[f] for f, col in CONTACT_FIELD_COLUMNS.items()
                          if f in model.CRM_LENGTHS}
_ACCOUNT_NAME_LENGTH = model.CRM_LENGTHS["company"]  # ACCOUNT.ACCOUNT and CONTACT.ACCOUNT


def _is_transient(exc: sa.exc.SQLAlchemyError) -> bool:
    """A lost connection or a lock timeout: retrying the cycle helps, quarantining does not."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa.exc.OperationalError)


class ValueTooLong(ValueError):
    """A value does not fit its CRM column; it is reported, never truncated (R19)."""


@dataclass
class _Unit:
    """One action's writes: executed together, committed or rolled back together."""

    result: dict[str, Any]
    ops: list[tuple[Hashable, Any, dict[str, Any]]] = field(default_factory=list)


def _val(value: Any) -> Any:
    """None for NA/NaN/empty strings; the value otherwise (written exactly as held)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, str) and value.strip() == "":
        return None
    return value


def _fields(row: dict[str, Any]) -> list[str]:
    raw = _val(row.get("fields")) or ""
    return [f.strip() for f in str(raw).split(",") if f.strip()]


def _record(row: dict[str, Any]) -> str:
    """How a message names the record: its CONTACTID, else its Outlook id / plan key."""
    for key in ("crm_id", "new_key", "outlook_id", "account_key", "action_id"):
        v = _val(row.get(key))
        if v is not None:
            return str(v).rstrip()
    return "?"


def _check_length(table: str, column: str, value: str | None, limit: int, record: str) -> None:
    if value is not None and len(value) > limit:
        raise ValueTooLong(
            f"{table}.{column} of {record} is {len(value)} characters; the CRM column holds "
            f"{limit} (R19: not written, never truncated)"
        )


def parse_birthday(value: str | None, record: str) -> datetime | None:
    """Canonical 'YYYY-MM-DD' as the datetime the CRM stores (midnight)."""
    if value is None:
        return None
    try:
        return datetime.strptime(str(value).strip()[:10], "%Y-%m-%d")
    except ValueError as exc:
        raise ValueTooLong(f"CONTACT.BIRTHDAY of {record}: {value!r} is not a date YYYY-MM-DD (R19)") from exc


def split_street(street: str | None, record: str) -> dict[str, str | None]:
    """ADDRESS1..4 from the canonical street; more than 4 lines or a long line fails (R19)."""
    lines: list[str | None] = []
    if street is not None:
        lines = list(str(street).replace("\r\n", "\n").split("\n"))
        while lines and not lines[-1].strip():
            lines.pop()
    if len(lines) > model.STREET_MAX_LINES:
        raise ValueTooLong(
            f"ADDRESS street of {record} has {len(lines)} lines; the CRM holds "
            f"{model.STREET_MAX_LINES} ({model.FIELD['street'].crm_name}) (R19: not written)"
        )
    out: dict[str, str | None] = {}
    for i, col in enumerate(STREET_COLUMNS):
        # Lines are kept as they are (a blank middle line stays blank, not NULL), so the
        # street reads back exactly as written.
        line = (lines[i] or None) if i < len(lines) else None
        _check_length("ADDRESS", col, line, model.STREET_LINE_LENGTH, record)
        out[col] = line
    return out


def contact_columns(row: dict[str, Any], fields: Sequence[str], record: str) -> dict[str, Any]:
    """CONTACT column values of ``fields`` (company excluded: R6), length-checked."""
    out: dict[str, Any] = {}
    for f in fields:
        col = CONTACT_FIELD_COLUMNS.get(f)
        if col is None:
            continue
        value = _val(row.get(f))
        if f == "birthday":
            out[col] = parse_birthday(value, record)
            continue
        value = None if value is None else str(value)
        _check_length("CONTACT", col, value, _CONTACT_COLUMN_LIMITS[col], record)
        out[col] = value
    if "LASTNAME" in out:
        out["LASTNAME_UC"] = None if out["LASTNAME"] is None else out["LASTNAME"].upper()[:_CONTACT_COLUMN_LIMITS["LASTNAME"]]
    return out


def address_columns(row: dict[str, Any], fields: Sequence[str], record: str) -> dict[str, Any]:
    """ADDRESS column values of the address ``fields``, length-checked."""
    out: dict[str, Any] = {}
    if "street" in fields:
        out.update(split_street(_val(row.get("street")), record))
    for f, col in ADDRESS_FIELD_COLUMNS.items():
        if f in fields:
            value = _val(row.get(f))
            value = None if value is None else str(value)
            _check_length("ADDRESS", col, value, model.CRM_LENGTHS[f], record)
            out[col] = value
    return out


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
        columns = list(crm_rows.columns)
        rows = [dict(zip(columns, values, strict=True))
                for values in zip(*(crm_rows[c].tolist() for c in columns), strict=True)]
        by_op: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_op.setdefault(str(row.get("op")), []).append(row)
        for op, op_rows in by_op.items():
            if op not in OP_ORDER:
                for row in op_rows:
                    status = "noop" if op in NOOP_OPS else "failed"
                    err = None if op in NOOP_OPS else f"unknown CRM operation {op!r} for {_record(row)}"
                    emit(self._result(row, status, error=err))
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
        account_units = self._create_accounts(by_op["create_account"]) if by_op.get("create_account") else []
        if account_units and not by_op.get("create"):
            self._execute(account_units, emit)
            self._forget_failed(account_units)
            account_units = []
        for op in OP_ORDER[1:]:
            for chunk_start in range(0, len(by_op.get(op, [])), CHUNK):
                chunk = by_op[op][chunk_start : chunk_start + CHUNK]
                units = handlers[op](chunk)
                if account_units:
                    units, account_units = account_units + units, []
                self._execute(units, emit)
                self._forget_failed(units)
        out = pd.DataFrame.from_records(results, columns=list(RESULT_COLUMNS))
        return out.astype(object).where(out.notna(), None)

    # --- operations: each returns its units, built and validated before any write ------
    def _create_accounts(self, rows: list[dict[str, Any]]) -> list[_Unit]:
        a = self.tables.account
        preset = [v for v in (_val(r.get("account_id")) for r in rows) if v is not None]
        existing = self._existing(a.c.ACCOUNTID, preset)
        need = [r for r in rows if _val(r.get("account_id")) is None]
        new_ids = iter(self.allocator.allocate("A", len(need)))
        units = []
        for row in rows:
            name = _val(row.get("account_name"))
            account_id = _val(row.get("account_id")) or next(new_ids)
            unit = _Unit(self._result(row, "applied", account_id=account_id))
            units.append(unit)
            key = _val(row.get("account_key")) or f"acct:{name}"
            if name is None:
                self._fail(unit, f"account for {_record(row)} has no name (R5a/R5c)")
                continue
            name = str(name)
            try:
                _check_length("ACCOUNT", "ACCOUNT", name, _ACCOUNT_NAME_LENGTH, _record(row))
            except ValueTooLong as exc:
                self._fail(unit, str(exc))
                continue
            self._accounts[key] = (account_id, name)
            if account_id.rstrip() in existing:
                continue  # created by an earlier, interrupted run (R18)
            unit.ops.append((("ins", "ACCOUNT"), self._insert["ACCOUNT"], {
                "ACCOUNTID": account_id, "ACCOUNT": name, "ACCOUNT_UC": name.upper()[:_ACCOUNT_NAME_LENGTH],
                "TYPE": "Prospect", "STATUS": "Active", "SECCODEID": EVERYONE,
                "ACCOUNTMANAGERID": self.user, **self._audit(self._now_value, insert=True),
            }))
        return units

    def _create_contacts(self, rows: list[dict[str, Any]]) -> list[_Unit]:
        t = self.tables
        preset = [v for v in (_val(r.get("crm_id")) for r in rows) if v is not None]
        existing = self._existing(t.contact.c.CONTACTID, preset, t.contact.c.ACCOUNTID)
        need = [r for r in rows if _val(r.get("crm_id")) is None]
        contact_ids = iter(self.allocator.allocate("C", len(need)))
        address_ids = iter(self.allocator.allocate("a", len(rows) - len(set(existing) & set(preset))))
        names = self._account_names(rows)
        owner = self._default_owner()
        units = []
        for row in rows:
            crm_id = _val(row.get("crm_id")) or next(contact_ids)
            key = _val(row.get("new_key"))
            if key is not None:
                self._new_ids[key] = crm_id
            unit = _Unit(self._result(row, "applied", crm_id=crm_id))
            units.append(unit)
            if crm_id.rstrip() in existing:  # written by an earlier, interrupted run (R18)
                unit.result["account_id"] = existing[crm_id.rstrip()]
                continue
            account_id, account_name = self._account_for(row, names)
            unit.result["account_id"] = account_id
            if account_id is None:
                self._fail(unit, f"no account for new contact {_record(row)}: its account "
                                 f"{_val(row.get('account_key')) or '(none given)'} was not created (R5)")
                continue
            fields = _fields(row) or [f for f in model.FIELDS if _val(row.get(f)) is not None]
            record = _record(row)
            try:
                contact = {col: None for col in CONTACT_FIELD_COLUMNS.values()}
                contact["LASTNAME_UC"] = None
                contact.update(contact_columns(row, fields, record))
                address = {col: None for col in (*STREET_COLUMNS, *ADDRESS_FIELD_COLUMNS.values())}
                address.update(address_columns(row, fields, record))
                _check_length("CONTACT", "ACCOUNT", account_name, _ACCOUNT_NAME_LENGTH, record)
            except ValueTooLong as exc:
                self._fail(unit, str(exc))
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

    def _update_contacts(self, rows: list[dict[str, Any]]) -> list[_Unit]:
        t = self.tables
        c, ad = t.contact, t.address
        targets = self._visible([self._crm_id(r) for r in rows])
        need_address = []
        units = []
        for row in rows:
            crm_id = self._crm_id(row)
            unit = _Unit(self._result(row, "applied", crm_id=crm_id))
            units.append(unit)
            record = _record(row) if crm_id is None else crm_id.rstrip()
            target = targets.get((crm_id or "").rstrip())
            if target is None:
                self._fail(unit, f"contact {record} is not visible to user {self.user.strip()} "
                                 "or no longer exists; not updated (R1)")
                continue
            unit.result["account_id"] = target["account_id"]
            if target["read_only"]:
                self._fail(unit, f"contact {record} is read-only for user {self.user.strip()} "
                                 "(SECRIGHTS.RECORDACCESS 'R'); not updated (R1)")
                continue
            fields = [f for f in _fields(row) if f not in model.CRM_TO_OUTLOOK_ONLY]  # R6
            if not fields:
                unit.result["status"] = "noop"
                continue
            try:
                contact = contact_columns(row, fields, record)
                address = address_columns(row, fields, record)
            except ValueTooLong as exc:
                self._fail(unit, str(exc))
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

    def _group_add(self, rows: list[dict[str, Any]]) -> list[_Unit]:
        ids = [self._crm_id(r) for r in rows]
        targets = self._visible(ids)
        members = self._members(ids)
        units, seen = [], set()
        for row in rows:
            crm_id = self._crm_id(row)
            unit = _Unit(self._result(row, "applied", crm_id=crm_id))
            units.append(unit)
            key = (crm_id or "").rstrip()
            if key not in targets:
                self._fail(unit, f"contact {_record(row) if crm_id is None else key} is not visible to "
                                 f"user {self.user.strip()} or no longer exists; not added to the group (R1)")
                continue
            if key in members or key in seen:
                continue  # already a member: nothing to write (R17)
            seen.add(key)
            unit.ops.append((("ins", "ADHOCGROUP"), self._insert["ADHOCGROUP"], {
                "GROUPID": self._group, "ENTITYID": crm_id,
                **self._audit(self._now_value, insert=True)}))
        return units

    def _group_remove(self, rows: list[dict[str, Any]]) -> list[_Unit]:
        g = self.tables.adhocgroup
        stmt = sa.delete(g).where(g.c.GROUPID == sa.bindparam("k_group"),
                                  g.c.ENTITYID == sa.bindparam("k_id"))
        units = []
        for row in rows:
            crm_id = self._crm_id(row)
            unit = _Unit(self._result(row, "applied", crm_id=crm_id))
            units.append(unit)
            if crm_id is None:
                self._fail(unit, f"group removal of {_record(row)} names no contact (R11)")
                continue
            # Only the membership row goes; the CONTACT row is never deleted (R15).
            unit.ops.append((("del", "ADHOCGROUP"), stmt, {"k_group": self._group, "k_id": crm_id}))
        return units

    # --- execution ---------------------------------------------------------------------
    def _execute(self, units: list[_Unit], emit: Callable[[dict[str, Any]], None]) -> None:
        """All units of a chunk in one transaction (executemany per statement); if that
        fails, again one transaction per unit, so only the failing unit is lost."""
        pending = [u for u in units if u.ops and u.result["status"] == "applied"]
        if pending:
            try:
                with self.engine.begin() as conn:
                    grouped: dict[Hashable, tuple[Any, list[dict[str, Any]]]] = {}
                    for u in pending:
                        for key, stmt, params in u.ops:
                            grouped.setdefault(key, (stmt, []))[1].append(params)
                    for stmt, params in grouped.values():
                        conn.execute(stmt, params)
            except sa.exc.SQLAlchemyError as exc:
                if _is_transient(exc):
                    # The database, not a record, failed: nothing of this chunk was
                    # written; earlier chunks are committed and were reported (R18).
                    raise TransientError(
                        f"the CRM database failed while writing ({str(exc).splitlines()[0]})",
                        hint="the next cycle resumes; check the CRM database connection",
                    ) from exc
                dead_accounts: set[str] = set()
                for u in pending:
                    if u.result["crm_id"] and u.result.get("account_id") in dead_accounts:
                        self._fail(u, f"no account for new contact {u.result['crm_id']}: its account "
                                      f"{u.result['account_id']} was not created (R5)")
                        continue
                    try:
                        with self.engine.begin() as conn:
                            for _, stmt, params in u.ops:
                                conn.execute(stmt, params)
                    except sa.exc.SQLAlchemyError as exc:
                        orig = getattr(exc, "orig", None) or exc
                        self._fail(u, f"writing {u.result['crm_id'] or u.result['action_id']} "
                                      f"failed and was rolled back: {str(orig).splitlines()[0]}")
                        if not u.result["crm_id"] and u.result.get("account_id"):
                            dead_accounts.add(u.result["account_id"])
        for u in units:
            emit(u.result)

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

    def _forget_failed(self, units: list[_Unit]) -> None:
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

    @staticmethod
    def _result(row: dict[str, Any], status: str, *, crm_id: str | None = None,
                account_id: str | None = None, error: str | None = None) -> dict[str, Any]:
        return {"action_id": _val(row.get("action_id")), "status": status, "crm_id": crm_id,
                "account_id": account_id, "error": error}

    @staticmethod
    def _fail(unit: _Unit, message: str) -> None:
        unit.result["status"] = "failed"
        unit.result["error"] = message
        unit.ops.clear()

    def _crm_id(self, row: dict[str, Any]) -> str | None:
        crm_id = _val(row.get("crm_id"))
        if crm_id is None:
            key = _val(row.get("new_key"))
            crm_id = self._new_ids.get(key) if key is not None else None
        return crm_id

    def _default_owner(self) -> str:
        if self._owner is None:
            self._owner = self.reader.default_owner()
        return self._owner

    def _existing(self, key: sa.Column, ids: Sequence[str], extra: sa.Column | None = None) -> dict[str, Any]:
        """Which of ``ids`` exist (-> ``extra``'s value): makes pre-allocated creates idempotent."""
        found: dict[str, Any] = {}
        cols = [key] if extra is None else [key, extra]
        with self.engine.connect() as conn:
            for chunk in _chunks(list(ids)):
                for r in conn.execute(sa.select(*cols).where(key.in_(chunk))):
                    found[str(r[0]).rstrip()] = r[1] if extra is not None else True
        return found

    def _visible(self, ids: Sequence[str | None]) -> dict[str, dict[str, Any]]:
        """Visible contacts among ``ids`` with their account, address row and read-only flag (R1)."""
        c, ad = self.tables.contact, self.tables.address
        rights = rights_subquery(self.tables, self.user)
        stmt = (
            sa.select(c.c.CONTACTID, c.c.ACCOUNTID, ad.c.ADDRESSID, rights.c.ro)
            .select_from(c.join(rights, rights.c.seccodeid == c.c.SECCODEID)
                         .outerjoin(ad, ad.c.ADDRESSID == c.c.ADDRESSID))
        )
        found: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks([i for i in ids if i is not None]):
                for r in conn.execute(stmt.where(c.c.CONTACTID.in_(chunk))):
                    found[str(r[0]).rstrip()] = {"account_id": r[1], "address_id": r[2],
                                                 "read_only": r[3] == 1}
        return found

    def _members(self, ids: Sequence[str | None]) -> set[str]:
        g = self.tables.adhocgroup
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks([i for i in ids if i is not None]):
                found.update(str(v).rstrip() for v in conn.execute(
                    sa.select(g.c.ENTITYID).where(g.c.GROUPID == self._group, g.c.ENTITYID.in_(chunk))
                ).scalars())
        return found

    def _account_names(self, rows: list[dict[str, Any]]) -> dict[str, str | None]:
        """Names of existing accounts that creates refer to by id without a name (R5b)."""
        ids = [_val(r.get("account_id")) for r in rows if _val(r.get("account_name")) is None]
        a = self.tables.account
        names: dict[str, str | None] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks([i for i in ids if i is not None]):
                for r in conn.execute(sa.select(a.c.ACCOUNTID, a.c.ACCOUNT).where(a.c.ACCOUNTID.in_(chunk))):
                    names[str(r[0]).rstrip()] = r[1]
        return names

    def _account_for(self, row: dict[str, Any], names: dict[str, str | None]) -> tuple[str | None, str | None]:
        """The account of a new contact: an existing one (R5b) or one made for its key (R5a/R5c)."""
        account_id = _val(row.get("account_id"))
        name = _val(row.get("account_name"))
        if account_id is None:
            key = _val(row.get("account_key"))
            if key is None or key not in self._accounts:
                return None, None
            account_id, made_name = self._accounts[key]
            name = name or made_name
        if name is None:
            name = names.get(str(account_id).rstrip()) or _val(row.get("company"))
        return account_id, name
