"""The sync's own memory, in a database of its own: one module per store, and this facade.

- ``schema``: every table (the CRM id counter included) and the stepwise migrations;
- ``links``: links + snapshots (R7, R8);  ``mirror``: the Outlook mirror + delta token;
- ``journal``: intended writes before they happen (R18);
- ``runs``: runs, their conflicts (R9) and quarantined records (R19);
- ``lock``: one cycle per user at a time;
- ``history``: one contact's writes, conflicts and quarantine across cycles (explain).

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

import sqlalchemy as sa

from contactsync.db import make_engine, shown_url
from contactsync.errors import TransientError
from contactsync.state.history import HistoryStore
from contactsync.state.journal import JOURNAL_COLUMNS, JOURNAL_STATES, JournalStore
from contactsync.state.links import LinkStore
from contactsync.state.lock import LockHandle, LockStore, pid_alive
from contactsync.state.migrations import MIGRATIONS, migrate
from contactsync.state.mirror import MirrorStore
from contactsync.state.runs import RUN_COLUMNS, RUN_STATUSES, VALUE_PREVIEW, RunStore
from contactsync.state.schema import (
    QUARANTINE_COLUMNS,
    SCHEMA_VERSION,
    id_counter_table,
    locks_table,
    meta_table,
    metadata,
)

__all__ = [
    "JOURNAL_COLUMNS", "JOURNAL_STATES", "MIGRATIONS", "QUARANTINE_COLUMNS", "RUN_COLUMNS",
    "RUN_STATUSES", "SCHEMA_VERSION", "VALUE_PREVIEW", "HistoryStore", "JournalStore", "LinkStore",
    "LockHandle", "LockStore", "MirrorStore", "RunStore", "StateStore", "id_counter_table",
    "locks_table", "meta_table", "metadata", "migrate", "pid_alive",
]


class StateStore(LinkStore, MirrorStore, JournalStore, RunStore, LockStore, HistoryStore):
    """The state store at ``url``: every store of the package over one engine, created or
    migrated when opened.

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
        LockStore.__init__(
            self, make_engine(url, busy_timeout=busy_timeout), lock_ttl=lock_ttl, heartbeat=heartbeat
        )
        try:
            self.schema_version = migrate(self.engine)
        except sa.exc.OperationalError as exc:
            self.engine.dispose()
            raise TransientError(
                f"the state store {shown_url(self.engine)} cannot be opened: {exc.orig}",
                hint="check [state] url in the configuration and that its database is reachable",
            ) from exc

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
