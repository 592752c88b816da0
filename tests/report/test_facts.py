"""The report's facts (report.json) of a scripted week: the period, health, worst first."""

from __future__ import annotations

import json
from pathlib import Path

from contactsync.report import collect, write_report
from contactsync.report.health import streak
from contactsync.state import StateStore

from .week import HOSTILE, NOW, PEOPLE, Cycle, record, scripted_week

LEE, SAM, KIM, GUS, QUINN = (u.strip() for u in PEOPLE)


def _by_user(data: dict) -> dict[str, dict]:
    return {u["user"]: u for u in data["users"]}


def test_the_period_keeps_a_conflict_of_three_days_ago_after_quiet_cycles(store: StateStore, people) -> None:
    runs = scripted_week(store)
    data = collect(store, list(PEOPLE), people=people, now=NOW)
    lee = _by_user(data)[LEE]
    assert lee["trend"][0]["conflicts"] == 0  # the last cycle was quiet ...
    conflicts = lee["conflicts"]  # ... and the period still holds the conflict, values and winner (R9)
    assert {(c["crm_id"], c["field"], c["winner"]) for c in conflicts} == {
        ("CLEEP0000042", "last_name", "outlook"), ("CLEEP0000043", "mobile_phone", "outlook")}
    first = next(c for c in conflicts if c["crm_id"] == "CLEEP0000042")
    assert first["crm_value"] == HOSTILE and first["outlook_value"] == "Brien" and first["run_id"] == runs["conflict_run"]
    assert first["started_at"].startswith("2026-11-27")
    assert first["explain"] == f"contact-sync explain --crm-id CLEEP0000042 --user {LEE}"
    assert lee["health"]["conflicts"] == 2
    # Two days back, the conflict is out of the period.
    short = _by_user(collect(store, list(PEOPLE), days=2, people=people, now=NOW))[LEE]
    assert short["conflicts"] == [] and short["health"]["conflicts"] == 0


def test_health_rows_name_each_user_and_sort_worst_first(store: StateStore, people) -> None:
    scripted_week(store)
    data = collect(store, list(PEOPLE), people=people, now=NOW)
    assert [u["user"] for u in data["users"][:3]] == [KIM, GUS, QUINN]  # 10 failures > 2 guard stops
    users = _by_user(data)
    assert users[SAM]["name"] == HOSTILE and users[LEE]["mailbox"] == "lee@example.com"
    kim, gus, quinn, lee = users[KIM]["health"], users[GUS]["health"], users[QUINN]["health"], users[LEE]["health"]
    assert kim["level"] == "bad" and kim["failures_in_a_row"] == 10 and kim["guard_stops_in_a_row"] == 0
    assert kim["last_success"].startswith("2026-11-29T14:07")
    assert "503 Service Unavailable" in "; ".join(kim["reasons"])
    assert gus["level"] == "bad" and gus["guard_stops_in_a_row"] == 2 and gus["failures_in_a_row"] == 0
    assert quinn["level"] == "warn" and quinn["open_quarantine"] == 1
    assert lee["level"] == "ok" and lee["reasons"] == []
    assert data["fleet"]["bad"] == 2 and data["fleet"]["warn"] == 1 and data["fleet"]["ok"] == 2


def test_quarantine_as_of_the_last_cycle_and_fixed_since(store: StateStore, people) -> None:
    scripted_week(store)
    quinn = _by_user(collect(store, list(PEOPLE), people=people, now=NOW))[QUINN]
    assert [(q["record_id"], q["reason"]) for q in quinn["quarantine"]] == [
        ("CQUIN0000BAD", "invalid email address: fix it in the CRM")]
    assert [q["record_id"] for q in quinn["fixed"]] == ["CQUIN0000FIX"]
    assert quinn["quarantine"][0]["rule"] == "R19"


def test_guard_stops_say_what_the_cycle_would_have_done(store: StateStore, people) -> None:
    scripted_week(store)
    gus = _by_user(collect(store, list(PEOPLE), people=people, now=NOW))[GUS]
    assert len(gus["guard_stops"]) == 2
    stop = gus["guard_stops"][0]
    assert stop["would"] == [{"side": "outlook", "op": "delete", "rule": "R13", "count": 180}]
    assert "R16" in stop["message"]


def test_charts_bucket_the_period_and_the_fleet_per_day(store: StateStore, people) -> None:
    scripted_week(store)
    data = collect(store, list(PEOPLE), people=people, now=NOW)
    kim = _by_user(data)[KIM]
    assert data["bucket_hours"] == 3 and len(kim["chart"]) == 56
    assert sum(b["failed"] for b in kim["chart"]) == 10
    assert sum(b["cycles"] for b in kim["chart"]) == 84
    lee = _by_user(data)[LEE]
    assert sum(b["conflicts"] for b in lee["chart"]) == 2
    fleet = data["fleet"]["days"]
    assert [d["day"] for d in fleet][-1] == "2026-11-30" and len(fleet) == 8
    assert sum(d["cycles"] for d in fleet) == 5 * 84 + 1
    assert sum(d["failed"] for d in fleet) == 10 and sum(d["guard_stopped"] for d in fleet) == 2


def test_one_users_section_holds_only_that_users_rows(store: StateStore, people, tmp_path: Path) -> None:
    """R1: Sam's entry shows nothing of Lee's conflicts or Quinn's quarantine."""
    scripted_week(store)
    paths = write_report(store, [SAM], tmp_path, people=people, now=NOW)
    text = paths["json"].read_text(encoding="utf-8")
    assert "CLEEP0000042" not in text and "CQUIN0000BAD" not in text
    assert json.loads(text)["users"][0]["user"] == SAM


def test_streak_counts_failures_and_guard_stops_since_the_last_ok() -> None:
    assert streak(["failed", "locked", "guard-stopped", "failed", "ok", "failed"]) == (2, 1)
    assert streak(["dry-run", "ok"]) == (0, 0)
    assert streak([]) == (0, 0)


def test_a_user_without_cycles_needs_attention(store: StateStore, people) -> None:
    record(store, "ULEEP0000001", Cycle(ago=NOW - NOW.replace(hour=11)), NOW)
    data = collect(store, ["ULEEP0000001", "UNEW00000009"], people=people, now=NOW)
    new = _by_user(data)["UNEW00000009"]
    assert new["health"]["level"] == "bad" and new["last_run"] is None
    assert new["health"]["reasons"] == ["no cycle has run for this user yet"]
