"""The report's facts (what report.json holds and the page shows), from the state store.

Over a period (``days``, default 7), not the last cycle: a conflict of Monday morning is
still on Friday's report after a week of quiet cycles. Every user's section is built from
that user's rows only (R1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from contactsync.model import pad_user, unpad_user
from contactsync.plan.schema import CONFLICT_COLUMNS
from contactsync.report import charts
from contactsync.report.data import EVALUATED, read_period
from contactsync.report.health import health, worst_first
from contactsync.report.summary import by_rule, plain
from contactsync.state import QUARANTINE_COLUMNS, StateStore

DEFAULT_DAYS = 7
SHOWN_PER_USER = 200  # conflicts / fixed records listed per user on the page (all in JSON)
_EMPTY: dict[str, pd.DataFrame] = {}  # the frames' empty shapes, for users without rows


def explain_command(user: str, crm_id: str | None, outlook_id: str | None) -> str:
    """The `contact-sync explain` line that tells this contact's whole story."""
    if crm_id:
        return f"contact-sync explain --crm-id {crm_id.strip()} --user {user}"
    return f"contact-sync explain --outlook-id {outlook_id} --user {user}"


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    return [{c: plain(rec.get(c)) for c in columns} for rec in frame.to_dict("records")]


def _run_entry(run: dict[str, Any]) -> dict[str, Any]:
    summary = run.get("summary") or {}
    seconds = summary.get("duration_s")
    if not isinstance(seconds, int | float):
        start, end = run.get("started_at"), run.get("finished_at")
        seconds = None if pd.isna(start) or pd.isna(end) else round((end - start).total_seconds(), 3)
    return {
        "run_id": run["run_id"], "started_at": plain(run["started_at"]),
        "finished_at": plain(run["finished_at"]), "seconds": seconds, "status": run["status"],
        "dry_run": bool(run["dry_run"]), "counts": plain(summary.get("counts", {})),
        "conflicts": summary.get("conflicts", 0), "quarantined": summary.get("quarantined", 0),
        "durations": plain(summary.get("durations", {})),
    }


def _last_run(run: dict[str, Any]) -> dict[str, Any]:
    summary = run.get("summary") or {}
    rules, partial = by_rule(summary)
    return {**_run_entry(run), "by_rule": rules, "by_rule_partial": partial,
            "guard": plain(summary.get("guard")), "message": plain(summary.get("message")),
            "errors": plain(list(summary.get("errors") or [])[:50])}


def _quarantine(user: str, runs: pd.DataFrame, rows: pd.DataFrame) -> tuple[list, list]:
    """Records quarantined as of the user's newest evaluated cycle (still to fix), and
    those quarantined earlier in the period that this cycle no longer holds (fixed)."""
    evaluated = runs[runs["status"].isin(EVALUATED)]
    if evaluated.empty or rows.empty:
        return [], []
    last = evaluated.iloc[0]
    now = rows[rows["run_id"] == last["run_id"]]
    earlier = rows[(rows["started_at"] < last["started_at"]) & ~rows["record_id"].isin(now["record_id"])]
    earlier = earlier.drop_duplicates(["side", "record_id", "field"])  # newest first already
    cols = ("started_at", *QUARANTINE_COLUMNS)
    fixed = [{**r, "fixed_by": last["run_id"]} for r in _records(earlier, cols)]
    return _records(now, cols), fixed


def _guard_stops(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Each guard stop (R16) of the period with what the cycle would have done."""
    out = []
    for run in runs[runs["status"] == "guard-stopped"].to_dict("records"):
        summary = run.get("summary") or {}
        rules, partial = by_rule(summary)
        out.append({"run_id": run["run_id"], "started_at": plain(run["started_at"]),
                    "message": summary.get("message"), "would": rules, "would_partial": partial})
    return out


def _split(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A frame's rows per user, in one pass (not one comparison of every row per user)."""
    if frame.empty:
        return {}
    return {str(u): frame.iloc[idx] for u, idx in frame.groupby("user", sort=False).indices.items()}


def _user_entry(
    padded: str, parts: Mapping[str, Mapping[str, pd.DataFrame]], last_ok: pd.Timestamp | None, *,
    buckets: Mapping[str, list[dict[str, Any]]], people: Mapping[str, Mapping[str, Any]], runs_shown: int,
) -> dict[str, Any]:
    user = unpad_user(padded)
    runs = parts["runs"].get(padded, _EMPTY["runs"])
    conflicts = parts["conflicts"].get(padded, _EMPTY["conflicts"])
    quarantine = parts["quarantine"].get(padded, _EMPTY["quarantine"])
    statuses = runs["status"].tolist()
    finished = [i for i, st in enumerate(statuses) if st != "running"]
    last = runs.iloc[(finished or [0])[0]].to_dict() if len(runs) else None
    open_q, fixed = _quarantine(padded, runs, quarantine)
    conflict_rows = _records(conflicts, ("started_at", "run_id", *CONFLICT_COLUMNS))
    for row in conflict_rows:
        row["explain"] = explain_command(user, row["crm_id"], row["outlook_id"])
    person = people.get(padded, {})
    entry: dict[str, Any] = {
        "user": user,
        "name": person.get("name"),
        "mailbox": person.get("mailbox"),
        "health": health(
            statuses, last_ok=last_ok,
            open_quarantine=len({(q["side"], q["record_id"]) for q in open_q}),
            conflicts=len(conflict_rows), cycles=len(finished),
            last_message=(last.get("summary") or {}).get("message") if last else None),
        "last_run": _last_run(last) if last is not None else None,
        "trend": [_run_entry(r) for r in runs.iloc[:runs_shown].to_dict("records")],
        "chart": buckets.get(padded, []),
        "conflicts": conflict_rows,
        "quarantine": open_q,
        "fixed": fixed,
        "guard_stops": _guard_stops(runs),
        "gx_docs": person.get("gx_docs"),
    }
    entry["health"]["last_cycle"] = None if last is None else plain(last["started_at"])
    entry["health"]["last_status"] = None if last is None else last["status"]
    return entry


def collect(
    store: StateStore, users: Sequence[str], *, days: int = DEFAULT_DAYS, runs: int = 20,
    people: Mapping[str, Mapping[str, Any]] | None = None, now: datetime | None = None,
) -> dict[str, Any]:
    """The report's data (what report.json holds), users sorted worst first.

    ``people``: per padded user id, ``name`` (USERINFO.USERNAME), ``mailbox`` and
    ``gx_docs`` (the link to that user's Data Docs). ``runs``: cycles listed per user.
    """
    if days < 1:
        raise ValueError(f"--days must be at least 1 (got {days})")
    generated = pd.Timestamp(now or datetime.now(UTC))
    generated = generated.tz_localize("UTC") if generated.tzinfo is None else generated.tz_convert("UTC")
    since = generated - pd.Timedelta(days=days)
    padded = [pad_user(u) for u in users]
    data = read_period(store, padded, since)
    numbers = charts.cycle_numbers(data.runs)
    buckets = charts.user_buckets(numbers, since, days)
    parts = {"runs": _split(data.runs), "conflicts": _split(data.conflicts),
             "quarantine": _split(data.quarantine)}
    _EMPTY.update(runs=data.runs.iloc[0:0], conflicts=data.conflicts.iloc[0:0],
                  quarantine=data.quarantine.iloc[0:0])
    entries = [_user_entry(p, parts, data.last_ok.get(p), buckets=buckets, people=people or {},
                           runs_shown=runs) for p in padded]
    entries = worst_first(entries)
    levels = [e["health"]["level"] for e in entries]
    return {
        "generated_at": generated.isoformat(timespec="seconds"),
        "since": since.isoformat(timespec="seconds"),
        "days": days,
        "bucket_hours": charts.bucket_hours(days),
        "gx_docs": None,  # the fleet's own Data Docs site, when one is beside the report
        "fleet": {"users": len(entries), "bad": levels.count("bad"), "warn": levels.count("warn"),
                  "ok": levels.count("ok"), "days": charts.fleet_days(numbers, since, days)},
        "users": entries,
    }
