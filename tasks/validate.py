"""Great Expectations validation of what a cycle is about to write (expectations/ suites).

Runs the suites on the records that have actions and on the plan, in one batch: summarised
results, the user's Data Docs built once at the end, from that user's results only (R1).
Which records are quarantined is decided by ``contactsync.quality`` (the same checks,
vectorised); the GX run adds the declarative record and the Data Docs for the report.
Skipped when the plan is empty: a quiet cycle must cost next to nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from contactsync.plan.schema import PlanInputs, PlanResult


@task(name="validate-gx", cache_policy=NO_CACHE, persist_result=False)
def validate(inputs: PlanInputs, result: PlanResult, data_docs_dir: str | None) -> dict[str, Any]:
    """``{"ran", "suites": {name: {"success", "failures"}}}``; failures = failing values."""
    if result.actions.empty:
        return {"ran": False}
    from expectations.runner import validate_many

    acts = result.actions
    out = inputs.outlook[inputs.outlook["outlook_id"].isin(set(acts["outlook_id"].dropna()))]
    crm = inputs.crm[inputs.crm["crm_id"].isin(set(acts["crm_id"].dropna()))]
    jobs = [
        (frame, name, id_col)
        for name, frame, id_col in (
            ("outlook_contacts", out, "outlook_id"),
            ("crm_contacts", crm, "crm_id"),
            ("plan", acts, "action_id"),
        )
        if not frame.empty
    ]
    outcomes = validate_many(jobs, data_docs_dir=Path(data_docs_dir) if data_docs_dir else None)
    return {
        "ran": True,
        "suites": {
            name: {"success": bool(o.success), "failures": int(o.failure_count)}
            for (_, name, _), o in zip(jobs, outcomes, strict=True)
        },
    }
