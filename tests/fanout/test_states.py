"""Issue 16 item 2: the Prefect states tell the truth (spec/INTERFACE.md "Prefect").

Each test runs the real command (``contact-sync sync --json``) and then reads the runs
back from the Prefect API: a ``failed`` or ``guard-stopped`` cycle ends its flow run
``Failed`` with the reason as the message, and so do its task run in the fan-out and the
fan-out run itself; ``ok``, ``dry-run`` and ``locked`` end ``Completed``. Exit codes and
the ``--json`` lines stay as the interface says.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contactsync.state import StateStore
from tests.e2e.conftest import LEE, SAM, SyncEnv, make_env
from tests.fanout.prefect_api import last_fan_out


def _eli_cannot_be_created(env: SyncEnv) -> None:
    """A CRM constraint (as in tests/reliability/test_faults.py) fails one CRM create of LEE."""
    env.crm_exec("CREATE TRIGGER no_eli BEFORE INSERT ON CONTACT WHEN NEW.FIRSTNAME = 'Eli' "
                 "BEGIN SELECT RAISE(ABORT, 'injected constraint'); END")
    env.graph(LEE).create({"givenName": "Eli", "surname": "Stone", "emailAddresses": [
        {"address": "eli.stone@example.org", "name": "Eli Stone"}]})


def test_a_failed_user_fails_its_flow_run_its_task_run_and_the_fan_out(env: SyncEnv) -> None:
    assert env.sync().exit_code == 0
    _eli_cannot_be_created(env)

    res = env.sync()
    lines = res.by_user()
    assert res.exit_code == 1, res.stdout + res.stderr
    assert lines[LEE]["status"] == "failed" and lines[SAM]["status"] == "ok", res.stdout + res.stderr
    assert set(lines[LEE]) == {"user", "status", "dry_run", "counts", "conflicts", "quarantined", "run_id"}

    runs = last_fan_out()
    assert runs.fan_out.state.is_failed(), runs.fan_out.state
    assert LEE in runs.fan_out.state.message and SAM not in runs.fan_out.state.message
    assert runs.tasks[LEE].state.is_failed() and runs.tasks[SAM].state.is_completed()
    [lee], [sam] = runs.cycles[LEE], runs.cycles[SAM]
    assert lee.name == f"sync-{LEE}" and lee.state.is_failed()
    # The reason is the message: what a Prefect notification on Failed runs would show.
    assert re.fullmatch(r"\d+ write\(s\) failed; the next cycle retries them", lee.state.message or "")
    assert sam.state.is_completed()
    # In the fan-out run's own graph, the failed user's subflow task shows Failed too.
    assert runs.subflow_tasks[LEE][0].state.is_failed() and runs.subflow_tasks[SAM][0].state.is_completed()
    # The run record of the state store says the same.
    store = StateStore(f"sqlite:///{env.folder / 'state.db'}")
    assert store.recent_runs(LEE.ljust(12)).iloc[0]["status"] == "failed"


def test_guard_stopped_fails_the_run_while_dry_run_and_locked_complete(tmp_path: Path) -> None:
    from contactsync.emulator import start_in_thread

    with start_in_thread(db_path=tmp_path / "graph.db") as emu:
        env = make_env(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", emu, extra="mass_change_min = 1\n")
        assert env.sync().exit_code == 0
        for contact in env.graph(LEE).contacts():  # every contact of LEE deleted in Outlook
            env.graph(LEE).delete(contact["id"])

        stopped = env.sync("--user", LEE)
        assert stopped.exit_code == 3 and stopped.by_user()[LEE]["status"] == "guard-stopped"
        runs = last_fan_out()
        [lee] = runs.cycles[LEE]
        assert lee.state.is_failed() and "R16" in lee.state.message and "--force" in lee.state.message
        assert runs.tasks[LEE].state.is_failed() and runs.fan_out.state.is_failed()

        dry = env.sync("--user", LEE, "--dry-run")
        assert dry.exit_code == 0 and dry.by_user()[LEE]["status"] == "dry-run"
        runs = last_fan_out()
        assert runs.fan_out.state.is_completed() and runs.cycles[LEE][0].state.is_completed()

        store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        with store.lock(LEE.ljust(12)):  # another cycle of LEE is running
            locked = env.sync("--user", LEE)
        assert locked.exit_code == 4 and locked.by_user()[LEE]["status"] == "locked"
        runs = last_fan_out()
        assert runs.fan_out.state.is_completed() and runs.cycles[LEE][0].state.is_completed()
        assert runs.tasks[LEE].state.is_completed()


@pytest.mark.slow  # make test in CI ran 17 min against its ~15 min budget
def test_a_deployment_style_call_of_the_fan_out_returns_outcomes_and_fails_in_prefect(env: SyncEnv) -> None:
    """The deployments call the fan-out flow itself: its state carries every outcome."""
    from flows.sync_all_users import outcomes_of, sync_all_users

    assert env.sync().exit_code == 0
    _eli_cannot_be_created(env)
    state = sync_all_users(config_path=str(env.config), return_state=True)
    assert state.is_failed()
    by_user = {o.user.strip(): o.status for o in outcomes_of(state)}
    assert by_user == {LEE: "failed", SAM: "ok"}
    with pytest.raises(Exception, match="sync failed for user"):  # a plain call raises
        sync_all_users(config_path=str(env.config))


@pytest.mark.slow  # make test in CI ran 17 min against its ~15 min budget
def test_raise_on_failure_false_completes_the_fan_out_but_keeps_each_failed_cycle_failed(env: SyncEnv) -> None:
    """Issue 16: the fan-out's ``raise_on_failure`` is back. By default a failed user fails
    the fan-out run (INTERFACE "Prefect"); a caller that opts out gets a Completed fan-out
    run with every outcome, while the failed user's task run and flow run stay Failed."""
    from flows.sync_all_users import outcomes_of, sync_all_users

    assert env.sync().exit_code == 0
    _eli_cannot_be_created(env)
    state = sync_all_users(config_path=str(env.config), raise_on_failure=False, return_state=True)
    assert state.is_completed(), state
    assert LEE in (state.message or "")
    assert {o.user.strip(): o.status for o in outcomes_of(state)} == {LEE: "failed", SAM: "ok"}
    runs = last_fan_out()
    assert runs.fan_out.state.is_completed()
    assert runs.tasks[LEE].state.is_failed() and runs.cycles[LEE][0].state.is_failed()


@pytest.mark.slow  # make test in CI ran 17 min against its ~15 min budget
def test_each_user_is_reported_while_the_fan_out_runs(env: SyncEnv) -> None:
    """Issue 16: the command prints each user's line as that user finishes, not after the
    whole fan-out: the fan-out hands each user's outcome to the command's hook from inside
    its own flow run, once per user."""
    from prefect.context import FlowRunContext

    from contactsync import progress
    from flows.sync_all_users import sync_all_users

    seen: list[tuple[str, str | None]] = []

    def hook(outcomes: list) -> None:
        ctx = FlowRunContext.get()
        for o in outcomes:
            seen.append((o.user.strip(), ctx.flow_run.name if ctx and ctx.flow_run else None))

    with progress.outcomes_installed(hook):
        state = sync_all_users(config_path=str(env.config), return_state=True)
    assert state.is_completed()
    assert sorted(u for u, _ in seen) == sorted([LEE, SAM])
    assert all(run is not None for _, run in seen), seen  # inside the fan-out's flow run
    # The command prints what the hook gets: still exactly one --json line per user.
    res = env.sync()
    assert res.exit_code == 0 and sorted(line["user"] for line in res.lines()) == sorted([LEE, SAM])
