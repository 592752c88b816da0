"""Units of CRM writes: one action's statements, committed or rolled back together.

A chunk of units is written in one transaction (executemany per statement); when that
fails, again one transaction per unit, so only the failing unit is lost and reported with
its record, while a failing database (not a record) stops the load as a TransientError:
the next cycle resumes (R18).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from contactsync.crm.columns import value_or_none
from contactsync.errors import TransientError

RESULT_COLUMNS: tuple[str, ...] = ("action_id", "status", "crm_id", "account_id", "error")


@dataclass
class Unit:
    """One action's writes: executed together, committed or rolled back together."""

    result: dict[str, Any]
    ops: list[tuple[Hashable, Any, dict[str, Any]]] = field(default_factory=list)


def is_transient(exc: sa.exc.SQLAlchemyError) -> bool:
    """A lost connection or a lock timeout: retrying the cycle helps, quarantining does not."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa.exc.OperationalError)


def result_of(row: dict[str, Any], status: str, *, crm_id: str | None = None,
              account_id: str | None = None, error: str | None = None) -> dict[str, Any]:
    """The result row (RESULT_COLUMNS) of one action."""
    return {"action_id": value_or_none(row.get("action_id")), "status": status, "crm_id": crm_id,
            "account_id": account_id, "error": error}

def fail(unit: Unit, message: str) -> None:
    """The unit writes nothing and reports ``message``."""
    unit.result["status"] = "failed"
    unit.result["error"] = message
    unit.ops.clear()


def execute(engine: sa.Engine, units: list[Unit], emit: Callable[[dict[str, Any]], None]) -> None:
    """All units of a chunk in one transaction (executemany per statement); if that
    fails, again one transaction per unit, so only the failing unit is lost."""
    pending = [u for u in units if u.ops and u.result["status"] == "applied"]
    if pending:
        try:
            with engine.begin() as conn:
                grouped: dict[Hashable, tuple[Any, list[dict[str, Any]]]] = {}
                for u in pending:
                    for key, stmt, params in u.ops:
                        grouped.setdefault(key, (stmt, []))[1].append(params)
                for stmt, params in grouped.values():
                    conn.execute(stmt, params)
        except sa.exc.SQLAlchemyError as exc:
            if is_transient(exc):
                # The database, not a record, failed: nothing of this chunk was
                # written; earlier chunks are committed and were reported (R18).
                raise TransientError(
                    f"the CRM database failed while writing ({str(exc).splitlines()[0]})",
                    hint="the next cycle resumes; check the CRM database connection",
                ) from exc
            dead_accounts: set[str] = set()
            for u in pending:
                if u.result["crm_id"] and u.result.get("account_id") in dead_accounts:
                    fail(u, f"no account for new contact {u.result['crm_id']}: its account "
                                  f"{u.result['account_id']} was not created (R5)")
                    continue
                try:
                    with engine.begin() as conn:
                        for _, stmt, params in u.ops:
                            conn.execute(stmt, params)
                except sa.exc.SQLAlchemyError as exc:
                    orig = getattr(exc, "orig", None) or exc
                    fail(u, f"writing {u.result['crm_id'] or u.result['action_id']} "
                                  f"failed and was rolled back: {str(orig).splitlines()[0]}")
                    if not u.result["crm_id"] and u.result.get("account_id"):
                        dead_accounts.add(u.result["account_id"])
    for u in units:
        emit(u.result)
