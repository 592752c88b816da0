"""The stepwise migrations of the state store: one function per version step.

The schema version lives in ``meta`` (vdirsyncer's ``status.py``); each step of
``MIGRATIONS`` runs in the opener's transaction, serialised against concurrent openers.
A module of its own because a step may need a store's code (version 4 folds the rows into
``blobs``), while the stores need the tables of ``schema``: so no module imports back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from contactsync.db import shown_url, write
from contactsync.errors import FatalError
from contactsync.state import schema
from contactsync.state.blobs import fold_all

_ADVISORY_LOCK = 7311952  # PostgreSQL: one migrating opener at a time


# --- migrations: one function per version step, each run in the opener's transaction ----
def _migrate_to_1(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=list(schema.VERSION_1_TABLES), checkfirst=True)


def _migrate_to_2(conn: Connection) -> None:
    """The id counter joins the store. A version-1 store whose allocator already made the
    table (outside the migrations) keeps it and its rows: only a missing table is created."""
    schema.id_counter_table.create(conn, checkfirst=True)


def _migrate_to_3(conn: Connection) -> None:
    """The contact history joins the store (issue 14). A store where the history was made
    outside the migrations (contactsync/history.py before the split) keeps its rows."""
    schema.history_table.create(conn, checkfirst=True)


def _migrate_to_4(conn: Connection) -> None:
    """Each user's links and mirror rows are folded into one columnar blob (what a cycle
    reads fast, issue 15); the row tables keep only later changes."""
    schema.blobs_table.create(conn, checkfirst=True)
    schema.segments_table.create(conn, checkfirst=True)  # a base written empties it (version 5)
    fold_all(conn)


def _migrate_to_5(conn: Connection) -> None:
    """Changed rows are kept as columnar segments (issue 15). Nothing is moved here: rows a
    version-4 program left in the row tables are read as the oldest segment and folded
    into one at that user's next save, so an upgrade of a fleet costs no pass over it."""
    schema.segments_table.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _migrate_to_1, 2: _migrate_to_2, 3: _migrate_to_3, 4: _migrate_to_4, 5: _migrate_to_5,
}


def _version_lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})"))


def migrate(engine: Engine) -> int:
    """Apply the missing migration steps (serialised against concurrent openers) and
    return the schema version; refuse a store made by a newer program (FatalError)."""
    target = schema.SCHEMA_VERSION  # read at call time: tests add a step by patching it
    for attempt in range(3):
        try:
            with write(engine) as conn:
                _version_lock(conn)
                schema.meta_table.create(conn, checkfirst=True)
            with write(engine) as conn:
                _version_lock(conn)
                found = conn.execute(
                    sa.select(schema.meta_table.c.value).where(schema.meta_table.c.key == "schema_version")
                ).scalar()
                version = int(found) if found is not None else 0
                if version > target:
                    raise FatalError(
                        f"state store {shown_url(engine)} has schema version {version}, "
                        f"newer than this program's {target}",
                        hint="upgrade contact-sync on this machine",
                    )
                for step in range(version + 1, target + 1):
                    MIGRATIONS[step](conn)
                if found is None:
                    conn.execute(schema.meta_table.insert().values(key="schema_version", value=str(target)))
                elif version != target:
                    conn.execute(
                        sa.update(schema.meta_table)
                        .where(schema.meta_table.c.key == "schema_version")
                        .values(value=str(target))
                    )
            return target
        except (IntegrityError, sa.exc.OperationalError, sa.exc.ProgrammingError):
            if attempt == 2:
                raise
            time.sleep(0.2)  # another opener migrated at the same moment: re-read
    return target  # pragma: no cover
