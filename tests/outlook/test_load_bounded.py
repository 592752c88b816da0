"""The Outlook writer holds a bounded part of a big load at once (issue 15 goal 3): the
action rows become dicts a block at a time as the batches go out, and the contacts it
kept for the mirror are let go once stored (``forget_written``), with every action still
answered once, in plan order, and nothing sent twice (R18)."""

from __future__ import annotations

import pandas as pd
import pytest

from contactsync.outlook import load as outlook_load
from contactsync.outlook.extract import ensure_folder, extract
from contactsync.outlook.load import OutlookWriter
from tests.outlook.conftest import actions, create_rows


def test_rows_become_dicts_a_block_at_a_time_and_every_action_is_answered_once(
        emu, make_client, monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    made = OutlookWriter(client, fid).apply(actions(create_rows(6, prefix="D")), None)
    current = extract(client, fid, snapshot=None, delta_link=None).frame
    rows = create_rows(40)
    # skips, updates, deletes and an unknown operation among the creates, as a plan mixes them
    for i, oid in enumerate(made["outlook_id"]):
        rows.insert(3 + 6 * i, {"action_id": f"upd-{i}", "op": "update", "outlook_id": oid, "crm_id": f"D{i:011d}",
                                "fields": "city", "city": f"Town{i}"} if i % 2 else
                    {"action_id": f"del-{i}", "op": "delete", "outlook_id": oid})
    rows[10:10] = [{"action_id": "skip-1", "op": "skip", "outlook_id": "nope"}, {"action_id": "odd-1", "op": "move"}]
    plan = actions(rows)
    converted: list[int] = []
    real = outlook_load.frame_records

    def counted(frame: pd.DataFrame) -> list[dict]:
        if "op" in frame.columns:  # action rows (not the stored copies the updates read)
            converted.append(len(frame))
        return real(frame)

    monkeypatch.setattr(outlook_load, "frame_records", counted)
    monkeypatch.setattr(outlook_load, "ROWS_AT_ONCE", 7)
    emu.reset_stats()
    seen: list[str] = []
    result = OutlookWriter(client, fid, batch_size=5, max_in_flight=1).apply(plan, current, on_result=lambda r: seen.append(r["action_id"]))
    assert max(converted) <= 7 and sum(converted) == len(plan)  # never the whole plan as dicts at once
    assert sorted(seen) == sorted(plan["action_id"]) and len(seen) == len(set(seen))  # each answered once
    status = result.set_index("action_id")["status"]
    assert status["skip-1"] == "noop" and status["odd-1"] == "failed"
    assert (status.drop(["skip-1", "odd-1"]) == "applied").all()
    assert emu.stats()["inner_requests"] == len(plan) - 2  # nothing sent twice, nothing left out
    folder = extract(client, fid, snapshot=None, delta_link=None).frame.set_index("crm_tag")
    assert set(folder.index) == {f"C{i:011d}" for i in range(40)} | {f"D{i:011d}" for i in (1, 3, 5)}
    assert folder.loc["D00000000003", "city"] == "Town3"
    # the sent ones go out in plan order, batch after batch (one in flight at a time here)
    sent = [a for a in seen if not a.startswith(("skip", "odd"))]
    assert sent == [a for a in plan["action_id"] if not a.startswith(("skip", "odd"))]


def test_forgotten_written_rows_are_let_go_and_the_count_goes_on(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    writer = OutlookWriter(client, fid)
    writer.apply(actions(create_rows(45)), None)
    every = writer.written()
    assert len(every) == 45
    writer.forget_written(30)  # the first 30 are in the mirror (cycle.record's round)
    assert len(writer._written) == 15  # let go, not only skipped
    rest = writer.written(30)
    assert rest["outlook_id"].tolist() == every["outlook_id"].iloc[30:].tolist()
    writer.apply(actions(create_rows(5, prefix="E")), None)  # later writes count on from 45
    assert writer.written(45)["crm_tag"].tolist() == [f"E{i:011d}" for i in range(5)]
    writer.forget_written(50)
    assert writer.written(50).empty and writer.written(30).empty


def test_the_rounds_results_are_each_read_once_and_let_go() -> None:
    from contactsync.cycle.load import Prepared
    from contactsync.plan.schema import PlanResult

    acts = pd.DataFrame({"action_id": [f"a{i}" for i in range(5)], "side": "outlook"})
    plan = PlanResult(actions=acts, conflicts=pd.DataFrame(), snapshots=pd.DataFrame(), guard=None)  # type: ignore[arg-type]
    prepared = Prepared(None, plan, acts, "run1")  # type: ignore[arg-type]
    for i in range(3):
        prepared.journal({"action_id": f"a{i}", "status": "noop"})
    first, start = prepared.results_since(0)
    assert first["action_id"].tolist() == ["a0", "a1", "a2"] and start == 3
    assert prepared._results == []  # given to the one reader: not held to the load's end
    for i in (3, 4):
        prepared.journal({"action_id": f"a{i}", "status": "noop"})
    second, start = prepared.results_since(start)
    assert second["action_id"].tolist() == ["a3", "a4"] and start == 5
    assert prepared.results_since(start)[0].empty
