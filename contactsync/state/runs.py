"""Runs, and what each run leaves for the report: its conflicts (R9) and quarantine (R19).

A run row is written when a cycle starts and closed with its status and summary when it
ends; parameters and summaries are stored with secret-looking keys blanked, because the
report and the CLI show them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from contactsync import vocab
from contactsync.model import conform
from contactsync.plan.schema import CONFLICT_COLUMNS
from contactsync.state.base import Store
from contactsync.state.rows import chunks, empty, json_load, now_iso, read_frame, records
from contactsync.state.schema import (
    QUARANTINE_COLUMNS,
    conflicts_table,
    quarantine_table,
    runs_table,
)

RUN_STATUSES = frozenset(vocab.RUN_STATUSES)
RUN_COLUMNS: tuple[str, ...] = (
    "run_id", "user", "started_at", "finished_at", "dry_run", "status", "params", "summary",
)
VALUE_PREVIEW = 60  # characters of a quarantined value kept for the report
_SECRET_KEY = re.compile(r"secret|token|password|passwd|credential|authori[sz]ation", re.I)


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


class RunStore(Store):
    """The ``runs``, ``conflicts`` and ``quarantine`` tables."""

    def start_run(self, user: str, *, dry_run: bool, params: dict[str, Any]) -> str:
        """Record that a cycle started; returns its run_id (uuid4 hex)."""
        run_id = uuid.uuid4().hex
        with self._write() as conn:
            conn.execute(runs_table.insert().values(
                run_id=run_id, crm_user=user, started_at=now_iso(), dry_run=bool(dry_run),
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
                    status=status, finished_at=now_iso(),
                    summary=json.dumps(_redact(summary), default=str),
                )
            ).rowcount
        if not n:
            raise KeyError(f"no run {run_id!r} in the state store")

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
        return {"run_id": row.run_id, "status": row.status, "summary": json_load(row.summary)}

    def recent_runs(self, user: str | None = None, limit: int = 20) -> pd.DataFrame:
        """The newest runs first (RUN_COLUMNS; params and summary as dicts)."""
        r = runs_table
        q = sa.select(r).order_by(r.c.started_at.desc(), r.c.run_id).limit(limit)
        if user is not None:
            q = q.where(r.c.crm_user == user)
        with self.engine.connect() as conn:
            found = read_frame(conn.execute(q))
        if found.empty:
            return empty(RUN_COLUMNS)
        found = found.rename(columns={"crm_user": "user"})
        for col in ("started_at", "finished_at"):
            found[col] = pd.to_datetime(found[col], utc=True, format="ISO8601")
        found["params"] = found["params"].map(json_load)
        found["summary"] = found["summary"].map(json_load)
        found["dry_run"] = found["dry_run"].astype(bool)
        return found[list(RUN_COLUMNS)]

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
        recs = records(frame, columns)
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
                for chunk in chunks(recs, 5000):
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
            found = read_frame(conn.execute(
                sa.select(table.c.crm_user.label("user"), *[table.c[c] for c in columns])
                .where(table.c.run_id == run_id).order_by(table.c.id)
            ))
        return conform(found, ("user", *columns))
