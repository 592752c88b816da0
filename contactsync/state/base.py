"""What every store of the package stands on: the state database's engine.

Each store (links, mirror, journal, runs, lock) is a class of its own over one engine,
usable alone (``JournalStore(engine)``); ``StateStore`` combines them and owns the engine.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy.engine import Connection, Engine

from contactsync.db import write


class Store:
    """One store over the (already migrated) state database at ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _write(self) -> AbstractContextManager[Connection]:
        """A write transaction that takes SQLite's write lock first (contactsync.db.write)."""
        return write(self.engine)
