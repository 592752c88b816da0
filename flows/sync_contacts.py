"""The sync cycle for one user, as a Prefect flow: a thin shell over contactsync.cycle.run.

The sequence is ``contactsync.cycle.run.run_cycle``'s; this flow supplies the steps as
Prefect tasks (``tasks/cycle.py``), the GX validation (``tasks/validate.py``), the
artifacts (``flows/artifacts.py``) and the run logger.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import flow, get_run_logger

from contactsync.config import load_settings
from contactsync.cycle.outcome import CycleOutcome
from contactsync.cycle.run import PLAIN_STEPS, CycleOptions, CycleSteps, data_docs_dir, run_cycle
from flows.artifacts import publish
from tasks.cycle import task_steps
from tasks.validate import validate

__all__ = ["data_docs_dir", "flow_steps", "sync_contacts"]


def flow_steps() -> CycleSteps:
    """The cycle's steps as this flow runs them: tasks, GX, artifacts, Prefect's logger."""
    return task_steps(replace(PLAIN_STEPS, validate=validate, publish=publish, logger=get_run_logger))


def cycle_in_flow(config_path: str | None, user: str, options: CycleOptions) -> CycleOutcome:
    """One user's cycle with this flow's steps (also the fan-out's and the backfill's)."""
    settings = load_settings(config_path)
    return run_cycle(settings, settings.user(user), options, flow_steps())


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
) -> dict[str, Any]:
    """One sync cycle for one CRM user (spec/INTERFACE.md ``contact-sync sync --user``)."""
    options = CycleOptions(dry_run=dry_run, force=force, policy=policy, direction=direction, full=full, relink=relink)
    return cycle_in_flow(config_path, user, options).to_dict()
