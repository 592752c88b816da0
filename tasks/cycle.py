"""Prefect tasks around the steps of a cycle (contactsync.cycle.steps / .load).

Thin on purpose: the logic lives in ``contactsync``. What the tasks add is the
orchestration: retries of the I/O steps on transient errors only (throttling, 5xx, lost
connections; STYLE.md's retriable class), none on planning, logging, and no result caching
(frames are large and a cycle must always read fresh data).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from contactsync.cycle import load as load_step
from contactsync.cycle import steps
from contactsync.cycle.sides import Sides
from contactsync.errors import TransientError
from contactsync.plan import plan_cycle
from contactsync.plan.schema import PlanInputs, PlanResult, PlanSettings


def _only_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed I/O task only when its error is worth retrying."""
    try:
        state.result()
    except TransientError:
        return True
    except Exception:
        return False
    return False


io_task = partial(
    task,
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_only_transient,
)
pure_task = partial(task, cache_policy=NO_CACHE, persist_result=False)


@io_task(name="resume-journal")
def resume(sides: Sides) -> int:
    return load_step.resume(sides)


@io_task(name="extract-crm")
def extract_crm(sides: Sides, create_group: bool) -> steps.CrmSide:
    return steps.extract_crm(sides, create_group=create_group)


@io_task(name="extract-outlook")
def extract_outlook(
    sides: Sides, create_folder: bool, full: bool = False, settled_if_quiet: bool = False
) -> steps.OutlookSide:
    return steps.extract_outlook(sides, create_folder=create_folder, full=full, settled_if_quiet=settled_if_quiet)


@io_task(name="crm-lookups")
def gather_inputs(
    sides: Sides, crm: steps.CrmSide, outlook: steps.OutlookSide, relink: bool = False,
    repair: bool = False, since: pd.Timestamp | None = None,
) -> PlanInputs:
    return steps.gather_inputs(sides, crm, outlook, relink=relink, repair=repair, since=since)


@pure_task(name="plan")
def plan(inputs: PlanInputs, settings: PlanSettings) -> PlanResult:
    return plan_cycle(inputs, settings)


@pure_task(name="quarantine")
def quarantine(result: PlanResult, inputs: PlanInputs) -> tuple[PlanResult, pd.DataFrame]:
    return steps.quarantine(result, inputs)


# Loads are not retried as a whole: each write is retried inside the clients, and a
# half-done load is finished by the next cycle from the journal (R18), never re-sent blind.
@pure_task(name="journal-plan")
def prepare(sides: Sides, result: PlanResult, run_id: str) -> load_step.Prepared:
    return load_step.prepare(sides, result, run_id=run_id)


@pure_task(name="load-crm")
def load_crm(prepared: load_step.Prepared, group_id: str) -> pd.DataFrame:
    return load_step.load_crm(prepared, group_id=group_id)


@pure_task(name="load-outlook")
def load_outlook(
    prepared: load_step.Prepared, crm_results: pd.DataFrame, folder_id: str | None, outlook_frame: pd.DataFrame
) -> pd.DataFrame:
    from contactsync import progress

    user = prepared.sides.user_id.strip()
    return load_step.load_outlook(
        prepared, crm_results, folder_id=folder_id, outlook_frame=outlook_frame,
        progress=lambda done, total: progress.report(user, done, total),
    )


@pure_task(name="record-state")
def record_state(prepared: load_step.Prepared, crm_results: pd.DataFrame, outlook_results: pd.DataFrame) -> load_step.LoadOutcome:
    return load_step.finish(prepared, crm_results, outlook_results)
