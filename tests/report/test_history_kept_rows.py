"""The history of a cycle is the same from the rows kept through the loads as from the
whole side frames (cycle.memory.kept_through_the_loads, issue 15: the frames are freed
before the loads, the history is written after them)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from bench.plan_bench import first_sync_inputs, steady_inputs
from contactsync.cycle.memory import kept_through_the_loads
from contactsync.plan import PlanInputs, PlanSettings, plan_cycle
from contactsync.state import StateStore
from contactsync.state.schema import history_table

LEE = "ULEEP0000001"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _problems(inputs: PlanInputs) -> pd.DataFrame:
    """Quarantined records on both sides, one of them a contact R5 would create."""
    return pd.DataFrame([
        {"side": "crm", "record_id": inputs.crm["crm_id"].iloc[3], "field": "email1", "rule": "R19",
         "reason": "invalid email address", "value": "x@"},
        {"side": "outlook", "record_id": "new:" + inputs.outlook["outlook_id"].iloc[-1], "field": "email1",
         "rule": "R19", "reason": "invalid email address", "value": "y@"},
    ])


def _history(url: str, inputs: PlanInputs, crm: pd.DataFrame, outlook: pd.DataFrame) -> list[tuple]:
    result = plan_cycle(inputs, PlanSettings())
    acts = result.actions
    # every action committed; the Outlook creates answered with new ids
    results = pd.DataFrame({"action_id": acts["action_id"], "status": "applied", "crm_id": acts["crm_id"],
                            "outlook_id": np.where(acts["op"] == "create", "NEW-" + acts["action_id"],
                                                   acts["outlook_id"])})
    store = StateStore(url)
    try:
        store.record_history("run1", LEE, crm=crm, outlook=outlook, applied=acts, conflicts=result.conflicts,
                             problems=_problems(inputs), results=results, now=NOW)
        h = history_table
        with store.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                sa.select(*[c for c in h.columns if c.name != "id"]).order_by(h.c.id))]
    finally:
        store.close()


@pytest.mark.parametrize("make", [first_sync_inputs, steady_inputs], ids=["first_sync", "steady"])
def test_the_history_from_the_kept_rows_is_the_history_from_the_whole_frames(make, tmp_path: Path) -> None:
    inputs = make(400, **({"share": 0.1} if make is steady_inputs else {}))
    result = plan_cycle(inputs, PlanSettings())
    assert (result.actions["op"] == "update").any() and len(result.conflicts)  # "before" values are asked
    crm, outlook = kept_through_the_loads(inputs.crm, inputs.outlook, result.actions, result.conflicts,
                                          _problems(inputs))
    whole = _history(f"sqlite:///{tmp_path / 'whole.db'}", inputs, inputs.crm, inputs.outlook)
    kept = _history(f"sqlite:///{tmp_path / 'kept.db'}", inputs, crm, outlook)
    assert len(whole) >= 50 and kept == whole
    assert len(crm) <= len(inputs.crm) and len(outlook) <= len(inputs.outlook)


def test_a_first_sync_keeps_only_ids_and_emails() -> None:
    """A first sync updates no stored contact: no whole row, no column beyond the emails."""
    inputs = first_sync_inputs(400, matching=0.0)
    result = plan_cycle(inputs, PlanSettings())
    crm, outlook = kept_through_the_loads(inputs.crm, inputs.outlook, result.actions, result.conflicts, None)
    assert list(crm.columns) == ["crm_id", "email1", "email2", "email3"]
    assert list(outlook.columns) == ["outlook_id", "email1", "email2", "email3"]
    assert set(crm["crm_id"]) == set(inputs.crm["crm_id"]) and set(outlook["outlook_id"]) == set(inputs.outlook["outlook_id"])
