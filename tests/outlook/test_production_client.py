"""The Outlook client through what production Graph does (spec/GRAPH_API.md), over real HTTP.

One test (or a few) per behaviour of issue 12, named after it, against the session
emulator set to that behaviour (tests/outlook/conftest.py resets it between tests).
"""

from __future__ import annotations

import time

import requests

from contactsync.outlook.extract import ensure_folder
from contactsync.outlook.load import OutlookWriter
from tests.outlook.conftest import actions, create_rows


def _control(emu, path: str, body: dict) -> None:
    requests.post(f"{emu.url}/_emulator/{path}", json=body, timeout=10).raise_for_status()


# -- 1. batches run in parallel inside -------------------------------------------------


def test_batch_parallel_inside_client_counts_inner_requests_no_429(emu, make_client) -> None:
    """200 creates as 10 batches of 20 with 50 ms a request: no inner request is throttled,
    and the load takes about what 4 places allow (200 x 50 ms / 4 = 2.5 s), not 4x less."""
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    _control(emu, "latency", {"ms": 50})
    emu.reset_stats()
    t0 = time.perf_counter()
    result = OutlookWriter(client, fid).apply(actions(create_rows(200)), None)
    wall = time.perf_counter() - t0
    stats = emu.stats()
    assert (result["status"] == "applied").all()
    assert stats["throttled"] == 0, stats
    assert stats["inner_requests"] == 200 and stats["batches"] == 10
    assert 2.5 <= wall < 2.5 * 1.6, wall


def test_batch_parallel_inside_pacer_places_of_a_batch(make_client) -> None:
    """A batch of 20 takes all 4 places, a batch of 3 three, a plain request one."""
    pacer = make_client().pacer
    assert [pacer.places_for(w) for w in (1, 3, 4, 20)] == [1, 3, 4, 4]


# -- 6. no lost updates: If-Match and 412 ----------------------------------------------


def _linked(client, emu, n: int = 2):
    """A folder with ``n`` contacts, read once as the cycle reads them (the Outlook frame)."""
    from contactsync.outlook.extract import extract

    fid = ensure_folder(client, "CRM Contacts")
    OutlookWriter(client, fid).apply(actions(create_rows(n)), None)
    return fid, extract(client, fid, snapshot=None, delta_link=None).frame


def _update(frame, i: int, title: str) -> dict:
    row = frame.iloc[i]
    return {"action_id": f"u{i}", "op": "update", "rule": "R8", "outlook_id": row["outlook_id"],
            "crm_id": row["crm_tag"], "fields": "job_title", "job_title": title}


def test_if_match_person_edit_between_read_and_write_is_not_overwritten(emu, make_client) -> None:
    client = make_client()
    fid, frame = _linked(client, emu)
    person_edited = frame.iloc[0]["outlook_id"]
    emu.raw().patch(client.url(f"contacts/{person_edited}"), json={"jobTitle": "Edited by a person"}).raise_for_status()
    result = OutlookWriter(client, fid).apply(actions([_update(frame, 0, "From CRM"), _update(frame, 1, "From CRM")]), frame)
    status = dict(zip(result["action_id"], result["status"], strict=True))
    assert status == {"u0": "stale", "u1": "applied"}
    assert "changed in Outlook since this cycle read it" in result.set_index("action_id").loc["u0", "error"]
    now = emu.raw().get(client.url(f"contacts/{person_edited}")).json()
    assert now["jobTitle"] == "Edited by a person"


def test_if_match_412_race_without_newer_version_is_retried(emu, make_client) -> None:
    client = make_client()
    fid, frame = _linked(client, emu)
    emu.fault(status=412, count=1, methods=["PATCH"])
    result = OutlookWriter(client, fid).apply(actions([_update(frame, 0, "T0"), _update(frame, 1, "T1")]), frame)
    assert (result["status"] == "applied").all(), result.to_dict("records")
    titles = {emu.raw().get(client.url(f"contacts/{o}")).json()["jobTitle"] for o in frame["outlook_id"]}
    assert titles == {"T0", "T1"}


def test_if_match_committed_without_answer_is_applied_not_stale(emu, make_client) -> None:
    """A PATCH committed without an answer is re-sent with the old etag and gets 412: it
    reads back as written, so it counts as applied (R18), not as a person's edit."""
    client = make_client()
    fid, frame = _linked(client, emu, 1)
    emu.fault(status="commit-then-fail", rate=1.0, methods=["PATCH"], retry_after=0)
    import threading

    timer = threading.Timer(0.3, emu.clear)
    timer.start()
    result = OutlookWriter(client, fid).apply(actions([_update(frame, 0, "Committed")]), frame)
    timer.join()
    assert result["status"].tolist() == ["applied"], result.to_dict("records")
