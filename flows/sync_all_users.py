"""The fan-out: many users' cycles at once, for the CLI, the deployments and backfills alike.

Up to ``sync.parallel_users`` users run at the same time (spec/INTERFACE.md "Prefect"), and
a slow or failing user never holds up the others: the next user starts as soon as any one
finishes. Each user's cycle is their ``sync_contacts`` flow run, a subflow of this run:
Prefect gives every subflow call a task run in this run's graph, which the server keeps in
the subflow's state, so a user whose cycle failed (or was stopped by the guard, R16) has
that task run and their flow run ``Failed``, and so has the fan-out run, with the users in
its message.

The cycles run in this process's threads (engines and connection pools are shared,
contactsync.cycle.sides), calling the subflow directly: no task of our own around it,
because each task run costs the Prefect API a round of events and writes per user (issue
16: a quiet user's cost is Prefect's bookkeeping). On a Dask cluster (``[orchestration]
dask_address``, prefect-dask) a user's cycles travel as the ``user-cycles`` task, the only
way to run them on a worker.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.futures import as_completed as prefect_completed
from prefect.states import Completed, Failed, State

from contactsync.config import Settings, load_settings
from contactsync.cycle.outcome import CycleOutcome
from contactsync.cycle.run import CycleOptions
from contactsync.cycle.users import syncing_users
from contactsync.errors import ContactSyncError
from contactsync.model import pad_user
from flows.sync_contacts import FAILING, final_state, outcomes_in, sync_contacts

#: The pauses before a user's cycles are run again after the Prefect API failed them.
API_RETRY_DELAYS_S = (5, 30)


def api_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the Prefect API failing (an overloaded local server answers 503 for
    a while, a connection drops), not the cycle's own failure."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    if isinstance(exc, PrefectHTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


def prefect_api_failed(task: Any, task_run: Any, state: State[Any]) -> bool:
    """Retry a user's cycles when the Prefect API itself failed them, never for the cycle's
    own failure: a cycle run again is safe (R17, R18), one lost to an API hiccup is a user
    not synced."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001  (classified, not handled)
        return api_failure(exc)
    return False


def run_user_cycles(user: str, config_path: str | None, cycles: list[dict[str, Any]],
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


@task(name="user-cycles", task_run_name="cycles-{user}", cache_policy=NO_CACHE, persist_result=False,
      retries=len(API_RETRY_DELAYS_S), retry_delay_seconds=list(API_RETRY_DELAYS_S),
      retry_condition_fn=prefect_api_failed)
def user_cycles(user: str, config_path: str | None, cycles: list[dict[str, Any]],
                mailbox: str | None = None) -> State[Any]:
    """A user's cycles as a task: how they reach a Dask worker."""
    return run_user_cycles(user, config_path, cycles, mailbox)


def in_thread(user: str, config_path: str | None, cycles: list[dict[str, Any]],
              mailbox: str | None = None) -> State[Any]:
    """A user's cycles in a thread of this process, retried as the task retries them when
    the Prefect API failed them; any other error is that user's Failed state, never the
    fan-out's (a failing user never holds up the others)."""
    for delay in (*API_RETRY_DELAYS_S, None):
        try:
            return run_user_cycles(user, config_path, cycles, mailbox)
        except Exception as exc:  # noqa: BLE001  (becomes the user's Failed state)
            if delay is None or not api_failure(exc):
                return Failed(message=f"{type(exc).__name__}: {exc}"[:500], data=exc)
            time.sleep(delay)
    raise AssertionError("unreachable")


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
        finished = next(prefect_completed(list(running)))
        finished.wait()
        user = running.pop(finished)
        states[user] = finished.state
        if on_done is not None:
            on_done(user, finished.state)
    return states


def threaded(
    run: Callable[[str], State[Any]], users: Sequence[str], limit: int,
    on_done: Callable[[str, State[Any]], None] | None = None,
) -> dict[str, State[Any]]:
    """``run(user)`` for every user in ``limit`` threads of this process; the final states.

    Each thread runs in a copy of this thread's context, taken here: that is how its
    subflow runs find this flow run as their parent and keep the command's Prefect settings
    (its API, heartbeats off). ``on_done`` as for :func:`bounded`.
    """
    states: dict[str, State[Any]] = {}
    with ThreadPoolExecutor(max_workers=max(1, limit), thread_name_prefix="user-cycles") as pool:
        futures: dict[Future[State[Any]], str] = {
            pool.submit(contextvars.copy_context().run, run, user): user for user in users
        }
        for finished in as_completed(futures):
            user = futures[finished]
            states[user] = finished.result()
            if on_done is not None:
                on_done(user, states[user])
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
    limit = settings.sync.parallel_users

    def done(user: str, state: State[Any]) -> None:
        progress.user_finished(outcomes_in(state, user, cycles[0]))

    address = settings.orchestration.dask_address.strip()
    if address:
        from prefect_dask import DaskTaskRunner

        with DaskTaskRunner(address=address) as runner:
            states = bounded(
                lambda u: runner.submit(user_cycles, {"user": u, "config_path": config_path, "cycles": params,
                                                      "mailbox": mailboxes.get(pad_user(u))}),
                users, limit, on_done=done,
            )
    else:
        states = threaded(lambda u: in_thread(u, config_path, params, mailboxes.get(pad_user(u))),
                          users, limit, on_done=done)
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
