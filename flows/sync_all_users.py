"""Fan the sync cycle out over every configured user (the scheduled deployment).

Users run in parallel on Dask through prefect-dask: a local in-process cluster by default
(threads share the connection pools and the Prefect API), or an existing cluster when
CONTACT_SYNC_DASK_ADDRESS names its scheduler. Each user's cycle is independent: one user's
failure is reported and the others go on; the flow run fails at the end if any did.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect_dask import DaskTaskRunner

from contactsync.config import load_settings
from contactsync.cycle.outcome import CycleOutcome
from contactsync.cycle.run import CycleOptions
from flows.sync_contacts import cycle_in_flow


def _task_runner() -> DaskTaskRunner:
    address = os.environ.get("CONTACT_SYNC_DASK_ADDRESS")
    if address:
        return DaskTaskRunner(address=address)
    workers = int(os.environ.get("CONTACT_SYNC_DASK_THREADS", "4"))
    return DaskTaskRunner(
        cluster_kwargs={"processes": False, "n_workers": 1, "threads_per_worker": workers, "dashboard_address": None}
    )


@task(name="user-cycle", cache_policy=NO_CACHE, persist_result=False)
def user_cycle(
    user: str, config_path: str | None, dry_run: bool, force: bool,
    policy: str | None, direction: str | None, full: bool = False, relink: bool = False,
) -> dict[str, Any]:
    options = CycleOptions(dry_run=dry_run, force=force, policy=policy, direction=direction, full=full, relink=relink)
    return cycle_in_flow(config_path, user, options).to_dict()


@flow(name="sync_all_users", task_runner=_task_runner())
def sync_all_users(
    users: list[str] | None = None,
    dry_run: bool = False,
    force: bool = False,
    policy: str | None = None,
    direction: str | None = None,
    config_path: str | None = None,
    full: bool = False,
    relink: bool = False,
    raise_on_failure: bool = True,
) -> list[dict[str, Any]]:
    """One cycle per user (all configured users by default), in parallel."""
    settings = load_settings(config_path)
    ids = users or [u.crm_user for u in settings.users]
    futures = [
        user_cycle.submit(u, config_path, dry_run, force, policy, direction, full, relink) for u in ids
    ]
    results = [f.result() for f in futures]
    failed = [r["user"].strip() for r in results if CycleOutcome.from_dict(r).exit_code == 1]
    if failed and raise_on_failure:
        raise RuntimeError(f"sync failed for user(s) {', '.join(failed)}; see each user's run report")
    return results
