"""A user's health at a glance: the facts of the first table and the colour they give.

An admin with two hundred users reads only the top of the page, so the rows are sorted
worst first and the colour says which kind of attention a user needs:

- ``bad`` (red): the newest cycles failed or were stopped by the mass-change guard (R16),
  or the user has never had a successful cycle: nothing syncs until someone acts.
- ``warn`` (amber): records are quarantined as of the last cycle (R19): the rest syncs,
  those records wait for a fix in the CRM or in Outlook.
- ``ok`` (green): the last cycle succeeded and holds nothing back. Conflicts (R9) alone
  do not colour a user: the policy resolved them; they are listed for review.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

LEVELS = ("bad", "warn", "ok")
_BREAKS_STREAK = frozenset({"ok"})
_IGNORED = frozenset({"running", "locked", "dry-run"})  # say nothing about the sides' health


def streak(statuses: Sequence[str]) -> tuple[int, int]:
    """Failed and guard-stopped cycles since the newest ``ok`` one (newest first in).

    Running, locked and dry-run cycles neither break nor extend the streak: they write
    nothing, so they prove nothing about whether the user's sync works.
    """
    failed = guard = 0
    for status in statuses:
        if status in _BREAKS_STREAK:
            break
        if status in _IGNORED:
            continue
        if status == "guard-stopped":
            guard += 1
        else:
            failed += 1
    return failed, guard


def _when(ts: pd.Timestamp | None) -> str:
    return "never" if ts is None or pd.isna(ts) else ts.strftime("%Y-%m-%d %H:%M UTC")


def health(
    statuses: Sequence[str], *, last_ok: pd.Timestamp | None, open_quarantine: int,
    conflicts: int, cycles: int, last_message: str | None,
) -> dict[str, Any]:
    """The health row of one user (newest status first); ``reasons`` say why, in words."""
    failed, guard = streak(statuses)
    reasons: list[str] = []
    level = "ok"
    if failed:
        level = "bad"
        reasons.append(f"{failed} failed cycle(s) in a row; last success {_when(last_ok)}")
    if guard:
        level = "bad"
        reasons.append(f"stopped by the mass-change guard (R16) {guard} time(s) in a row: "
                       "check the folder and the group, then sync with --force if intended")
    if last_ok is None and not (failed or guard):
        level = "bad"
        reasons.append("no successful cycle yet" if cycles else "no cycle has run for this user yet")
    if (failed or guard) and last_message:
        reasons.append(last_message)
    if open_quarantine:
        level = "warn" if level == "ok" else level
        reasons.append(f"{open_quarantine} record(s) quarantined (R19): fix them and they sync")
    return {
        "level": level,
        "reasons": reasons,
        "last_success": None if last_ok is None else last_ok.isoformat(),
        "failures_in_a_row": failed,
        "guard_stops_in_a_row": guard,
        "open_quarantine": int(open_quarantine),
        "conflicts": int(conflicts),
        "cycles": int(cycles),
    }


def worst_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Users sorted red, amber, green; within a colour the longest streak, then the most
    quarantined, then the most conflicts first; ties by name."""
    def key(entry: dict[str, Any]) -> tuple[Any, ...]:
        h = entry["health"]
        return (LEVELS.index(h["level"]), -(h["failures_in_a_row"] + h["guard_stops_in_a_row"]),
                -h["open_quarantine"], -h["conflicts"], (entry.get("name") or entry["user"]).lower())
    return sorted(entries, key=key)
