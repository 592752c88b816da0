"""Reading a command's flow and task runs back from the Prefect API (prefect.get_client)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentTaskRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.client.schemas.sorting import FlowRunSort


@dataclass
class FanOutRuns:
    """The last fan-out flow run, its users' task runs and their cycles' flow runs."""

    fan_out: FlowRun
    tasks: dict[str, TaskRun]  # by user
    cycles: dict[str, list[FlowRun]]  # by user, in start order
    subflow_tasks: dict[str, list[TaskRun]]  # the fan-out's task run of each of those


def last_fan_out(flow_name: str = "sync_all_users", *, wait_s: float = 60.0) -> FanOutRuns:
    """The last fan-out run, once the API has recorded every one of its runs as final.

    Task runs reach the API as events that the server records a little later (its task run
    recorder service), so a read right after the command may still see them Running.
    """
    deadline = time.monotonic() + wait_s
    while True:
        runs = _read_last_fan_out(flow_name)
        states = [runs.fan_out.state, *(t.state for t in runs.tasks.values()),
                  *(r.state for rs in runs.cycles.values() for r in rs),
                  *(t.state for ts in runs.subflow_tasks.values() for t in ts)]
        if all(s is not None and s.is_final() for s in states) or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def _read_last_fan_out(flow_name: str) -> FanOutRuns:
    with get_client(sync_client=True) as client:
        [fan_out] = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=1,
        )
        task_runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[fan_out.id])),
        )
        tasks = {t.name.removeprefix("cycles-"): t for t in task_runs if t.name.startswith("cycles-")}
        # A cycle's flow run hangs under the task run Prefect adds to the fan-out run for
        # each subflow call (which the server keeps in the subflow's state).
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(
                any_=[t.id for t in task_runs])),
            sort=FlowRunSort.START_TIME_ASC,
        )
        cycles: dict[str, list[FlowRun]] = {}
        for run in subflows:
            cycles.setdefault(run.name.removeprefix("sync-"), []).append(run)
        trackers = {t.id: t for t in task_runs}
        subflow_tasks = {user: [trackers[r.parent_task_run_id] for r in runs] for user, runs in cycles.items()}
        return FanOutRuns(fan_out, tasks, cycles, subflow_tasks)


def flow_run(run_id: object) -> FlowRun:
    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        return run
