"""Planning pauses the garbage collector (plan/cycle.py, issue 15) and always leaves it as
the caller had it: on, off, or after an error."""

from __future__ import annotations

import gc

import pandas as pd
import pytest

from bench.plan_bench import first_sync_inputs
from contactsync.plan import PlanInputs, PlanSettings, plan_cycle


def test_the_collector_is_off_while_planning_and_back_on_after(monkeypatch: pytest.MonkeyPatch) -> None:
    from contactsync.plan import cycle

    seen: list[bool] = []
    planning = cycle._plan

    def watched(inputs: PlanInputs, settings: PlanSettings):  # noqa: ANN202
        seen.append(gc.isenabled())
        return planning(inputs, settings)

    monkeypatch.setattr(cycle, "_plan", watched)
    assert gc.isenabled()
    result = plan_cycle(first_sync_inputs(50), PlanSettings())
    assert seen == [False] and gc.isenabled() and len(result.actions)


def test_a_caller_that_turned_the_collector_off_keeps_it_off() -> None:
    gc.disable()
    try:
        plan_cycle(first_sync_inputs(50), PlanSettings())
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_is_back_on_after_a_plan_that_fails() -> None:
    bad = PlanInputs(crm=pd.DataFrame({"crm_id": ["C1"], "crm_modified": ["not a time"]}),
                     outlook=first_sync_inputs(5).outlook, links=first_sync_inputs(5).links)
    with pytest.raises(Exception):  # noqa: B017 - whatever the planning raises
        plan_cycle(bad, PlanSettings())
    assert gc.isenabled()
