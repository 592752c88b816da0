"""Issue 16 item 3: the users of one command run at once, up to ``sync.parallel_users``,
and a slow or failing user never holds up the others (spec/INTERFACE.md "Prefect")."""

from __future__ import annotations

import threading
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from contactsync.emulator import start_in_thread
from flows.sync_all_users import bounded
from tests.e2e.conftest import LEE, SAM, make_env
from tests.fanout.prefect_api import last_fan_out

_others_done = threading.Event()
_lock = threading.Lock()
_seen = {"running": 0, "most": 0, "done": 0}


@task(cache_policy=NO_CACHE, persist_result=False)
def _user_work(user: str) -> str:
    with _lock:
        _seen["running"] += 1
        _seen["most"] = max(_seen["most"], _seen["running"])
    try:
        if user == "slow":  # holds its place until every other user has finished
            return "others finished first" if _others_done.wait(timeout=60) else "held up"
        if user == "bad":
            raise RuntimeError("this user's cycle fails")
        return "ok"
    finally:
        with _lock:
            _seen["running"] -= 1
            if user != "slow":
                _seen["done"] += 1
                if _seen["done"] == 4:
                    _others_done.set()


@flow
def _fan_out_of_test_work(limit: int) -> dict[str, str]:
    with ThreadPoolTaskRunner(max_workers=limit) as runner:
        states = bounded(lambda u: runner.submit(_user_work, {"user": u}), ["slow", "a", "bad", "b", "c"], limit)
    return {u: (s.result() if s.is_completed() else f"failed: {s.message}") for u, s in states.items()}


def test_a_slow_user_and_a_failing_user_never_hold_up_the_others() -> None:
    results = _fan_out_of_test_work(2)
    # "slow" kept one of the two places the whole time: a, bad, b and c ran in the other.
    assert results["slow"] == "others finished first"
    assert results["a"] == results["b"] == results["c"] == "ok"
    assert results["bad"].startswith("failed") and "fails" in results["bad"]
    assert _seen["most"] == 2  # never more at once than the limit


def test_the_command_runs_its_users_at_once_up_to_parallel_users(tmp_path: Path) -> None:
    def overlap(parallel: int, folder: Path) -> bool:
        folder.mkdir()
        with start_in_thread(db_path=folder / "graph.db") as emu:
            env = make_env(folder, f"sqlite:///{folder / 'crm.db'}", emu, extra=f"parallel_users = {parallel}\n")
            res = env.sync()
            assert res.exit_code == 0 and set(res.by_user()) == {LEE, SAM}, res.stdout + res.stderr
        tasks = last_fan_out().tasks
        lee, sam = tasks[LEE], tasks[SAM]
        return lee.start_time < sam.end_time and sam.start_time < lee.end_time

    assert overlap(2, tmp_path / "two"), "with parallel_users = 2 both users' cycles run at the same time"
    assert not overlap(1, tmp_path / "one"), "with parallel_users = 1 they run one after the other"


def test_a_user_is_retried_when_the_prefect_api_failed_it_but_not_for_its_own_failure() -> None:
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.states import Failed

    from flows.sync_all_users import prefect_api_failed
    from flows.sync_contacts import CycleFailed

    request = httpx.Request("POST", "http://127.0.0.1:4200/api/task_runs/")

    def api_error(status: int) -> PrefectHTTPStatusError:
        response = httpx.Response(status, request=request)
        return PrefectHTTPStatusError.from_httpx_error(httpx.HTTPStatusError("x", request=request, response=response))

    assert prefect_api_failed(None, None, Failed(data=api_error(503)))  # the API was overloaded
    assert prefect_api_failed(None, None, Failed(data=httpx.ConnectError("refused", request=request)))
    assert not prefect_api_failed(None, None, Failed(data=api_error(422)))  # a bad request stays one
    assert not prefect_api_failed(None, None, Failed(data=CycleFailed("LEE: failed: Graph down", [])))
