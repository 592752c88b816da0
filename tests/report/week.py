"""A scripted week of cycles in a state store, as the report's tests and bench read it.

One cycle (:func:`record`) is written with the store's own API (start_run, finish_run,
record_conflicts, record_quarantine) and then dated: the store stamps "now", the script
needs last Monday. A whole week (:class:`Week`) goes straight into the same tables in
one transaction, in the shape that API writes: hundreds of runs in a second.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from contactsync.report import run_summary
from contactsync.state import StateStore
from contactsync.state.schema import conflicts_table, quarantine_table, runs_table

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HOSTILE = "<script>alert(\"pwned\")</script> O'Brien \"Bob\" 🦊"


@dataclass
class Cycle:
    """One cycle to script: its age, status and what it did."""

    ago: timedelta
    status: str = "ok"
    outlook: dict[str, int] = field(default_factory=dict)
    crm: dict[str, int] = field(default_factory=dict)
    conflicts: list[dict[str, str]] = field(default_factory=list)
    quarantine: list[dict[str, str]] = field(default_factory=list)
    message: str = ""
    actions: list[dict[str, str]] = field(default_factory=list)


def _summary(cycle: Cycle) -> dict:
    """The run summary the sync flow would keep for this cycle."""
    rows = [{"side": "outlook", "op": op, "rule": "R8" if op == "update" else "R4", "count": n}
            for op, n in cycle.outlook.items()]
    rows += [{"side": "crm", "op": op, "rule": "R8" if op == "update" else "R5c", "count": n}
             for op, n in cycle.crm.items()]
    summary = run_summary(pd.DataFrame(rows) if rows else None, conflicts=len(cycle.conflicts),
                          quarantined=len({q["record_id"] for q in cycle.quarantine}),
                          message=cycle.message, actions=cycle.actions, duration_s=1.2)
    if cycle.status == "guard-stopped":  # a stopped cycle wrote nothing; its plan is in actions
        summary["counts"] = run_summary(None)["counts"]
        summary["by_rule"] = []
    return summary


def record(store: StateStore, user: str, cycle: Cycle, now: datetime = NOW) -> str:
    """Write one cycle as the sync flow does and date it ``cycle.ago`` before ``now``."""
    run = store.start_run(user, dry_run=cycle.status == "dry-run", params={"force": False})
    summary = _summary(cycle)
    if cycle.conflicts:
        store.record_conflicts(run, user, pd.DataFrame(cycle.conflicts))
    if cycle.quarantine:
        store.record_quarantine(run, user, pd.DataFrame(cycle.quarantine))
    store.finish_run(run, cycle.status, summary)
    start = now - cycle.ago
    with store.engine.begin() as conn:
        conn.execute(sa.update(runs_table).where(runs_table.c.run_id == run).values(
            started_at=start.isoformat(timespec="microseconds"),
            finished_at=(start + timedelta(seconds=1.2)).isoformat(timespec="microseconds")))
    return run


class Week:
    """Cycles collected and written in one transaction (the store's row shapes)."""

    def __init__(self, store: StateStore, now: datetime = NOW) -> None:
        self.store, self.now = store, now
        self.runs: list[dict] = []
        self.conflicts: list[dict] = []
        self.quarantine: list[dict] = []

    def add(self, user: str, cycle: Cycle) -> str:
        run = uuid.uuid4().hex
        start = self.now - cycle.ago
        self.runs.append({"run_id": run, "crm_user": user, "dry_run": cycle.status == "dry-run",
                          "status": cycle.status, "params": json.dumps({"force": False}),
                          "started_at": start.isoformat(timespec="microseconds"),
                          "finished_at": (start + timedelta(seconds=1.2)).isoformat(timespec="microseconds"),
                          "summary": json.dumps(_summary(cycle))})
        for c in cycle.conflicts:
            self.conflicts.append({"run_id": run, "crm_user": user, **c})
        for q in cycle.quarantine:
            self.quarantine.append({"run_id": run, "crm_user": user, **q})
        return run

    def write(self) -> None:
        with self.store.engine.begin() as conn:
            for table, rows in ((runs_table, self.runs), (conflicts_table, self.conflicts),
                                (quarantine_table, self.quarantine)):
                for i in range(0, len(rows), 5000):
                    if rows[i : i + 5000]:
                        conn.execute(table.insert(), rows[i : i + 5000])
        self.runs, self.conflicts, self.quarantine = [], [], []


def conflict(crm_id: str, outlook_id: str, field_name: str, crm_value: str, outlook_value: str,
             winner: str = "outlook") -> dict[str, str]:
    return {"crm_id": crm_id, "outlook_id": outlook_id, "field": field_name, "snapshot_value": "old",
            "crm_value": crm_value, "outlook_value": outlook_value, "winner": winner,
            "policy": "latest", "rule": "R9"}


def problem(record_id: str, reason: str, value: str = "", side: str = "crm") -> dict[str, str]:
    return {"side": side, "record_id": record_id, "field": "email1", "rule": "R19",
            "reason": reason, "value": value}


#: The week's people: padded id -> (display name, mailbox). One name is hostile.
PEOPLE = {
    "ULEEP0000001": ("Lee Park", "lee@example.com"),
    "USAMR0000002": (HOSTILE, "sam@example.com"),
    "UKIMF0000003": ("Kim Failing", "kim@example.com"),
    "UGUSG0000004": ("Gus Guarded", "gus@example.com"),
    "UQUIN0000005": ("Quinn Quarantine", "quinn@example.com"),
}
EVERY = timedelta(hours=2)  # the script's cycle interval (the bench uses 15 minutes)


def scripted_week(store: StateStore, now: datetime = NOW) -> dict[str, str]:
    """Five users over seven days: one fine with a conflict three days ago (hostile
    values), one with a hostile display name, one failing since yesterday (Graph down),
    one stopped twice by the guard (R16), one with a record quarantined (R19) and
    another fixed since. Returns {"conflict_run": run id of the three-day-old conflict}."""
    out: dict[str, str] = {}
    week = Week(store, now)
    steps = int(timedelta(days=7) / EVERY)
    lee, sam, kim, gus, quinn = PEOPLE
    for i in range(steps, 0, -1):
        ago = EVERY * i - timedelta(minutes=7)
        day_writes = {"update": 1} if i % 6 == 0 else {}
        week.add(lee, Cycle(ago, outlook=day_writes, crm=day_writes))
        week.add(sam, Cycle(ago, outlook={"create": 2} if i == steps else {}))
        if ago > timedelta(hours=20):
            week.add(kim, Cycle(ago, crm={"update": 1} if i % 5 == 0 else {}))
        else:
            week.add(kim, Cycle(ago, status="failed", message=(
                "Outlook (Microsoft Graph) cannot be reached after 5 attempts: 503 Service Unavailable; "
                "the next cycle retries")))
        if i > 2:
            week.add(gus, Cycle(ago))
        else:
            week.add(gus, Cycle(ago, status="guard-stopped", message=(
                "stopped before writing anything (R16): 180 of 200 synced contacts (90%) would be "
                "deleted in Outlook"), actions=[{"side": "outlook", "op": "delete", "rule": "R13"}] * 180))
        q = [problem("CQUIN0000BAD", "invalid email address: fix it in the CRM", "not-an-email")]
        if i > steps // 2:
            q.append(problem("CQUIN0000FIX", "value too long for the CRM (TITLE, 64)", "x" * 80))
        week.add(quinn, Cycle(ago, quarantine=q))
        if i == int(timedelta(days=3) / EVERY):  # three days ago: Lee's conflict
            out["conflict_run"] = week.add(lee, Cycle(
                ago - timedelta(minutes=1), outlook={"update": 1}, conflicts=[
                    conflict("CLEEP0000042", "AAMkAGI-42", "last_name", HOSTILE, "Brien"),
                    conflict("CLEEP0000043", "AAMkAGI-43", "mobile_phone", "+1 555 0100", "+1 555 0199")]))
    week.write()
    return out


DEMO_MAILBOXES = {"UDEMOA000001": "lee@example.com", "UDEMOA000002": "sam@example.com"}


def write_config(cfg: Path, crm_db: Path, report: str) -> StateStore:
    """A configuration at ``cfg`` for the demo CRM's two users (its state store beside it,
    ``report`` = the [report] section's lines); returns that state store, open."""
    cfg.parent.mkdir(parents=True)
    users = "".join(f'[[users]]\ncrm_user = "{u}"\nmailbox = "{m}"\n' for u, m in DEMO_MAILBOXES.items())
    cfg.write_text(f'[crm]\nurl = "sqlite:///{crm_db}"\n[outlook]\ntoken = "t"\n'
                   f'[state]\nurl = "sqlite:///state.db"\n[report]\n{report}\n{users}', encoding="utf-8")
    return StateStore(f"sqlite:///{cfg.parent / 'state.db'}")
