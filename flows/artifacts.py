"""Prefect artifacts of a cycle: counts per action and rule, conflicts, quarantined records."""

from __future__ import annotations

import re

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from contactsync.cycle.outcome import CycleOutcome


def _key(text: str) -> str:
    # Artifact keys: lower-case letters, digits and dashes only.
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def quiet(outcome: CycleOutcome) -> bool:
    """An ``ok`` cycle that wrote, planned, conflicted and quarantined nothing."""
    return (outcome.status == "ok" and not outcome.conflicts and not outcome.quarantined
            and not outcome.actions and not outcome.errors
            and not any(n for ops in outcome.counts.values() for n in ops.values()))


def publish(outcome: CycleOutcome) -> None:
    """Attach the cycle's tables to its flow run (visible in the Prefect UI).

    A quiet cycle attaches none: its flow run's state message already says it (e.g.
    "nothing changed since the last cycle (R17)"), and a fleet's 15-minute schedule would
    otherwise write an artifact version per user and cycle saying nothing happened
    (issue 15). Every cycle that wrote, conflicted, quarantined or failed attaches them.
    """
    if quiet(outcome):
        return
    user = outcome.user.strip()
    rows = [
        {"side": side, "operation": op, "count": n}
        for side, ops in outcome.counts.items()
        for op, n in ops.items()
        if n
    ]
    create_markdown_artifact(
        key=_key(f"sync-{user}-summary"),
        markdown=(
            f"### contact-sync: {user}\n\nstatus **{outcome.status}**"
            f"{' (dry run)' if outcome.dry_run else ''}, run `{outcome.run_id}`\n\n"
            f"{outcome.conflicts} conflict(s), {outcome.quarantined} quarantined record(s)\n\n"
            f"{outcome.message}"
        ),
        description="The cycle's outcome",
    )
    if rows:
        create_table_artifact(key=_key(f"sync-{user}-counts"), table=rows, description="Writes per side and operation")
    if outcome.actions:
        by_rule: dict[tuple[str, str, str], int] = {}
        for a in outcome.actions:
            k = (a.get("side") or "", a.get("op") or "", a.get("rule") or "")
            by_rule[k] = by_rule.get(k, 0) + 1
        create_table_artifact(
            key=_key(f"sync-{user}-rules"),
            table=[{"side": s, "operation": o, "rule": r, "count": n} for (s, o, r), n in sorted(by_rule.items())],
            description="Planned actions per rule",
        )
    if outcome.conflict_rows:
        create_table_artifact(key=_key(f"sync-{user}-conflicts"), table=outcome.conflict_rows, description="Conflicts (R9): both values and the winner")
    if outcome.problems:
        create_table_artifact(key=_key(f"sync-{user}-quarantine"), table=outcome.problems, description="Quarantined records (R19)")
