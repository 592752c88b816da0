"""The fan-out: many users' cycles at once, for the CLI, the deployments and backfills alike.

Up to ``sync.parallel_users`` users run at the same time (spec/INTERFACE.md "Prefect"); a
user's cycle is a task run of this flow run holding that user's ``sync_contacts`` flow run,
and a slow or failing user never holds up the others: the next user starts as soon as any
one finishes. The cycles run in this process's threads (engines and connection pools are
shared, contactsync.cycle.sides), or on a Dask cluster when ``[orchestration]
dask_address`` names its scheduler (prefect-dask). A user whose cycle failed (or was
stopped by the guard, R16) has its task run and its flow run ``Failed``, and so has the
fan-out run, with the users in its message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.states import Completed, State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from contactsync.config import Settings, load_settings
from contactsync.cycle.outcome import CycleOutcome
from contactsync.cycle.run import CycleOptions
from contactsync.cycle.users import syncing_users
from contactsync.errors import ContactSyncError
from contactsync.model import pad_user
from flows.sync_contacts import FAILING, final_state, outcomes_in, sync_contacts


def prefect_api_failed(task: Any, task_run: Any, state: State[Any]) -> bool:
    """Retry a user's cycles when the Prefect API itself failed them (an overloaded local
    server answers 503 for a while), never for the cycle's own failure: a cycle run again
    is safe (R17, R18), one lost to an API hiccup is a user not synced."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        state.result()
    except PrefectHTTPStatusError as exc:
        return exc.response.status_code >= 500
    except httpx.TransportError:
        return True
    except Exception:
        return False
    return False


@task(name="user-cycles", task_run_name="cycles-{user}", cache_policy=NO_CACHE, persist_result=False,
      retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=prefect_api_failed)
def user_cycles(user: str, config_path: str | None, cycles: list[dict[str, Any]],
                mailbox: str | None = None) -> State[Any]:
    """One user's cycles in order (a backfill's repair, then a normal cycle), each its own
    flow run; stops at the first that does not end ``ok``. Ends Failed as the last did."""
    outcomes: list[CycleOutcome] = []
    for params in cycles:
        state = sync_contacts(user=user, config_path=config_path, **params, mailbox=mailbox, return_state=True)
        outcomes += outcomes_in(state, user, CycleOptions(**params))
        if outcomes[-1].status != "ok":
            break
    last = outcomes[-1]
    return final_state(outcomes, f"{user.strip()}: {last.status}: {last.message}")


def task_runner(settings: Settings) -> TaskRunner[Any]:
    """Threads of this process, or the configured Dask cluster."""
    address = settings.orchestration.dask_address.strip()
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    return ThreadPoolTaskRunner(max_workers=settings.sync.parallel_users)


def bounded(
    submit: Callable[[str], PrefectFuture[Any]], users: Sequence[str], limit: int,
    on_done: Callable[[str, State[Any]], None] | None = None,
) -> dict[str, State[Any]]:
    """Run ``submit(user)`` for every user with at most ``limit`` running; the final states.

    The limit is kept here, not by the runner, so that it holds on a Dask cluster too.
    ``on_done(user, state)`` is called (in this thread) as each user finishes.
    """
    queue, running, states = list(users), {}, {}
    while queue or running:
        while queue and len(running) < limit:
            user = queue.pop(0)
            running[submit(user)] = user
        finished = next(as_completed(list(running)))
        finished.wait()
        user = running.pop(finished)
        states[user] = finished.state
        if on_done is not None:
            on_done(user, finished.state)
    return states


def fan_out(
    settings: Settings, config_path: str | None, users: Sequence[str], cycles: Sequence[CycleOptions]
) -> list[CycleOutcome]:
    """Every user's ``cycles``, concurrently; the outcomes in the users' order.

    Each user's outcomes also go to the command's outcome hook as soon as that user is done
    (contactsync.progress: the CLI prints each user's line as it finishes).
    """
    from contactsync import progress

    params = [c.params() for c in cycles]
    # Each user's mailbox, resolved once here (users from the CRM: one roster read for the
    # whole fan-out instead of one per user); a user not found is resolved by its own
    # cycle, which fails with the configuration error that names them.
    try:
        mailboxes = {u.crm_user: u.mailbox for u in syncing_users(settings)}
    except ContactSyncError:  # the CRM unreachable: each cycle fails with that, as before
        mailboxes = {}
    with task_runner(settings) as runner:
        states = bounded(
            lambda u: runner.submit(user_cycles, {"user": u, "config_path": config_path, "cycles": params,
                                                  "mailbox": mailboxes.get(pad_user(u))}),
            users, settings.sync.parallel_users,
            on_done=lambda u, state: progress.user_finished(outcomes_in(state, u, cycles[0])),
        )
    outcomes: list[CycleOutcome] = []
    for user in users:
        outcomes += outcomes_in(states[user], user, cycles[0])
    return outcomes


def fan_out_state(outcomes: list[CycleOutcome], *, raise_on_failure: bool = True) -> State[Any]:
    """The fan-out run's final state: Failed when any user's run failed, naming them
    (spec/INTERFACE.md "Prefect"). ``raise_on_failure=False`` is the caller's explicit
    opt-out (a parent flow that handles the outcomes itself): the fan-out run completes
    with every outcome as its data, while each failed user's own task run and flow run
    stay Failed, so automations on Failed flow runs still see every failed cycle."""
    failed = sorted({o.user.strip() for o in outcomes if o.status in FAILING})
    message = f"sync failed for user(s) {', '.join(failed)}; see each user's flow run"
    if failed and not raise_on_failure:
        return Completed(message=message[:500], data=[o.to_dict() for o in outcomes])
    return final_state(outcomes, message)


def outcomes_of(state: State[Any]) -> list[CycleOutcome]:
    """The users' outcomes of a finished fan-out run (``return_state=True``), failed or not."""
    return outcomes_in(state, "", CycleOptions())


@flow(name="sync_all_users")
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
) -> State[Any]:
    """One cycle per user (every user who syncs, by default), ``sync.parallel_users`` at once.

    Ends Failed when any user failed; ``raise_on_failure=False`` completes it instead, with
    the outcomes as its data (see :func:`fan_out_state`).
    """
    settings = load_settings(config_path)
    ids = users or [u.crm_user for u in syncing_users(settings)]
    options = CycleOptions(dry_run=dry_run, force=force, policy=policy, direction=direction, full=full, relink=relink)
    return fan_out_state(fan_out(settings, config_path, ids, [options]), raise_on_failure=raise_on_failure)
