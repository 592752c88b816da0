"""Journal (R18): intended writes are recorded before they are made, and resolved after."""

from __future__ import annotations

import pandas as pd
import pytest

from contactsync.plan.schema import ACTION_COLUMNS
from contactsync.state import StateStore

from .conftest import USER


def actions(*specs: tuple[str, str, str], **extra: list[object]) -> pd.DataFrame:
    rows = []
    for action_id, side, op in specs:
        row = dict.fromkeys(ACTION_COLUMNS)
        row.update(action_id=action_id, side=side, op=op, rule="R5c", reason="new in Outlook",
                   fields="first_name,last_name", first_name="Zoë", last_name="<b>Ng</b>")
        if op == "create" and side == "crm":
            row.update(new_key="new:AAMk-1", outlook_id="AAMk-1")
        else:
            row.update(crm_id="CSYNC0000009")
        rows.append(row)
    frame = pd.DataFrame(rows)
    for k, v in extra.items():
        frame[k] = v
    return frame


def test_r18_journal_lifecycle_new_started_applied(store: StateStore) -> None:
    run = store.start_run(USER, dry_run=False, params={})
    plan = actions(("a1", "crm", "create"), ("a2", "outlook", "update"),
                   allocated_crm_id=["CSYNCA000001", None])
    assert store.journal_add(USER, run, plan) == 2
    pending = store.journal_pending(USER).set_index("action_id")
    assert pending.loc["a1", "state"] == "new"
    assert pending.loc["a1", "allocated"] == {"crm_id": "CSYNCA000001"}
    assert pending.loc["a1", "new_key"] == "new:AAMk-1"
    assert pending.loc["a1", "payload"]["last_name"] == "<b>Ng</b>"
    assert pending.loc["a1", "payload"]["rule"] == "R5c"
    assert pending.loc["a2", "allocated"] == {}

    store.journal_mark(USER, "a1", "started")
    store.journal_mark(USER, "a1", "applied", crm_id="CSYNCA000001")
    store.journal_mark(USER, "a2", "started")
    pending = store.journal_pending(USER)
    assert pending["action_id"].tolist() == ["a2"]
    assert pending["state"].tolist() == ["started"]
    done = store.journal(USER, run).set_index("action_id")
    assert done.loc["a1", "state"] == "applied"
    assert done.loc["a1", "crm_id"] == "CSYNCA000001"
    assert done.loc["a1", "attempts"] == 1


def test_r18_failed_final_is_not_pending_but_retry_is(store: StateStore) -> None:
    run = store.start_run(USER, dry_run=False, params={})
    store.journal_add(USER, run, actions(("a1", "outlook", "update"), ("a2", "outlook", "delete")))
    store.journal_mark(USER, "a1", "failed", error="400 invalid email")
    store.journal_mark(USER, "a2", "failed", error="503", final=False)
    pending = store.journal_pending(USER)
    assert pending["action_id"].tolist() == ["a2"]
    assert pending["error"].tolist() == ["503"]
    assert store.journal(USER).set_index("action_id").loc["a1", "final"]


def test_r18_crashed_create_keeps_its_allocated_id_when_replanned(store: StateStore) -> None:
    """A create left 'started' by a crash keeps the id allocated before the write, so the
    next cycle finds that CONTACTID (and links it) instead of making a duplicate."""
    run1 = store.start_run(USER, dry_run=False, params={})
    store.journal_add(USER, run1, actions(("a1", "crm", "create"), allocated_crm_id=["CSYNCA000001"]))
    store.journal_mark(USER, "a1", "started", allocated={"address_id": "ASYNCA000001"})
    # crash; the next cycle re-plans the same action with a freshly allocated id
    run2 = store.start_run(USER, dry_run=False, params={})
    store.journal_add(USER, run2, actions(("a1", "crm", "create"), allocated_crm_id=["CSYNCA000777"]))
    entry = store.journal_pending(USER).set_index("action_id").loc["a1"]
    assert entry["state"] == "started"
    assert entry["run_id"] == run2
    assert entry["allocated"] == {"crm_id": "CSYNCA000001", "address_id": "ASYNCA000001"}


def test_r18_an_applied_action_planned_again_starts_fresh(store: StateStore) -> None:
    run1 = store.start_run(USER, dry_run=False, params={})
    store.journal_add(USER, run1, actions(("a1", "outlook", "update")))
    store.journal_mark(USER, "a1", "applied")
    run2 = store.start_run(USER, dry_run=False, params={})
    store.journal_add(USER, run2, actions(("a1", "outlook", "update")))
    entry = store.journal_pending(USER).set_index("action_id").loc["a1"]
    assert (entry["state"], entry["run_id"], entry["attempts"]) == ("new", run2, 0)


def test_journal_mark_many_and_clear_by_run(store: StateStore) -> None:
    run1 = store.start_run(USER, dry_run=False, params={})
    run2 = store.start_run(USER, dry_run=False, params={})
    store.journal_add(USER, run1, actions(("a1", "outlook", "update"), ("a2", "outlook", "update")))
    store.journal_add(USER, run2, actions(("b1", "outlook", "update")))
    assert store.journal_mark_many(USER, ["a1", "a2"], "applied") == 2
    assert store.journal_pending(USER)["action_id"].tolist() == ["b1"]
    assert store.journal_clear(USER, run1) == 2
    assert store.journal(USER)["action_id"].tolist() == ["b1"]
    assert store.journal_clear(USER) == 1
    assert store.journal_pending(USER).empty


def test_journal_rejects_unknown_state_and_keys(store: StateStore) -> None:
    with pytest.raises(ValueError):
        store.journal_mark(USER, "a1", "done")
    with pytest.raises(TypeError):
        store.journal_mark(USER, "a1", "applied", outlook="x")
