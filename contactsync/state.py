"""The sync's own memory: links + snapshots, Outlook snapshot + delta token, journal, runs, lock.

It lives in a database of its own (SQLite file beside the config by default, PostgreSQL
when several workers share it), never inside the CRM database. Modelled on vdirsyncer's
``status.py`` (per-item status written in one transaction, schema version in ``meta``,
stepwise migrations) and dlt's load packages (state advances only after the writes it
records committed; journal entries move new -> started -> applied | failed).

Everything is keyed by ``user`` = the padded CRM USERID string, exactly as the caller gives
it. Frames go in and come out in ``contactsync.model`` conventions (object columns, None
for missing, datetimes as UTC). Pure SQLAlchemy Core, so it runs on any backend.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from contactsync.errors import LockedError, TransientError
from contactsync.model import FIELDS, OUTLOOK_COLUMNS, conform, empty_frame, unpad_user
from contactsync.plan.schema import (
    ACTION_COLUMNS,
    CONFLICT_COLUMNS,
    LINK_COLUMNS,
    LINK_STATUS_ACTIVE,
    LINK_STATUS_STOPPED,
)

SCHEMA_VERSION = 1
CHUNK = 1000  # keys per IN (...) and rows per executemany batch
RUN_STATUSES = frozenset({"running", "ok", "dry-run", "guard-stopped", "failed", "locked"})
JOURNAL_STATES = ("new", "started", "applied", "failed")
QUARANTINE_COLUMNS: tuple[str, ...] = ("side", "record_id", "field", "rule", "reason", "value")
#: Journal columns as journal_pending returns them (allocated/payload are dicts).
JOURNAL_COLUMNS: tuple[str, ...] = (
    "action_id", "run_id", "side", "op", "crm_id", "outlook_id", "new_key", "allocated",
    "payload", "state", "final", "error", "attempts", "created_at", "updated_at",
)
RUN_COLUMNS: tuple[str, ...] = (
    "run_id", "user", "started_at", "finished_at", "dry_run", "status", "params", "summary",
)
VALUE_PREVIEW = 60  # characters of a quarantined value kept for the report
_SECRET_KEY = re.compile(r"secret|token|password|passwd|credential|authori[sz]ation", re.I)
_OUTLOOK_TIMES = ("outlook_created", "outlook_modified")

metadata = sa.MetaData()
_S = sa.String(255)


def _field_columns() -> list[sa.Column]:
    return [sa.Column(f, sa.Text) for f in FIELDS]


meta_table = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
links_table = sa.Table(
    "links", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("crm_id", sa.String(64), primary_key=True),
    sa.Column("outlook_id", _S),
    sa.Column("status", sa.String(16), nullable=False),
    *_field_columns(),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("crm_user", "outlook_id", name="uq_links_outlook"),
)
outlook_table = sa.Table(
    "outlook_contacts", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("folder_id", _S, primary_key=True),
    sa.Column("outlook_id", _S, primary_key=True),
    sa.Column("change_key", sa.Text),
    sa.Column("outlook_created", sa.String(40)),
    sa.Column("outlook_modified", sa.String(40)),
    sa.Column("crm_tag", sa.Text),
    sa.Column("business_phones_rest", sa.Text),
    *_field_columns(),
)
delta_table = sa.Table(
    "outlook_delta", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("folder_id", _S, primary_key=True),
    sa.Column("delta_link", sa.Text),
    sa.Column("updated_at", sa.String(40), nullable=False),
)
journal_table = sa.Table(
    "journal", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("action_id", _S, primary_key=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("side", sa.String(16), nullable=False),
    sa.Column("op", sa.String(32), nullable=False),
    sa.Column("crm_id", sa.String(64)),
    sa.Column("outlook_id", _S),
    sa.Column("new_key", _S),
    sa.Column("allocated", sa.Text),  # JSON object
    sa.Column("payload", sa.Text),  # JSON object
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("final", sa.Boolean, nullable=False, default=False),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)
runs_table = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("crm_user", sa.String(32), nullable=False),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", sa.Text),
    sa.Column("summary", sa.Text),
    sa.Index("ix_runs_user_started", "crm_user", "started_at"),
)
conflicts_table = sa.Table(
    "conflicts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("crm_user", sa.String(32), nullable=False),
    *[sa.Column(c, sa.Text) for c in CONFLICT_COLUMNS],
)
quarantine_table = sa.Table(
    "quarantine", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("crm_user", sa.String(32), nullable=False),
    *[sa.Column(c, sa.Text) for c in QUARANTINE_COLUMNS],
)
locks_table = sa.Table(
    "locks", metadata,
    sa.Column("crm_user", sa.String(32), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("proc_start", sa.Float),  # holder's process start time: catches pid reuse
    sa.Column("token", sa.String(32), nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)


# --- migrations: one function per version step, each run in the opener's transaction ----
def _migrate_to_1(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _migrate_to_1}


# --- small helpers -----------------------------------------------------------------------
def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _mark_values(state: str, result: dict[str, Any]) -> dict[str, Any]:
    """The journal columns a mark sets (``attempts`` is the expression ``attempts + 1``)."""
    if state not in JOURNAL_STATES:
        raise ValueError(f"journal state must be one of {JOURNAL_STATES}, got {state!r}")
    unknown = set(result) - {"crm_id", "outlook_id", "error", "allocated", "final"}
    if unknown:
        raise TypeError(f"journal_mark got unexpected result keys {sorted(unknown)}")
    values: dict[str, Any] = {"state": state, "updated_at": _now_iso()}
    for key in ("crm_id", "outlook_id", "error"):
        if result.get(key) is not None:
            values[key] = str(result[key])
    values["final"] = bool(result.get("final", True)) if state == "failed" else False
    if state == "started":
        values["attempts"] = journal_table.c.attempts + 1
    return values


@functools.lru_cache(maxsize=64)
def _mark_statement(columns: tuple[str, ...], started: bool) -> sa.Update:
    """One journal row's update setting ``columns`` from ``v_<column>`` parameters."""
    j = journal_table
    values: dict[str, Any] = {c: sa.bindparam(f"v_{c}") for c in columns}
    if started:
        values["attempts"] = j.c.attempts + 1
    return (
        sa.update(j)
        .where(j.c.crm_user == sa.bindparam("_user"), j.c.action_id == sa.bindparam("_action"))
        .values(values)
    )


def _chunks(seq: Sequence[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    items = list(seq)
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Rows as dicts with None for every missing value (what the DB-API wants)."""
    cols = list(columns)
    return [dict(zip(cols, row, strict=True)) for row in _tuples(frame, cols)]


def _tuples(frame: pd.DataFrame, columns: Sequence[str], *lead: Any) -> list[tuple[Any, ...]]:
    """Rows as tuples (``lead`` values first), None for missing: the fast bulk-insert form."""
    if frame.empty:
        return []
    sub = frame.reindex(columns=list(columns)).astype(object)
    sub = sub.where(sub.notna(), None)
    n = len(sub)
    cols = [[v] * n for v in lead] + [sub[c].tolist() for c in columns]
    return list(zip(*cols, strict=True))


def _bulk_insert(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Bulk insert: SQLite executemany and PostgreSQL COPY straight through the driver
    (4x-10x faster than Core's executemany), Core executemany in chunks elsewhere."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        quote = conn.dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        for chunk in _chunks(rows, 20000):
            conn.exec_driver_sql(sql, chunk)
        return
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        quote = conn.dialect.identifier_preparer.quote
        sql = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
        with conn.connection.dbapi_connection.cursor() as cur, cur.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
        return
    for chunk in _chunks(rows, 5000):
        conn.execute(table.insert(), [dict(zip(columns, r, strict=True)) for r in chunk])


def _iso_series(values: pd.Series) -> pd.Series:
    """UTC datetimes as sortable ISO strings, so no backend needs a datetime type."""
    ts = pd.to_datetime(values, utc=True, errors="coerce")
    out = ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00").astype(object)
    return out.where(ts.notna(), None)


def _json_load(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


def _redact(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters with secret-looking keys blanked: runs and reports must never hold secrets."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if _SECRET_KEY.search(str(key)):
            out[key] = "**********"
        elif isinstance(value, dict):
            out[key] = _redact(value)
        else:
            out[key] = value
    return out


def _frame(result: sa.CursorResult[Any], *, plain: bool = False) -> pd.DataFrame:
    """A result as an all-object frame (one 2-D object array: faster than from_records).

    ``plain``: every selected column is text, with no result processor, so the driver's
    own tuples are the values and SQLAlchemy's Row objects can be skipped (a third of
    the time of reading 100,000 links or mirror rows).
    """
    columns = list(result.keys())
    if plain and result.cursor is not None:
        rows = result.cursor.fetchall()
        result.close()
    else:
        rows = result.fetchall()
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    table = np.empty((len(rows), len(columns)), dtype=object)
    table[:] = rows  # one C loop over the tuples (the values are scalars: text, numbers, None)
    return pd.DataFrame(table, columns=columns, dtype=object)


# --- the per-user lock ---------------------------------------------------------------------
_HOST = socket.gethostname()


def _proc_start(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # psutil missing or process gone: no pid-reuse check
        return None


def pid_alive(pid: int, proc_start: float | None = None) -> bool:
    """Is the lock holder's process still running (on this host)?

    A zombie (killed, not yet reaped) counts as dead; so does a pid reused by a process
    that started later than the holder.
    """
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not (proc_start is not None and abs(proc.create_time() - proc_start) > 1.0)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


@dataclass
class LockHandle:
    """A held lock. ``lost`` turns True if another process took it over (heartbeat failed)."""

    user: str
    token: str
    _lost: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()


class StateStore:
    """The state store at ``url``; creates or migrates its tables when opened.

    ``lock_ttl``: seconds after which a lock whose heartbeat stopped is taken over (the
    spec's 2 minutes; tests use 1-2 s). ``heartbeat``: seconds between heartbeats.
    """

    def __init__(
        self,
        url: str,
        *,
        lock_ttl: float = 120.0,
        heartbeat: float = 10.0,
        busy_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.lock_ttl = lock_ttl
        self.heartbeat = heartbeat
        self.engine = self._make_engine(url, busy_timeout)
        try:
            self.schema_version = self._migrate()
        except sa.exc.OperationalError as exc:
            self.engine.dispose()
            shown = self.engine.url.render_as_string(hide_password=True)
            raise TransientError(
                f"the state store {shown} cannot be opened: {exc.orig}",
                hint="check [state] url in the configuration and that its database is reachable",
            ) from exc

    # -- engine and schema --------------------------------------------------------------
    @staticmethod
    def _make_engine(url: str, busy_timeout: float) -> Engine:
        parsed = sa.make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return sa.create_engine(url, pool_pre_ping=True)
        memory = parsed.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout, "check_same_thread": False}}
        if memory:
            kwargs["poolclass"] = sa.StaticPool
        engine = sa.create_engine(url, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine

    def _migrate(self) -> int:
        """Apply the missing migration steps, serialised against concurrent openers."""
        dialect = self.engine.dialect.name
        for attempt in range(3):
            try:
                with self._write() as conn:
                    if dialect == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7311952)"))
                    meta_table.create(conn, checkfirst=True)
                with self._write() as conn:
                    if dialect == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7311952)"))
                    found = conn.execute(
                        sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                    ).scalar()
                    version = int(found) if found is not None else 0
                    if version > SCHEMA_VERSION:
                        from contactsync.errors import FatalError

                        raise FatalError(
                            f"state store {self.engine.url!r} has schema version {version}, "
                            f"newer than this program's {SCHEMA_VERSION}",
                            hint="upgrade contact-sync on this machine",
                        )
                    for step in range(version + 1, SCHEMA_VERSION + 1):
                        MIGRATIONS[step](conn)
                    if found is None:
                        conn.execute(
                            meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                        )
                    elif version != SCHEMA_VERSION:
                        conn.execute(
                            sa.update(meta_table)
                            .where(meta_table.c.key == "schema_version")
                            .values(value=str(SCHEMA_VERSION))
                        )
                return SCHEMA_VERSION
            except (IntegrityError, sa.exc.OperationalError, sa.exc.ProgrammingError):
                if attempt == 2:
                    raise
                time.sleep(0.2)  # another opener migrated at the same moment: re-read
        return SCHEMA_VERSION  # pragma: no cover

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction. On SQLite it is BEGIN IMMEDIATE: the write lock is taken
        first (waiting up to the busy timeout), so a transaction that reads before it
        writes never fails with SQLITE_BUSY against another process's writer."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- links and snapshots --------------------------------------------------------------
    def load_links(self, user: str) -> pd.DataFrame:
        """The user's link table with its snapshots (plan.schema.LINK_COLUMNS)."""
        cols = [links_table.c[c] for c in LINK_COLUMNS]
        with self.engine.connect() as conn:
            frame = _frame(conn.execute(sa.select(*cols).where(links_table.c.crm_user == user)), plain=True)
        return conform(frame, LINK_COLUMNS)

    def save_pairs(self, user: str, snapshots: pd.DataFrame) -> int:
        """Upsert the snapshots of applied pairs in one transaction (returns rows written).

        Keyed by crm_id; an outlook_id now linked to a different crm_id moves with the new
        row (links are one-to-one, R7). ``status`` defaults to 'active'. Call it only after
        the writes the snapshot records have committed (STYLE.md, dlt).
        """
        if snapshots.empty:
            return 0
        frame = snapshots.copy()
        if "status" not in frame.columns:
            frame["status"] = LINK_STATUS_ACTIVE
        frame["status"] = frame["status"].where(frame["status"].notna(), LINK_STATUS_ACTIVE)
        bad = set(frame["status"]) - {LINK_STATUS_ACTIVE, LINK_STATUS_STOPPED}
        if bad:
            raise ValueError(f"link status must be 'active' or 'stopped', got {sorted(bad)}")
        if frame["crm_id"].isna().any():
            raise ValueError(
                "save_pairs needs a crm_id on every row: resolve new_key to the allocated "
                "CONTACTID before saving the snapshot"
            )
        frame = frame.drop_duplicates("crm_id", keep="last")
        rows = _tuples(frame, LINK_COLUMNS, user, _now_iso())
        crm_ids = frame["crm_id"].astype(str).tolist()
        outlook_ids = frame["outlook_id"].dropna().astype(str).tolist()
        t = links_table
        with self._write() as conn:
            if len(rows) > 5 * CHUNK:  # big save: delete only keys that exist (one scan)
                have = conn.execute(
                    sa.select(t.c.crm_id, t.c.outlook_id).where(t.c.crm_user == user)
                ).all()
                have_crm = {r[0] for r in have}
                have_out = {r[1] for r in have if r[1] is not None}
                crm_ids = [c for c in crm_ids if c in have_crm]
                outlook_ids = [o for o in outlook_ids if o in have_out]
            for chunk in _chunks(crm_ids):
                conn.execute(sa.delete(t).where(t.c.crm_user == user, t.c.crm_id.in_(chunk)))
            for chunk in _chunks(outlook_ids):
                conn.execute(sa.delete(t).where(t.c.crm_user == user, t.c.outlook_id.in_(chunk)))
            _bulk_insert(conn, t, ("crm_user", "updated_at", *LINK_COLUMNS), rows)
        return len(rows)

    def remove_links(self, user: str, crm_ids: Sequence[str]) -> int:
        """Forget pairs (R11, R12, R13 unlink); returns how many existed."""
        t = links_table
        n = 0
        with self._write() as conn:
            for chunk in _chunks(crm_ids):
                n += conn.execute(
                    sa.delete(t).where(t.c.crm_user == user, t.c.crm_id.in_(chunk))
                ).rowcount
        return n

    def set_status(self, user: str, crm_ids: Sequence[str], status: str) -> int:
        """Mark pairs active or stopped (R12 keep-copy); returns how many rows changed."""
        if status not in (LINK_STATUS_ACTIVE, LINK_STATUS_STOPPED):
            raise ValueError(f"link status must be 'active' or 'stopped', got {status!r}")
        t = links_table
        n = 0
        stamp = _now_iso()
        with self._write() as conn:
            for chunk in _chunks(crm_ids):
                n += conn.execute(
                    sa.update(t)
                    .where(t.c.crm_user == user, t.c.crm_id.in_(chunk))
                    .values(status=status, updated_at=stamp)
                ).rowcount
        return n

    # -- Outlook snapshot and delta token --------------------------------------------------
    def load_delta_link(self, user: str, folder_id: str) -> str | None:
        """The folder's last delta link alone (None = never synced): a quiet cycle that
        finds nothing new behind it never needs the mirror (contactsync.cycle.settled)."""
        d = delta_table
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(d.c.delta_link).where(d.c.crm_user == user, d.c.folder_id == folder_id)
            ).scalar()

    def previous_run(self, user: str, run_id: str) -> dict[str, Any] | None:
        """The user's newest run other than ``run_id`` that was not a dry run (a dry run
        writes nothing, R20), with its status and summary; None when there is none."""
        r = runs_table
        q = (
            sa.select(r.c.run_id, r.c.status, r.c.summary)
            .where(r.c.crm_user == user, r.c.run_id != run_id, r.c.dry_run == sa.false())
            .order_by(r.c.started_at.desc(), r.c.run_id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        return {"run_id": row.run_id, "status": row.status, "summary": _json_load(row.summary)}

    def load_outlook(self, user: str, folder_id: str) -> tuple[str | None, pd.DataFrame]:
        """The folder's last delta link (None = never synced) and its contacts snapshot."""
        t, d = outlook_table, delta_table
        with self.engine.connect() as conn:
            link = conn.execute(
                sa.select(d.c.delta_link).where(d.c.crm_user == user, d.c.folder_id == folder_id)
            ).scalar()
            frame = _frame(conn.execute(
                sa.select(*[t.c[c] for c in OUTLOOK_COLUMNS])
                .where(t.c.crm_user == user, t.c.folder_id == folder_id)
            ), plain=True)
        for col in _OUTLOOK_TIMES:
            if not frame.empty:
                frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
        return link, conform(frame, OUTLOOK_COLUMNS)

    def save_outlook(
        self,
        user: str,
        folder_id: str,
        delta_link: str | None,
        *,
        frame: pd.DataFrame | None = None,
        changed: pd.DataFrame | None = None,
        removed_ids: Sequence[str] = (),
        full: bool = False,
    ) -> None:
        """Advance the folder's snapshot and delta token together, in one transaction.

        ``full=True``: ``frame`` replaces every row (a full read). Otherwise ``changed`` is
        upserted and ``removed_ids`` deleted. The token never moves without the rows it
        describes (a crash leaves both at the previous cycle).
        """
        t, d = outlook_table, delta_table
        upserts = frame if full else changed
        rows: list[tuple[Any, ...]] = []
        ids: list[str] = []
        if upserts is not None and not upserts.empty:
            data = upserts.reindex(columns=list(OUTLOOK_COLUMNS)).copy()
            if data["outlook_id"].isna().any():
                raise ValueError("save_outlook: every contact row needs its outlook_id")
            for col in _OUTLOOK_TIMES:
                data[col] = _iso_series(data[col])
            data = data.drop_duplicates("outlook_id", keep="last")
            rows = _tuples(data, OUTLOOK_COLUMNS, user, folder_id)
            ids = data["outlook_id"].astype(str).tolist()
        where = (t.c.crm_user == user, t.c.folder_id == folder_id)
        with self._write() as conn:
            if full:
                conn.execute(sa.delete(t).where(*where))
            else:
                for chunk in _chunks(ids + [str(i) for i in removed_ids]):
                    conn.execute(sa.delete(t).where(*where, t.c.outlook_id.in_(chunk)))
            _bulk_insert(conn, t, ("crm_user", "folder_id", *OUTLOOK_COLUMNS), rows)
            dwhere = (d.c.crm_user == user, d.c.folder_id == folder_id)
            done = conn.execute(
                sa.update(d).where(*dwhere).values(delta_link=delta_link, updated_at=_now_iso())
            ).rowcount
            if not done:
                conn.execute(d.insert().values(
                    crm_user=user, folder_id=folder_id, delta_link=delta_link,
                    updated_at=_now_iso(),
                ))

    # -- journal (R18) --------------------------------------------------------------------
    def journal_add(self, user: str, run_id: str, actions: pd.DataFrame) -> int:
        """Record intended writes as 'new' BEFORE they are made (R18).

        Ids allocated before a write go in columns named ``allocated_<what>`` (e.g.
        ``allocated_crm_id``) or a dict column ``allocated``; they are how a crashed CRM
        create is recognised next time. An action_id already pending (new, started, or
        failed but not final) keeps its state and allocated ids (the crash is still to be
        resolved); one already applied or finally failed starts again as 'new'.
        """
        if actions.empty:
            return 0
        alloc_cols = [c for c in actions.columns if c.startswith("allocated_")]
        payload_cols = [c for c in ACTION_COLUMNS if c in actions.columns and c not in (
            "action_id", "side", "op", "crm_id", "outlook_id", "new_key")]
        base = _records(actions, ["action_id", "side", "op", "crm_id", "outlook_id", "new_key"])
        payloads = _records(actions, payload_cols)
        allocs = _records(actions, alloc_cols) if alloc_cols else [{} for _ in base]
        extra = actions["allocated"].tolist() if "allocated" in actions.columns else [None] * len(base)
        stamp = _now_iso()
        new_rows: dict[str, dict[str, Any]] = {}
        for row, payload, alloc, more in zip(base, payloads, allocs, extra, strict=True):
            allocated = {k[len("allocated_"):]: v for k, v in alloc.items() if v is not None}
            if isinstance(more, str):
                more = json.loads(more)
            if isinstance(more, dict):
                allocated.update({k: v for k, v in more.items() if v is not None})
            row.update(
                crm_user=user, run_id=run_id, state="new", final=False, error=None, attempts=0,
                created_at=stamp, updated_at=stamp,
                allocated=json.dumps(allocated, default=str),
                payload=json.dumps({k: v for k, v in payload.items() if v is not None}, default=str),
            )
            new_rows[row["action_id"]] = row
        j = journal_table
        ids = list(new_rows)
        with self._write() as conn:
            if len(ids) > 5 * CHUNK:  # big plan: one scan of the user's journal
                found = [p for p in conn.execute(sa.select(j).where(j.c.crm_user == user)).mappings()
                         if p["action_id"] in new_rows]
            else:
                found = [p for chunk in _chunks(ids) for p in conn.execute(
                    sa.select(j).where(j.c.crm_user == user, j.c.action_id.in_(chunk))).mappings()]
            for prev in found:
                row = new_rows[prev["action_id"]]
                pending = prev["state"] in ("new", "started") or (
                    prev["state"] == "failed" and not prev["final"])
                if pending:
                    merged = _json_load(row["allocated"])
                    merged.update(_json_load(prev["allocated"]))  # first allocation wins
                    row.update(state=prev["state"], error=prev["error"],
                               attempts=prev["attempts"], created_at=prev["created_at"],
                               allocated=json.dumps(merged, default=str))
            for chunk in _chunks([p["action_id"] for p in found]):
                conn.execute(sa.delete(j).where(j.c.crm_user == user, j.c.action_id.in_(chunk)))
            cols = [c.name for c in j.columns]
            _bulk_insert(conn, j, cols, [tuple(r[c] for c in cols) for r in new_rows.values()])
        return len(new_rows)

    def journal_mark(self, user: str, action_id: str, state: str, **result: Any) -> None:
        """Move one action on: started | applied | failed (see :meth:`journal_mark_many`).

        Called once per committed write (R18), so it is on the load's critical path: the
        statement is built once per column set and reused (SQLAlchemy's compiled cache),
        instead of constructing an ``IN`` update per call.
        """
        if result.get("allocated"):
            self.journal_mark_many(user, [action_id], state, **result)
            return
        values = _mark_values(state, result)
        started = values.pop("attempts", None) is not None
        stmt = _mark_statement(tuple(sorted(values)), started)
        with self._write() as conn:
            conn.execute(stmt, {"_user": user, "_action": action_id, **{f"v_{k}": v for k, v in values.items()}})

    def journal_mark_many(
        self, user: str, action_ids: Sequence[str], state: str, **result: Any
    ) -> int:
        """Move actions on in one transaction; returns how many journal rows changed.

        ``result`` may carry ``crm_id``, ``outlook_id`` (ids learnt from the write),
        ``error``, ``allocated`` (dict merged into the allocated ids) and, for 'failed',
        ``final`` (default True; False = retry next cycle, the entry stays pending).
        """
        j = journal_table
        values = _mark_values(state, result)
        n = 0
        with self._write() as conn:
            for chunk in _chunks(action_ids):
                where = (j.c.crm_user == user, j.c.action_id.in_(chunk))
                n += conn.execute(sa.update(j).where(*where).values(**values)).rowcount
                if result.get("allocated"):
                    for aid, text in conn.execute(sa.select(j.c.action_id, j.c.allocated).where(*where)):
                        merged = _json_load(text)
                        merged.update(result["allocated"])
                        conn.execute(sa.update(j).where(j.c.crm_user == user, j.c.action_id == aid)
                                     .values(allocated=json.dumps(merged, default=str)))
        return n

    def journal_pending(self, user: str) -> pd.DataFrame:
        """Entries an earlier cycle left unfinished (new, started, failed-retry), oldest first."""
        j = journal_table
        pending = sa.or_(j.c.state.in_(("new", "started")),
                         sa.and_(j.c.state == "failed", sa.not_(j.c.final)))
        return self._journal(sa.and_(j.c.crm_user == user, pending))

    def journal(self, user: str, run_id: str | None = None) -> pd.DataFrame:
        """All journal entries of the user (optionally of one run), any state."""
        j = journal_table
        cond = j.c.crm_user == user
        if run_id is not None:
            cond = sa.and_(cond, j.c.run_id == run_id)
        return self._journal(cond)

    def _journal(self, cond: sa.ColumnElement[bool]) -> pd.DataFrame:
        j = journal_table
        with self.engine.connect() as conn:
            frame = _frame(conn.execute(
                sa.select(*[j.c[c] for c in JOURNAL_COLUMNS]).where(cond)
                .order_by(j.c.created_at, j.c.action_id)
            ))
        if frame.empty:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in JOURNAL_COLUMNS})
        frame["allocated"] = frame["allocated"].map(_json_load)
        frame["payload"] = frame["payload"].map(_json_load)
        frame["final"] = frame["final"].astype(bool)
        return frame.astype({c: object for c in ("crm_id", "outlook_id", "new_key", "error")})

    def journal_clear(self, user: str, run_id: str | None = None) -> int:
        """Drop the user's journal (or one run's part of it) once nothing in it is pending."""
        j = journal_table
        cond = [j.c.crm_user == user]
        if run_id is not None:
            cond.append(j.c.run_id == run_id)
        with self._write() as conn:
            return conn.execute(sa.delete(j).where(*cond)).rowcount

    # -- runs, conflicts, quarantine -----------------------------------------------------
    def start_run(self, user: str, *, dry_run: bool, params: dict[str, Any]) -> str:
        """Record that a cycle started; returns its run_id (uuid4 hex)."""
        run_id = uuid.uuid4().hex
        with self._write() as conn:
            conn.execute(runs_table.insert().values(
                run_id=run_id, crm_user=user, started_at=_now_iso(), dry_run=bool(dry_run),
                status="running", params=json.dumps(_redact(params), default=str),
            ))
        return run_id

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        """Close a run: status ok|dry-run|guard-stopped|failed|locked, summary as JSON.

        The summary shape the report reads: ``counts`` {side: {op: n}}, ``by_rule``
        [{side, op, rule, count}], ``conflicts`` n, ``quarantined`` n, ``durations``
        {step: seconds} (see contactsync.report.run_summary).
        """
        if status not in RUN_STATUSES - {"running"}:
            raise ValueError(f"run status must be one of {sorted(RUN_STATUSES - {'running'})}")
        with self._write() as conn:
            n = conn.execute(
                sa.update(runs_table).where(runs_table.c.run_id == run_id).values(
                    status=status, finished_at=_now_iso(),
                    summary=json.dumps(_redact(summary), default=str),
                )
            ).rowcount
        if not n:
            raise KeyError(f"no run {run_id!r} in the state store")

    def recent_runs(self, user: str | None = None, limit: int = 20) -> pd.DataFrame:
        """The newest runs first (RUN_COLUMNS; params and summary as dicts)."""
        r = runs_table
        q = sa.select(r).order_by(r.c.started_at.desc(), r.c.run_id).limit(limit)
        if user is not None:
            q = q.where(r.c.crm_user == user)
        with self.engine.connect() as conn:
            frame = _frame(conn.execute(q))
        if frame.empty:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in RUN_COLUMNS})
        frame = frame.rename(columns={"crm_user": "user"})
        for col in ("started_at", "finished_at"):
            frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
        frame["params"] = frame["params"].map(_json_load)
        frame["summary"] = frame["summary"].map(_json_load)
        frame["dry_run"] = frame["dry_run"].astype(bool)
        return frame[list(RUN_COLUMNS)]

    def record_conflicts(self, run_id: str, user: str, conflicts: pd.DataFrame) -> int:
        """Keep every conflict of the run with both values and the winner (R9)."""
        return self._record_run_rows(conflicts_table, CONFLICT_COLUMNS, run_id, user, conflicts)

    def record_quarantine(self, run_id: str, user: str, rows: pd.DataFrame) -> int:
        """Keep the run's quarantined records (R19); ``value`` is cut to a short preview."""
        return self._record_run_rows(quarantine_table, QUARANTINE_COLUMNS, run_id, user, rows, preview="value")

    def _record_run_rows(
        self, table: sa.Table, columns: Sequence[str], run_id: str, user: str, frame: pd.DataFrame,
        preview: str | None = None,
    ) -> int:
        """Insert a run's report rows, every value as text (``preview``: that column cut short)."""
        recs = _records(frame, columns)
        for rec in recs:
            rec.update(run_id=run_id, crm_user=user)
            for c in columns:
                if rec[c] is not None:
                    rec[c] = str(rec[c])
            value = rec[preview] if preview else None
            if value is not None and len(value) > VALUE_PREVIEW:
                rec[preview] = value[: VALUE_PREVIEW - 1] + "…"
        if recs:
            with self._write() as conn:
                for chunk in _chunks(recs, 5000):
                    conn.execute(table.insert(), chunk)
        return len(recs)

    def conflicts(self, run_id: str) -> pd.DataFrame:
        """The run's conflicts: ``user`` + CONFLICT_COLUMNS."""
        return self._by_run(conflicts_table, run_id, CONFLICT_COLUMNS)

    def quarantine(self, run_id: str) -> pd.DataFrame:
        """The run's quarantined records: ``user`` + QUARANTINE_COLUMNS."""
        return self._by_run(quarantine_table, run_id, QUARANTINE_COLUMNS)

    def _by_run(self, table: sa.Table, run_id: str, columns: Sequence[str]) -> pd.DataFrame:
        with self.engine.connect() as conn:
            frame = _frame(conn.execute(
                sa.select(table.c.crm_user.label("user"), *[table.c[c] for c in columns])
                .where(table.c.run_id == run_id).order_by(table.c.id)
            ))
        return conform(frame, ("user", *columns)) if not frame.empty else empty_frame(("user", *columns))

    # -- per-user lock ----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, user: str, *, wait: float = 0.0) -> Iterator[LockHandle]:
        """Hold the user's cycle lock; raise LockedError (exit code 4) if it stays taken.

        Acquisition is one atomic statement (INSERT on the primary key, or an UPDATE of
        the holder's exact token when that holder is gone), so two processes never both
        hold it. A holder on this host whose process is dead is taken over at once; any
        other holder once its heartbeat is older than ``lock_ttl``.
        """
        handle = LockHandle(user=user, token=uuid.uuid4().hex)
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            holder = self._try_lock(handle)
            if holder is None:
                break
            if holder and time.monotonic() >= deadline:
                since = datetime.fromtimestamp(holder["acquired_at"], UTC).isoformat(timespec="seconds")
                raise LockedError(
                    f"another cycle for user {unpad_user(user)} is running "
                    f"(host {holder['host']}, pid {holder['pid']}, since {since})",
                    hint="wait for it to finish; a lock whose holder died is taken over at once "
                    f"on the same host, elsewhere after {self.lock_ttl:g} s without heartbeat",
                )
            if holder:
                time.sleep(min(0.1, max(deadline - time.monotonic(), 0.01)))
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(handle, stop), name=f"lock-heartbeat-{user.strip()}",
            daemon=True,
        )
        beat.start()
        try:
            yield handle
        finally:
            stop.set()
            beat.join()
            with self._write() as conn:
                conn.execute(sa.delete(locks_table).where(
                    locks_table.c.crm_user == user, locks_table.c.token == handle.token))

    @staticmethod
    def _clock(conn: Connection) -> float:
        """Lock times come from one clock: the database server's when it is shared by
        hosts (PostgreSQL), so a skewed worker clock never steals a live lock."""
        if conn.dialect.name == "postgresql":
            return float(conn.execute(sa.text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())
        return time.time()

    def _try_lock(self, handle: LockHandle) -> dict[str, Any] | None:
        """None = acquired; {} = the holder changed meanwhile (retry); else the live holder."""
        lt = locks_table
        mine: dict[str, Any] = dict(host=_HOST, pid=os.getpid(), proc_start=_proc_start(os.getpid()),
                                    token=handle.token)
        try:
            with self._write() as conn:
                now = self._clock(conn)
                conn.execute(lt.insert().values(crm_user=handle.user, acquired_at=now,
                                                heartbeat_at=now, **mine))
            return None
        except IntegrityError:
            pass
        with self.engine.connect() as conn:
            holder = conn.execute(sa.select(lt).where(lt.c.crm_user == handle.user)).mappings().first()
            now = self._clock(conn)
        if holder is None:
            return {}
        holder = dict(holder)
        gone = (holder["host"] == _HOST and not pid_alive(holder["pid"], holder["proc_start"])) or (
            now - holder["heartbeat_at"] > self.lock_ttl)
        if not gone:
            return holder
        with self._write() as conn:  # compare-and-swap: only if nobody moved it since we looked
            now = self._clock(conn)
            taken = conn.execute(
                sa.update(lt).where(lt.c.crm_user == handle.user, lt.c.token == holder["token"],
                                    lt.c.heartbeat_at == holder["heartbeat_at"])
                .values(acquired_at=now, heartbeat_at=now, **mine)
            ).rowcount
        return None if taken == 1 else {}

    def _heartbeat(self, handle: LockHandle, stop: threading.Event) -> None:
        lt = locks_table
        while not stop.wait(self.heartbeat):
            try:
                with self._write() as conn:
                    n = conn.execute(
                        sa.update(lt).where(lt.c.crm_user == handle.user, lt.c.token == handle.token)
                        .values(heartbeat_at=self._clock(conn))
                    ).rowcount
                if n == 0:
                    handle._lost.set()
                    return
            except sa.exc.SQLAlchemyError:
                continue  # a hiccup of the store: try again at the next beat

    def lock_holder(self, user: str) -> dict[str, Any] | None:
        """Who holds the user's lock now (host, pid, token, acquired_at, heartbeat_at)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(locks_table).where(locks_table.c.crm_user == user)
            ).mappings().first()
        return dict(row) if row else None
