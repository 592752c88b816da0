"""R16: the mass-change guard's verdict on a plan.

The verdict is returned beside the actions, never instead of them: the pipeline decides
(a forced run goes ahead, a dry run reports what the guard would do).
"""

from __future__ import annotations

from contactsync.plan.schema import GuardVerdict, PlanSettings


def r16_guard(
    synced: int, outlook_removals: int, crm_removals: int, settings: PlanSettings
) -> GuardVerdict:
    """Stop when a side would lose more than the share AND more than the minimum.

    ``synced`` = active links before the cycle; Outlook removals = Outlook deletes;
    CRM removals = unlinks of active pairs (each side judged on its own).
    """
    limit = settings.mass_change_share * synced
    problems = []
    for side, removals in (("Outlook", outlook_removals), ("CRM", crm_removals)):
        if removals > limit and removals > settings.mass_change_min:
            share = removals / synced if synced else 1.0
            problems.append(
                f"{side}: {removals} of {synced} synced contacts would be removed "
                f"({share:.0%} > {settings.mass_change_share:.0%} and > "
                f"{settings.mass_change_min})"
            )
    if problems:
        reason = "R16 mass-change guard: " + "; ".join(problems) + "; run with --force to go ahead"
    else:
        reason = (
            f"R16: within limits ({outlook_removals} Outlook and {crm_removals} CRM removals "
            f"of {synced} synced)"
        )
    return GuardVerdict(
        stopped=bool(problems),
        synced=synced,
        outlook_removals=outlook_removals,
        crm_removals=crm_removals,
        reason=reason,
    )
