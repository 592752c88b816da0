"""What the report reads from the state store: a period's runs, conflicts and quarantine.

A report of 200 users x 7 days of 15-minute cycles covers ~134,000 runs: everything is
read in a few bulk queries per table (users in chunks, the period as a string range on
the ISO start times the store keeps), never one query per run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from contactsync.plan.schema import CONFLICT_COLUMNS
from contactsync.state import StateStore
from contactsync.state.schema import (
    QUARANTINE_COLUMNS,
    conflicts_table,
    quarantine_table,
    runs_table,
)

_CHUNK = 500  # users per IN (...)
#: Statuses of a cycle that got as far as its plan and quarantine (R19): the records
#: quarantined "as of the user's last cycle" are those of the newest such run.
EVALUATED = ("ok", "dry-run", "guard-stopped")


@dataclass(frozen=True)
class PeriodData:
    """The raw rows of one report: frames keyed by the padded user id (``user``)."""

    runs: pd.DataFrame  # run_id, user, started_at, finished_at, dry_run, status, summary (dict)
    last_ok: dict[str, pd.Timestamp]  # newest 'ok' cycle per user, from any time
    conflicts: pd.DataFrame  # user, run_id, started_at + CONFLICT_COLUMNS
    quarantine: pd.DataFrame  # user, run_id, started_at + QUARANTINE_COLUMNS


def _iso(ts: pd.Timestamp) -> str:
    """The store's own start-time format, so ``>=`` on strings is ``>=`` in time."""
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _chunks(users: Sequence[str]) -> Iterator[list[str]]:
    items = list(users)
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _read(store: StateStore, queries: Iterator[sa.Select], columns: Sequence[str]) -> pd.DataFrame:
    rows: list[tuple] = []
    with store.engine.connect() as conn:
        for q in queries:
            rows.extend(tuple(r) for r in conn.execute(q))
    return pd.DataFrame.from_records(rows, columns=list(columns)) if rows else pd.DataFrame(
        {c: pd.Series(dtype=object) for c in columns})


def _times(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for col in columns:
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    return frame


def read_period(store: StateStore, users: Sequence[str], since: pd.Timestamp) -> PeriodData:
    """Every run of ``users`` (padded ids) started at or after ``since``, with its rows."""
    r, c, q = runs_table, conflicts_table, quarantine_table
    start = _iso(since)
    run_cols = ("run_id", "user", "started_at", "finished_at", "dry_run", "status", "summary")
    runs = _read(store, (
        sa.select(r.c.run_id, r.c.crm_user, r.c.started_at, r.c.finished_at, r.c.dry_run,
                  r.c.status, r.c.summary)
        .where(r.c.crm_user.in_(chunk), r.c.started_at >= start)
        for chunk in _chunks(users)), run_cols)
    runs = _times(runs, "started_at", "finished_at")
    runs["summary"] = [json.loads(s) if s else {} for s in runs["summary"]]
    runs["dry_run"] = runs["dry_run"].astype(bool)
    runs = runs.sort_values(["user", "started_at", "run_id"], ascending=[True, False, True],
                            ignore_index=True)

    ok = _read(store, (
        sa.select(r.c.crm_user, sa.func.max(r.c.started_at))
        .where(r.c.crm_user.in_(chunk), r.c.status == "ok").group_by(r.c.crm_user)
        for chunk in _chunks(users)), ("user", "started_at"))
    last_ok = dict(zip(ok["user"], pd.to_datetime(ok["started_at"], utc=True, format="ISO8601"),
                       strict=True))

    def rows(table: sa.Table, columns: Sequence[str]) -> pd.DataFrame:
        frame = _read(store, (
            sa.select(table.c.crm_user, table.c.run_id, r.c.started_at, *[table.c[x] for x in columns])
            .join(r, r.c.run_id == table.c.run_id)
            .where(table.c.crm_user.in_(chunk), r.c.started_at >= start)
            .order_by(r.c.started_at.desc(), table.c.id)
            for chunk in _chunks(users)), ("user", "run_id", "started_at", *columns))
        return _times(frame, "started_at")

    return PeriodData(runs=runs, last_ok=last_ok, conflicts=rows(c, CONFLICT_COLUMNS),
                      quarantine=rows(q, QUARANTINE_COLUMNS))
