"""Matching and planning: pure pandas, the rules live here (DESIGN.md).

``plan_cycle(inputs, settings)`` is the one entry point; ``lookups`` says what the CRM
side must read for it. The contract (inputs, action/snapshot/conflict columns) is in
:mod:`contactsync.plan.schema`.
"""

from contactsync.plan.cycle import plan_cycle
from contactsync.plan.lookups import candidate_company_names, candidate_emails, candidate_lookups
from contactsync.plan.schema import (
    ACTION_COLUMNS,
    CONFLICT_COLUMNS,
    LINK_COLUMNS,
    SNAPSHOT_COLUMNS,
    GuardVerdict,
    PlanInputs,
    PlanResult,
    PlanSettings,
)

__all__ = [
    "ACTION_COLUMNS",
    "CONFLICT_COLUMNS",
    "LINK_COLUMNS",
    "SNAPSHOT_COLUMNS",
    "GuardVerdict",
    "PlanInputs",
    "PlanResult",
    "PlanSettings",
    "candidate_company_names",
    "candidate_emails",
    "candidate_lookups",
    "plan_cycle",
]
