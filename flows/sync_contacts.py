"""The sync cycle for one user, as a Prefect flow: a thin shell over contactsync.cycle.run.

The sequence is ``contactsync.cycle.run.run_cycle``'s; this flow supplies the steps as
Prefect tasks (``tasks/cycle.py``), the GX validation (``tasks/validate.py``), the
artifacts (``flows/artifacts.py``) and the run logger, and turns the cycle's outcome into
the flow run's final state (spec/INTERFACE.md "Prefect"): ``failed`` and ``guard-stopped``
end ``Failed`` with the reason as the state's message, so Prefect automations and
notifications see them; ``ok``, ``dry-run`` and ``locked`` end ``Completed``.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from contactsync.config import UserSettings, load_settings
from contactsync.cycle.outcome import CycleOutcome
from contactsync.cycle.run import PLAIN_STEPS, CycleOptions, CycleSteps, data_docs_dir, run_cycle
from contactsync.cycle.users import resolve_user
from contactsync.model import pad_user
from flows.artifacts import publish
from tasks.cycle import task_steps
from tasks.validate import validate

__all__ = ["FAILING", "CycleFailed", "data_docs_dir", "final_state", "flow_steps", "outcomes_in", "sync_contacts"]

#: The statuses whose flow run ends Failed (spec/INTERFACE.md "Prefect").
FAILING = frozenset({"failed", "guard-stopped"})


class CycleFailed(Exception):
    """The data of a run that ended Failed because a cycle did: calling the flow plainly
    raises it (with the reason), and it carries every outcome of the run for the caller
    that asked for the state (``return_state=True``)."""

    def __init__(self, message: str, outcomes: list[dict[str, Any]]) -> None:
        super().__init__(message, outcomes)
        self.message, self.outcomes = message, outcomes

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:  # Prefect logs a failed state with its data: keep it one line
        return f"CycleFailed({self.message!r}, {len(self.outcomes)} outcome(s))"


@cache
def flow_steps() -> CycleSteps:
    """The cycle's steps as this flow runs them: tasks, GX, artifacts, Prefect's logger.

    Built once per process: the tasks are the same for every cycle (Prefect's tasks are
    made to be reused), and building ten of them per cycle showed in a quiet user's cost."""
    return task_steps(replace(PLAIN_STEPS, validate=validate, publish=publish, logger=get_run_logger))


def final_state(outcomes: list[CycleOutcome], failed_message: str, *, single: bool = False) -> State[Any]:
    """Failed (with ``failed_message``) when any outcome failed or was guard-stopped, else
    Completed; either way the outcomes go with the state (``single``: a completed run's
    data is the one outcome's dict, what a plain call of ``sync_contacts`` returns)."""
    data = [o.to_dict() for o in outcomes]
    if any(o.status in FAILING for o in outcomes):
        return Failed(message=failed_message, data=CycleFailed(failed_message, data))
    return Completed(message="; ".join(f"{o.user.strip()}: {o.message or o.status}" for o in outcomes)[:500],
                     data=data[0] if single else data)


def outcomes_in(state: State[Any], user: str, options: CycleOptions) -> list[CycleOutcome]:
    """The outcomes a run ended with, even when it ended Failed.

    A run that crashed or was cancelled before the cycle could say anything (the process
    or the Dask worker died) is a failed cycle of that user, with the state's message.
    """
    data = state.result(raise_on_failure=False)
    if isinstance(data, CycleFailed):
        data = data.outcomes
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list):
        return [CycleOutcome.from_dict(d) for d in data]
    message = f"the cycle's Prefect run ended {state.type.value}: {state.message or data}"
    return [CycleOutcome(user=pad_user(user), status="failed", dry_run=options.dry_run, message=message,
                         errors=[message])]


@flow(name="sync_contacts", flow_run_name="sync-{user}", log_prints=False)
def sync_contacts(
    user: str,
    dry_run: bool = False,
    force: bool = False,
    policy: str | None = None,
    direction: str | None = None,
    config_path: str | None = None,
    full: bool = False,
    relink: bool = False,
    repair: bool = False,
    since: str | None = None,
    mailbox: str | None = None,
) -> State[Any]:
    """One sync cycle for one CRM user (spec/INTERFACE.md ``contact-sync sync --user``).

    Called as a function it returns the outcome's dict when the run completed and raises
    CycleFailed when it failed; with ``return_state=True`` it returns the final state.
    ``mailbox``: the user's mailbox as the fan-out already resolved it (users from the CRM:
    the roster is read once per fan-out, not once per user); else it is resolved here.
    """
    options = CycleOptions(dry_run=dry_run, force=force, policy=policy, direction=direction,
                           full=full, relink=relink, repair=repair, since=since)
    settings = load_settings(config_path)
    who = UserSettings(crm_user=pad_user(user), mailbox=mailbox) if mailbox else resolve_user(settings, user)
    outcome = run_cycle(settings, who, options, flow_steps())
    # The reason is the message, as a Prefect notification on Failed runs shows it.
    return final_state([outcome], outcome.message or "; ".join(outcome.errors[:3]) or outcome.status, single=True)
