"""The journal (R18): every intended write, recorded before it is made.

Entries move new -> started -> applied | failed (dlt's load packages); a cycle first
finishes what an earlier one left pending. Ids allocated before a CRM create are kept
with the entry: they are how a crashed create is recognised next time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from contactsync.plan.schema import ACTION_COLUMNS
from contactsync.state.base import Store
from contactsync.state.rows import (
    CHUNK,
    bulk_insert,
    chunks,
    empty,
    json_load,
    now_iso,
    read_frame,
    records,
)
from contactsync.state.schema import journal_table
from contactsync.vocab import JOURNAL_STATES

#: Journal columns as journal_pending returns them (allocated/payload are dicts).
JOURNAL_COLUMNS: tuple[str, ...] = (
    "action_id", "run_id", "side", "op", "crm_id", "outlook_id", "new_key", "allocated",
    "payload", "state", "final", "error", "attempts", "created_at", "updated_at",
)
_KEYS = ("action_id", "side", "op", "crm_id", "outlook_id", "new_key")


def _mark_values(state: str, result: dict[str, Any]) -> dict[str, Any]:
    """The journal columns a mark sets (``attempts`` is the expression ``attempts + 1``)."""
    if state not in JOURNAL_STATES:
        raise ValueError(f"journal state must be one of {JOURNAL_STATES}, got {state!r}")
    unknown = set(result) - {"crm_id", "outlook_id", "error", "allocated", "final"}
    if unknown:
        raise TypeError(f"journal_mark got unexpected result keys {sorted(unknown)}")
    values: dict[str, Any] = {"state": state, "updated_at": now_iso()}
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


class JournalStore(Store):
    """The ``journal`` table, per user and action_id."""

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
        payload_cols = [c for c in ACTION_COLUMNS if c in actions.columns and c not in _KEYS]
        stamp = now_iso()
        new_rows: dict[str, dict[str, Any]] = {}
        # A chunk of actions at a time: a first sync's 100,000 actions as three lists of
        # dicts at once were ~200 MB of its peak RSS (issue 15); the rows kept are the same.
        for start in range(0, len(actions), 5 * CHUNK):
            part = actions.iloc[start : start + 5 * CHUNK]
            base = records(part, _KEYS)
            payloads = records(part, payload_cols)
            allocs = records(part, alloc_cols) if alloc_cols else [{} for _ in base]
            extra = part["allocated"].tolist() if "allocated" in part.columns else [None] * len(base)
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
                found = [p for chunk in chunks(ids) for p in conn.execute(
                    sa.select(j).where(j.c.crm_user == user, j.c.action_id.in_(chunk))).mappings()]
            for prev in found:
                row = new_rows[prev["action_id"]]
                pending = prev["state"] in ("new", "started") or (
                    prev["state"] == "failed" and not prev["final"])
                if pending:
                    merged = json_load(row["allocated"])
                    merged.update(json_load(prev["allocated"]))  # first allocation wins
                    row.update(state=prev["state"], error=prev["error"],
                               attempts=prev["attempts"], created_at=prev["created_at"],
                               allocated=json.dumps(merged, default=str))
            for chunk in chunks([p["action_id"] for p in found]):
                conn.execute(sa.delete(j).where(j.c.crm_user == user, j.c.action_id.in_(chunk)))
            cols = [c.name for c in j.columns]
            bulk_insert(conn, j, cols, [tuple(r[c] for c in cols) for r in new_rows.values()])
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
            for chunk in chunks(action_ids):
                where = (j.c.crm_user == user, j.c.action_id.in_(chunk))
                n += conn.execute(sa.update(j).where(*where).values(**values)).rowcount
                if result.get("allocated"):
                    for aid, text in conn.execute(sa.select(j.c.action_id, j.c.allocated).where(*where)):
                        merged = json_load(text)
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
            found = read_frame(conn.execute(
                sa.select(*[j.c[c] for c in JOURNAL_COLUMNS]).where(cond)
                .order_by(j.c.created_at, j.c.action_id)
            ))
        if found.empty:
            return empty(JOURNAL_COLUMNS)
        found["allocated"] = found["allocated"].map(json_load)
        found["payload"] = found["payload"].map(json_load)
        found["final"] = found["final"].astype(bool)
        return found.astype({c: object for c in ("crm_id", "outlook_id", "new_key", "error")})

    def journal_clear(self, user: str, run_id: str | None = None) -> int:
        """Drop the user's journal (or one run's part of it) once nothing in it is pending."""
        j = journal_table
        cond = [j.c.crm_user == user]
        if run_id is not None:
            cond.append(j.c.run_id == run_id)
        with self._write() as conn:
            return conn.execute(sa.delete(j).where(*cond)).rowcount
