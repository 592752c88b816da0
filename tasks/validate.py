"""Great Expectations validation of what a cycle is about to write (expectations/ suites).

Runs the suites on the records that have actions and on the plan. Which records are
quarantined is decided by ``contactsync.quality`` (the same checks, vectorised); the GX run
adds the declarative record kept in ``expectations/`` and the Data Docs for the report.
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
    if result.actions.empty:
        return {"ran": False}
    from expectations.runner import validate as run_suite

    acts = result.actions
    out = inputs.outlook[inputs.outlook["outlook_id"].isin(set(acts["outlook_id"].dropna()))]
    crm = inputs.crm[inputs.crm["crm_id"].isin(set(acts["crm_id"].dropna()))]
    docs = Path(data_docs_dir) if data_docs_dir else None
    summary: dict[str, Any] = {"ran": True, "suites": {}}
    for name, frame, id_col in (
        ("outlook_contacts", out, "outlook_id"),
        ("crm_contacts", crm, "crm_id"),
        ("plan", acts, "action_id"),
    ):
        if frame.empty:
            continue
        outcome = run_suite(frame, name, id_column=id_col, data_docs_dir=docs)
        summary["suites"][name] = {
            "success": bool(outcome.success),
            "failures": int(len(outcome.failures)),
        }
    return summary
