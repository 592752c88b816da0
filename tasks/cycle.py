"""The steps of a cycle (contactsync.cycle.run.CycleSteps) as Prefect tasks.

Thin on purpose: the sequence lives in ``contactsync.cycle.run``, the logic in the steps.
What the tasks add is the orchestration: a task run per step in the Prefect UI, retries of
the reading steps on transient errors only (throttling, 5xx, lost connections; STYLE.md's
retriable class), none on planning, and no result caching (frames are large and a cycle
must always read fresh data).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from contactsync.cycle.run import PLAIN_STEPS, CycleSteps
from contactsync.errors import TransientError


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

#: Each step's task name and whether it is retried. Loads are not retried as a whole:
#: each write is retried inside the clients, and a half-done load is finished by the next
#: cycle from the journal (R18), never re-sent blind.
_TASKS: dict[str, tuple[str, Callable[..., Any]]] = {
    "resume": ("resume-journal", io_task),
    "extract_crm": ("extract-crm", io_task),
    "extract_outlook": ("extract-outlook", io_task),
    "gather_inputs": ("crm-lookups", io_task),
    "plan": ("plan", pure_task),
    "quarantine": ("quarantine", pure_task),
    "prepare": ("journal-plan", pure_task),
    "load_crm": ("load-crm", pure_task),
    "load_outlook": ("load-outlook", pure_task),
    "record_state": ("record-state", pure_task),
}


def _as_task(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
    if name not in _TASKS:  # the validation step comes as its own task (tasks/validate.py)
        return step
    task_name, kind = _TASKS[name]
    wrapped = kind(name=task_name)(step)
    return _only_with_a_journal(wrapped) if name == "resume" else wrapped


def _only_with_a_journal(resume: Callable[..., int]) -> Callable[..., int]:
    """The resume task (R18) runs only when the user's journal holds entries: nearly every
    cycle has nothing to resume, and each task run costs the Prefect API a round of
    writes (issue 15: a quiet fleet cycle pays per task run). A journal that cannot be
    read here goes to the task, which retries transient errors as before."""
    def resume_if_journaled(sides: Any) -> int:
        try:
            if sides.store.journal(sides.user_id).empty:
                return 0
        except Exception:  # noqa: BLE001  (the task reads it again and reports the error)
            pass
        return resume(sides)
    return resume_if_journaled


def task_steps(base: CycleSteps = PLAIN_STEPS) -> CycleSteps:
    """``base``'s steps, each as its Prefect task (built per call: cheap, and nothing global)."""
    return base.wrapped(_as_task)
