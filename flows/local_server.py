"""The local Prefect server the commands start (contactsync/cli/prefect_server.py), as
``python -m flows.local_server server start --host H --port P``: Prefect's own
``prefect server start``, with one change to how it uses its SQLite database.

Prefect's server opens most of its write transactions ``DEFERRED``: a transaction reads
first (creating a task run reads its flow run's labels; creating a flow run reads its
flow and work queue) and takes SQLite's write lock only at its first write. When another
connection wrote in between, SQLite refuses that upgrade at once with "database is
locked" (SQLITE_BUSY_SNAPSHOT under WAL: the busy timeout does not apply), the server
answers 503, and Prefect's client sleeps about 2 s before it retries (2**n s with
jitter). Several users' runs created at the same time (the fan-out, ``sync.parallel_users``)
hit exactly that: measured in this project, a user's subflow run created seconds late
because its creation was answered 503 (up to 12 s with 4 users in 4 threads). Prefect
knows it (PrefectHQ/prefect issue 18934, "Even basic examples result in excessive
database is locked logs", open) and mends it a
transaction at a time by beginning it ``IMMEDIATE`` (``with_for_update=True``: flow and
task run state changes, triggers, deployments; PrefectHQ/prefect pull 22967). Here every
SQLite transaction that the server begins takes the write lock when it begins, so a
second writer waits on SQLite's busy timeout (60 s in Prefect) for milliseconds instead
of failing. Reads outside a transaction (Prefect's read endpoints) are unchanged and
still run beside a writer (WAL).

Only this launcher changes, so a server of the user's own (``PREFECT_API_URL``) or the
tests' harness is Prefect's as it ships; if Prefect's internals moved, the server runs
unchanged and says so in its log.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

_MARK = "_contactsync_immediate"


def sqlite_writes_begin_immediate() -> bool:
    """Make every transaction Prefect's server begins on SQLite ``BEGIN IMMEDIATE``.

    Returns whether it did (False: this Prefect's database layer is not the one this was
    written against, and the server runs as Prefect ships it)."""
    try:
        from prefect.server.database.configurations import AioSqliteConfiguration
    except ImportError:
        return False
    original = AioSqliteConfiguration.begin_transaction
    if getattr(original, _MARK, False):
        return True
    if "with_for_update" not in inspect.signature(original).parameters:
        return False

    def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> Any:
        # Prefect's own switch for BEGIN IMMEDIATE (configurations.begin_transaction)
        return original(self, session, with_for_update=True)

    setattr(begin_transaction, _MARK, True)
    begin_transaction.__doc__ = original.__doc__
    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]
    return True


def main(argv: list[str]) -> int:
    """``prefect`` with ``argv`` (e.g. ``server start --host 127.0.0.1 --port 4200``)."""
    changed = sqlite_writes_begin_immediate()
    print(f"contact-sync: SQLite write transactions begin IMMEDIATE: {'yes' if changed else 'no (unchanged Prefect)'}",
          flush=True)
    from prefect.cli import app

    sys.argv = ["prefect", *argv]
    result = app()
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
