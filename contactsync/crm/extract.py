"""Security-scoped reads of the CRM: the user's sync group and the lookups planning needs.

Direct SQL bypasses the CRM's own record security, so every query here joins SECRIGHTS
with ACCESSID = the syncing user (R1): a row the user has no rights to is never returned,
not even when it is a member of the user's sync group or has a matching email. A row
whose only grants are RECORDACCESS 'R' is read-only (``read_only``); when several
SECRIGHTS rows grant the same owner, the most permissive wins.

Results are frames of the canonical model (``model.CRM_COLUMNS``), built from one query
each. On PostgreSQL the query runs through ADBC and the frame is built from its Arrow
columns (``crm/arrow_read.py``, ``crm/arrow_frame.py``); SQLite (why: arrow_read's
docstring) and the other databases (SQL Server) read through SQLAlchemy's driver and
vectorised pandas, to the same frame (tests/crm/test_arrow_read.py).
"""

# SIM300 mistakes the CRM's upper-case column names (p.c.NAME) for constants.
# ruff: noqa: SIM300

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import pandas as pd
import sqlalchemy as sa

from contactsync import model
from contactsync.crm import arrow_read
from contactsync.crm.rows import read_frame
from contactsync.crm.schema import CrmTables, crm_tables
from contactsync.crm.values import (
    REPEATING_TEXT,
    dates,
    flag,
    newest,
    shared,
    street_from_lines,
    strings,
    to_utc,
)
from contactsync.errors import FatalError

if TYPE_CHECKING:
    import pyarrow as pa

IN_CHUNK = 500  # values per IN list: 3 lists of 500 stay under SQL Server's 2,100 parameters
#: Above this many distinct emails, one scan of the visible emails beats IN lists.
SCAN_THRESHOLD = 4 * IN_CHUNK
EMAIL_COLUMNS = ("EMAIL", "SECONDARYEMAIL", "EMAIL3")
GROUP_TYPE = 8
GROUP_FAMILY = "Contact"

#: canonical field -> CONTACT column (company and the street are handled apart).
CONTACT_FIELD_COLUMNS: dict[str, str] = model.crm_field_columns("CONTACT")
#: canonical field -> ADDRESS column (the street is ADDRESS1..ADDRESS4).
ADDRESS_FIELD_COLUMNS: dict[str, str] = model.crm_field_columns("ADDRESS")
STREET_COLUMNS: tuple[str, ...] = model.FIELD["street"].crm_columns
#: What one read gives: an Arrow table (ADBC) or a frame of object columns (SQLAlchemy).
Raw: TypeAlias = "pa.Table | pd.DataFrame"  # (pyarrow: only with ADBC, arrow_read's docstring)
log = logging.getLogger(__name__)


def _chunks(values: Sequence[Any], size: int = IN_CHUNK) -> list[list[Any]]:
    seen = list(dict.fromkeys(v for v in values if v is not None))
    return [seen[i : i + size] for i in range(0, len(seen), size)]


def rights_subquery(t: CrmTables, user: str, name: str = "rights") -> sa.Subquery:
    """Owners the user may see, one row each, with ``ro`` = 1 when every grant is 'R' (R1)."""
    sr = t.secrights
    ro = sa.func.min(sa.case((sr.c.RECORDACCESS == "R", 1), else_=0)).label("ro")
    return (
        sa.select(sr.c.SECCODEID.label("seccodeid"), ro)
        .where(sr.c.ACCESSID == user)
        .group_by(sr.c.SECCODEID)
        .subquery(name)
    )


class CrmReader:
    """Reads what one CRM user may see (R1) of the CRM tables in ``schema``."""

    def __init__(
        self, engine: sa.Engine, *, schema: str | None, user_id: str, arrow: bool = True
    ) -> None:
        self.engine = engine
        self.tables = crm_tables(schema)
        self.user = model.pad_user(user_id)
        self._group_ids: dict[str, str | None] = {}
        self._last_group: str | None = None
        #: ADBC where the engine has a driver (``arrow=False``: SQLAlchemy's, the benches' old way)
        self.arrow = arrow_read.source_for(engine) if arrow else None

    @contextlib.contextmanager
    def _reads(self) -> Iterator[Callable[[sa.Select], Raw]]:
        """One connection for the reads of one call: ``read(stmt)`` gives its rows raw."""
        if self.arrow is not None:
            source = self.arrow
            with contextlib.ExitStack() as stack:
                try:
                    conn = stack.enter_context(source.connect())
                except ConnectionError as exc:  # names the URL without its password
                    log.warning("%s; reading through SQLAlchemy instead", exc)
                else:
                    yield functools.partial(source.read, conn)
                    return
        with self.engine.connect() as sa_conn:
            yield lambda stmt: read_frame(sa_conn, stmt)

    # --- groups and owner --------------------------------------------------------------
    def group_id(self, group_name: str) -> str | None:
        """PLUGINID of the user's contact sync group called ``group_name`` (R2), or None."""
        if group_name not in self._group_ids:
            p = self.tables.plugin
            stmt = (
                sa.select(p.c.PLUGINID)
                .where(p.c.NAME == group_name, p.c.TYPE == GROUP_TYPE,
                       p.c.FAMILY == GROUP_FAMILY, p.c.USERID == self.user)
                .order_by(p.c.CREATEDATE, p.c.PLUGINID)
            )
            with self.engine.connect() as conn:
                found = conn.execute(stmt).scalars().first()
            if found is None:
                return None  # not cached: the writer may create it (R2)
            self._group_ids[group_name] = found
        self._last_group = self._group_ids[group_name]
        return self._last_group

    def default_owner(self) -> str:
        """USERSECURITY.DEFAULTSECCODEID: the owner of contacts the user creates (R5)."""
        us = self.tables.usersecurity
        with self.engine.connect() as conn:
            owner = conn.execute(
                sa.select(us.c.DEFAULTSECCODEID).where(us.c.USERID == self.user)
            ).scalar()
        if owner is None or not str(owner).strip():
            raise FatalError(
                f"CRM user {self.user.strip()!r} has no default owner (USERSECURITY.DEFAULTSECCODEID)",
                rule="R5",
                hint="set the user's default owner in the CRM administrator, or check the user id",
            )
        return str(owner)

    # --- contacts ----------------------------------------------------------------------
    def extract_group(self, group_name: str) -> pd.DataFrame:
        """The visible members of the user's sync group (R1, R2); empty if no group yet."""
        return self.read_group(group_name)[0]

    def read_group(self, group_name: str) -> tuple[pd.DataFrame, str | None]:
        """The group's visible members and the group's id, in ONE statement when the group
        has members (issue 15: a quiet cycle costs one CRM read); an empty group's id is
        then looked up on its own (None: no group yet, R2)."""
        if group_name in self._group_ids:  # already known: the plain member read
            gid = self._group_ids[group_name]
            self._last_group = gid
            stmt = self.group_statement(group_name, gid)
        else:
            stmt = self.group_statement(group_name)
        with self._reads() as read:
            raw = read(stmt)
        if len(raw) == 0:
            return model.empty_frame(model.CRM_COLUMNS), self.group_id(group_name)
        if arrow_read.is_table(raw):
            gid = str(raw.column("_group_id")[0].as_py())
        else:
            gid = str(raw["_group_id"].iat[0])
        self._group_ids[group_name] = self._last_group = gid
        return self._canonical(raw), gid

    def group_statement(self, group_name: str, group_id: str | None = None) -> sa.Select:
        """The member read: ADHOCGROUP -> CONTACT -> SECRIGHTS (R1), for the group ``group_id``
        or, unknown, the user's first group called ``group_name`` (the same choice as
        :meth:`group_id`, as a scalar subquery)."""
        g, p = self.tables.adhocgroup, self.tables.plugin
        gid: Any = group_id
        if gid is None:
            gid = (
                sa.select(p.c.PLUGINID)
                .where(p.c.NAME == group_name, p.c.TYPE == GROUP_TYPE,
                       p.c.FAMILY == GROUP_FAMILY, p.c.USERID == self.user)
                .order_by(p.c.CREATEDATE, p.c.PLUGINID)
                .limit(1)
                .scalar_subquery()
            )
        return self._contact_select(sa.literal(1).label("in_group"), extra_from=g).add_columns(
            g.c.GROUPID.label("_group_id")
        ).where(g.c.GROUPID == gid)

    def query_plan(self, group_name: str) -> list[str]:
        """The database's plan of the member read (SQLite's EXPLAIN QUERY PLAN, PostgreSQL's
        EXPLAIN): which indexes the security-scoped read uses (README, bench/fleet.py)."""
        stmt = self.group_statement(group_name)
        sql = str(stmt.compile(self.engine, compile_kwargs={"literal_binds": True}))
        explain = "EXPLAIN QUERY PLAN " if self.engine.dialect.name == "sqlite" else "EXPLAIN "
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(explain + sql).fetchall()
        return [str(r[-1]) for r in rows]

    def candidates_by_email(
        self, emails: Sequence[str], *, group_name: str | None = None, outside_group: bool = False
    ) -> pd.DataFrame:
        """Visible contacts (in or out of the group) with one of ``emails`` in EMAIL,
        SECONDARYEMAIL or EMAIL3, compared trimmed and case-insensitively (R7, R1).

        ``in_group`` refers to ``group_name``, else the group last looked up by this reader.
        ``outside_group``: not the group's own members, which the cycle has read already
        (its group frame): a first sync's emails are mostly theirs (issue 15 goal 3:
        75,000 members matched by email are not read a second time).
        """
        keys = [e.strip().lower() for e in emails if e and e.strip()]
        if not keys:
            return model.empty_frame(model.CRM_COLUMNS)
        gid = self.group_id(group_name) if group_name is not None else self._last_group
        c, g = self.tables.contact, self.tables.adhocgroup
        outside: sa.ColumnElement[bool] = sa.true()
        if gid is not None:
            member = sa.exists().where(g.c.GROUPID == gid, g.c.ENTITYID == c.c.CONTACTID)
            in_group = sa.case((member, 1), else_=0).label("in_group")
            if outside_group:
                outside = ~member
        else:
            in_group = sa.literal(0).label("in_group")
        raws: list[Raw] = []
        with self._reads() as read:
            if len(set(keys)) <= SCAN_THRESHOLD:
                for chunk in _chunks(keys):
                    cond = sa.or_(*(sa.func.lower(sa.func.trim(c.c[col])).in_(chunk)
                                    for col in EMAIL_COLUMNS))
                    raws.append(read(self._contact_select(in_group).where(cond, outside)))
            else:
                # Many emails (a first sync): lower(EMAIL) can use no index, so each IN
                # chunk would scan the table. Scan the visible emails once instead, match
                # in pandas, then read the matches by key.
                for chunk in _chunks(self._ids_with_email(read, set(keys), outside)):
                    stmt = self._contact_select(in_group).where(c.c.CONTACTID.in_(chunk))
                    raws.append(read(stmt))
        if not raws:
            return model.empty_frame(model.CRM_COLUMNS)
        if arrow_read.is_table(raws[0]):
            frame = self._canonical(arrow_read.concat(raws))
            return frame.drop_duplicates("crm_id").reset_index(drop=True)
        return self._canonical(pd.concat(raws, ignore_index=True).drop_duplicates("crm_id"))

    def _ids_with_email(
        self, read: Callable[[sa.Select], Raw], keys: set[str], where: sa.ColumnElement[bool]
    ) -> list[str]:
        """CONTACTIDs of visible contacts (R1) meeting ``where`` with one of ``keys`` in an
        email column (R7)."""
        c = self.tables.contact
        rights = rights_subquery(self.tables, self.user)
        stmt = sa.select(c.c.CONTACTID, *(c.c[col] for col in EMAIL_COLUMNS)).select_from(
            c.join(rights, rights.c.seccodeid == c.c.SECCODEID)).where(where)
        emails = _as_frame(read(stmt))
        hit = pd.Series(False, index=emails.index)
        for col in EMAIL_COLUMNS:
            hit |= model.email_key(emails[col]).isin(keys)
        return emails.loc[hit, "CONTACTID"].tolist()

    def gone_status(self, crm_ids: Sequence[str]) -> pd.DataFrame:
        """Whether each CONTACT row still exists (R12 vs R13); nothing else is read (R1)."""
        ids = list(dict.fromkeys(i for i in crm_ids if i is not None))
        c = self.tables.contact
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                found.update(
                    str(v).rstrip()
                    for v in conn.execute(sa.select(c.c.CONTACTID).where(c.c.CONTACTID.in_(chunk))).scalars()
                )
        return pd.DataFrame(
            {"crm_id": pd.Series(ids, dtype=object),
             "exists": pd.Series([i.rstrip() in found for i in ids], dtype=bool)}
        )

    # --- accounts ----------------------------------------------------------------------
    def accounts_by_name(self, names: Sequence[str]) -> pd.DataFrame:
        """Visible accounts whose name equals one of ``names`` exactly (R5b, R1).

        Compared again in pandas because SQL Server and MySQL compare case-insensitively;
        ordered oldest CREATEDATE first, then ACCOUNTID (R5b: the first found wins).
        """
        wanted = [n for n in dict.fromkeys(names) if n is not None and n != ""]
        if not wanted:
            return model.empty_frame(model.ACCOUNT_COLUMNS)
        a = self.tables.account
        rights = rights_subquery(self.tables, self.user)
        frames = []
        with self._reads() as read:
            for chunk in _chunks(wanted):
                stmt = (
                    sa.select(
                        a.c.ACCOUNTID.label("account_id"),
                        a.c.ACCOUNT.label("account_name"),
                        sa.type_coerce(a.c.CREATEDATE, sa.String).label("account_created"),
                    )
                    .join(rights, rights.c.seccodeid == a.c.SECCODEID)
                    .where(a.c.ACCOUNT.in_(chunk))
                )
                frames.append(_as_frame(read(stmt)))
        frame = pd.concat(frames, ignore_index=True)
        frame = frame[frame["account_name"].isin(set(wanted))].copy()
        frame["account_created"] = to_utc(frame["account_created"])
        frame = frame.sort_values(["account_created", "account_id"], na_position="last")
        return model.conform(frame, model.ACCOUNT_COLUMNS)

    # --- internals ---------------------------------------------------------------------
    def _contact_select(self, in_group: sa.ColumnElement[Any], extra_from: sa.Table | None = None) -> sa.Select:
        """Visible contacts with their account and primary address: the one query shape."""
        t = self.tables
        c, a, ad = t.contact, t.account, t.address
        rights = rights_subquery(t, self.user)
        acct_rights = rights_subquery(t, self.user, "acct_rights")
        dt = sa.String  # datetimes parsed by pandas in bulk, not row by row
        account_visible = acct_rights.c.seccodeid.is_not(None)

        cols: list[sa.ColumnElement[Any]] = [
            c.c.CONTACTID.label("crm_id"),
            c.c.ACCOUNTID.label("account_id"),
            c.c.ADDRESSID.label("address_id"),
            sa.type_coerce(c.c.CREATEDATE, dt).label("crm_created"),
            sa.type_coerce(c.c.MODIFYDATE, dt).label("_c_mod"),
            sa.type_coerce(ad.c.MODIFYDATE, dt).label("_ad_mod"),
            # The account's name and time only when the user may see the account (R1);
            # otherwise the contact's own copy of the name.
            sa.type_coerce(sa.case((account_visible, a.c.MODIFYDATE)), dt).label("_a_mod"),
            rights.c.ro.label("_ro"),
            in_group,
            sa.case((account_visible, a.c.ACCOUNT), else_=c.c.ACCOUNT).label("company"),
            sa.type_coerce(c.c.BIRTHDAY, dt).label("_birthday"),
        ]
        cols += [c.c[col].label(field) for field, col in CONTACT_FIELD_COLUMNS.items()
                 if field != "birthday"]
        cols += [ad.c[col].label(f"_{col}") for col in STREET_COLUMNS]
        cols += [ad.c[col].label(field) for field, col in ADDRESS_FIELD_COLUMNS.items()]

        base: sa.FromClause = c
        if extra_from is not None:
            base = extra_from.join(c, c.c.CONTACTID == extra_from.c.ENTITYID)
        joined = (
            base.join(rights, rights.c.seccodeid == c.c.SECCODEID)
            .outerjoin(a, a.c.ACCOUNTID == c.c.ACCOUNTID)
            .outerjoin(acct_rights, acct_rights.c.seccodeid == a.c.SECCODEID)
            .outerjoin(ad, ad.c.ADDRESSID == c.c.ADDRESSID)
        )
        return sa.select(*cols).select_from(joined)

    def _canonical(self, raw: Raw) -> pd.DataFrame:
        """Turn the query's columns into canonical values (model docstring), vectorised.

        The frame is built in its final shape at once: the driver's values are str or
        None already (``rows.read_frame``), so only the times and flags are converted, and
        ``model.conform`` (which would scan all 35 columns again, ~0.15 s at 75,000 rows)
        would change nothing (tests/crm: held equal to it).
        """
        if arrow_read.is_table(raw):
            return arrow_read.frames().canonical(raw, [f"_{c}" for c in STREET_COLUMNS])
        if raw.empty:
            return model.empty_frame(model.CRM_COLUMNS)
        raw = raw.reset_index(drop=True)  # (candidates' reads after drop_duplicates: made columns align)
        made: dict[str, pd.Series] = {
            "crm_created": to_utc(raw["crm_created"]),
            # R9: newest of CONTACT, ADDRESS, ACCOUNT
            "crm_modified": newest([to_utc(raw[c]) for c in ("_c_mod", "_ad_mod", "_a_mod")]),
            "read_only": flag(raw["_ro"]),
            "in_group": flag(raw["in_group"]),
            "birthday": dates(raw["_birthday"]),
            "street": street_from_lines(raw[[f"_{c}" for c in STREET_COLUMNS]]),
        }
        for c in REPEATING_TEXT:  # one object per distinct value (issue 15 goal 3)
            made[c] = shared(strings(raw[c]))
        columns = {c: made[c] if c in made else strings(raw[c]) for c in model.CRM_COLUMNS}
        return pd.DataFrame(columns).reset_index(drop=True)

    # --- what the writer checks before it writes ---------------------------------------
    def existing(self, key: sa.Column, ids: Sequence[str], extra: sa.Column | None = None) -> dict[str, Any]:
        """Which of ``ids`` exist (-> ``extra``'s value): makes pre-allocated creates idempotent."""
        found: dict[str, Any] = {}
        cols = [key] if extra is None else [key, extra]
        with self.engine.connect() as conn:
            for chunk in _chunks(list(ids)):
                for r in conn.execute(sa.select(*cols).where(key.in_(chunk))):
                    found[str(r[0]).rstrip()] = r[1] if extra is not None else True
        return found

    def visible(self, ids: Sequence[str | None]) -> dict[str, dict[str, Any]]:
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

    def members(self, group_id: str, ids: Sequence[str | None]) -> set[str]:
        """Which of ``ids`` are members of the group ``group_id`` already."""
        g = self.tables.adhocgroup
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks([i for i in ids if i is not None]):
                found.update(str(v).rstrip() for v in conn.execute(
                    sa.select(g.c.ENTITYID).where(g.c.GROUPID == group_id, g.c.ENTITYID.in_(chunk))
                ).scalars())
        return found

    def account_names(self, ids: Sequence[str | None]) -> dict[str, str | None]:
        """The names of the accounts ``ids`` (R5b: creates refer to them by id)."""
        a = self.tables.account
        names: dict[str, str | None] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks([i for i in ids if i is not None]):
                for r in conn.execute(sa.select(a.c.ACCOUNTID, a.c.ACCOUNT).where(a.c.ACCOUNTID.in_(chunk))):
                    names[str(r[0]).rstrip()] = r[1]
        return names


def _as_frame(raw: Raw) -> pd.DataFrame:
    """A read's rows as object columns with None, whichever way they were read."""
    return arrow_read.frames().frame_of_objects(raw) if arrow_read.is_table(raw) else raw
