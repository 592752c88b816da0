"""OutlookWriter against the emulator: batches, per-record results, retries, no duplicates."""

from __future__ import annotations

import threading
from collections import Counter
from urllib.parse import quote

import pandas as pd
import pytest
import requests

from contactsync.errors import SideUnreachable
from contactsync.outlook.extract import ensure_folder, extract
from contactsync.outlook.load import RESULT_COLUMNS, OutlookWriter
from tests.outlook.conftest import actions, create_rows


def _folder_contents(client, fid: str) -> pd.DataFrame:
    return extract(client, fid, snapshot=None, delta_link=None).frame


def test_r4_creates_go_out_as_batches_of_20_and_carry_the_tag(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    emu.reset_stats()
    seen: list[dict] = []
    ticks: list[tuple[int, int]] = []
    result = OutlookWriter(client, fid).apply(
        actions(create_rows(1000)), None, on_result=seen.append, progress=lambda d, t: ticks.append((d, t))
    )
    stats = emu.stats()
    assert stats["batches"] == 50 and stats["requests"] == 50  # 1,000 creates = 50 requests
    assert stats["inner_requests"] == 1000
    assert list(result.columns) == list(RESULT_COLUMNS)
    assert (result["status"] == "applied").all() and result["outlook_id"].notna().all()
    assert len(seen) == 1000 and ticks[-1] == (1000, 1000) and len(ticks) == 50
    folder = _folder_contents(client, fid)
    assert len(folder) == 1000
    assert set(folder["crm_tag"]) == {f"C{i:011d}" for i in range(1000)}  # R7a
    assert set(folder["outlook_id"]) == set(result["outlook_id"])


def test_read_1000_unchanged_contacts_twice(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    OutlookWriter(client, fid).apply(actions(create_rows(1000)), None)
    emu.reset_stats()
    first = extract(client, fid, snapshot=None, delta_link=None, page_size=500)
    after_first = emu.stats()["requests"]
    second = extract(client, fid, snapshot=first.frame, delta_link=first.delta_link, page_size=500)
    total = emu.stats()["requests"]
    # a full read (Graph caps contact delta pages at 200, whatever is asked) and one plain
    # read of the folder for the tags (delta carries no $expand), then 1 quiet request
    assert after_first == 5 + 1 and total == 7
    assert len(second.frame) == 1000 and second.changed.empty


def _one_contact(client, fid: str) -> dict:
    body = {
        "givenName": "Ada",
        "surname": "Lovelace",
        "emailAddresses": [
            {"address": "ada@example.com", "name": "Ada Lovelace"},
            {"address": "ada.home@example.com", "name": "Ada at home"},
        ],
        "businessPhones": ["+44 1", "+44 2"],
        "homePhones": ["+44 9", "+44 8"],
        "businessAddress": {"street": "1 Way", "city": "London", "postalCode": "W1"},
    }
    return client.post_json(f"contactFolders/{quote(fid, safe='')}/contacts", body)


def test_r8_update_writes_only_its_fields_and_keeps_other_entries(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    made = _one_contact(client, fid)
    current = _folder_contents(client, fid)
    row = {
        "action_id": "u1", "op": "update", "rule": "R8", "outlook_id": made["id"], "crm_id": "CX0000000001",
        "fields": "work_phone,email1,home_phone,city", "work_phone": "+1 999", "email1": "ada@new.example.com",
        "home_phone": "+1 888", "city": "Leeds", "first_name": "NOT WRITTEN",
    }
    result = OutlookWriter(client, fid).apply(actions([row]), current)
    assert result.loc[0, "status"] == "applied" and result.loc[0, "change_key"] != made["changeKey"]
    after = client.get_json(f"contacts/{quote(made['id'], safe='')}")
    assert after["givenName"] == "Ada"  # not in fields: untouched
    assert after["businessPhones"] == ["+1 999", "+44 2"]
    assert after["homePhones"] == ["+1 888", "+44 8"]
    assert after["emailAddresses"][1] == {"address": "ada.home@example.com", "name": "Ada at home"}
    assert after["emailAddresses"][0]["address"] == "ada@new.example.com"
    assert after["businessAddress"]["street"] == "1 Way" and after["businessAddress"]["city"] == "Leeds"
    assert _folder_contents(client, fid).loc[0, "crm_tag"] == "CX0000000001"  # tag written on link


def test_r13_delete_moves_the_contact_to_deleted_items(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    made = _one_contact(client, fid)
    rows = [{"action_id": "d1", "op": "delete", "rule": "R13", "outlook_id": made["id"]}]
    result = OutlookWriter(client, fid).apply(actions(rows), None)
    assert result.loc[0, "status"] == "applied"
    assert _folder_contents(client, fid).empty
    deleted = requests.get(
        f"{emu.url}/_emulator/users/{quote(client.mailbox, safe='')}/deleted",
        headers={"Prefer": 'IdType="ImmutableId"'}, timeout=10,
    ).json()["value"]
    assert [c["givenName"] for c in deleted] == ["Ada"]


def test_mixed_results_are_reported_per_record(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    made = _one_contact(client, fid)
    rows = [
        {**create_rows(1)[0], "action_id": "ok-create"},
        {"action_id": "gone-update", "op": "update", "rule": "R8", "outlook_id": "AAMkDoesNotExist", "fields": "city", "city": "X"},
        {"action_id": "gone-delete", "op": "delete", "rule": "R13", "outlook_id": "AAMkDoesNotExist"},
        {"action_id": "ok-update", "op": "update", "rule": "R8", "outlook_id": made["id"], "fields": "job_title", "job_title": "Countess"},
        {"action_id": "nothing", "op": "skip", "rule": "R1", "outlook_id": made["id"]},
    ]
    seen: list[dict] = []
    result = OutlookWriter(client, fid).apply(actions(rows), None, on_result=seen.append).set_index("action_id")
    assert result.loc["ok-create", "status"] == "applied"
    assert result.loc["ok-update", "status"] == "applied"
    assert result.loc["gone-delete", "status"] == "applied"  # already gone: the aim is met
    assert result.loc["nothing", "status"] == "noop"
    assert result.loc["gone-update", "status"] == "failed"
    error = result.loc["gone-update", "error"]
    assert "AAMkDoesNotExist" in error and "R8" in error and "next cycle" in error
    assert {r["action_id"] for r in seen} == set(result.index)


def test_429_storm_still_completes(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    emu.fault(status=429, rate=0.5, retry_after=0, seed=3)  # one batch: a fixed sequence
    result = OutlookWriter(client, fid).apply(actions(create_rows(20)), None)
    assert emu.stats()["throttled"] >= 10  # most inner requests were refused at least once
    emu.clear()
    assert (result["status"] == "applied").all()
    assert len(_folder_contents(client, fid)) == 20


def test_r18_commit_then_fail_on_creates_makes_no_duplicates(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    emu.fault(status="commit-then-fail", rate=0.3, methods=["POST"], retry_after=0, seed=3)
    result = OutlookWriter(client, fid).apply(actions(create_rows(100)), None)
    emu.clear()
    assert (result["status"] == "applied").all()
    folder = _folder_contents(client, fid)
    assert len(folder) == 100
    assert Counter(folder["crm_tag"]).most_common(1)[0][1] == 1
    assert set(result["outlook_id"]) == set(folder["outlook_id"])  # committed ones found by tag


def test_r18_dropped_batches_make_no_duplicates(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    emu.fault(status="drop", rate=0.05, methods=["POST"], seed=11)
    result = OutlookWriter(client, fid).apply(actions(create_rows(60)), None)
    emu.clear()
    assert (result["status"] == "applied").all()
    folder = _folder_contents(client, fid)
    assert len(folder) == 60 and folder["crm_tag"].is_unique


def test_5xx_on_patch_is_retried(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    created = OutlookWriter(client, fid).apply(actions(create_rows(20)), None)
    rows = [
        {"action_id": f"u{i}", "op": "update", "rule": "R8", "outlook_id": oid, "fields": "job_title", "job_title": f"Title {i}"}
        for i, oid in enumerate(created["outlook_id"])
    ]
    emu.fault(status=500, rate=0.5, methods=["PATCH"], retry_after=0, seed=5)
    result = OutlookWriter(client, fid).apply(actions(rows), None)
    emu.clear()
    assert (result["status"] == "applied").all()
    folder = _folder_contents(client, fid).set_index("outlook_id")
    assert all(folder.loc[r["outlook_id"], "job_title"] == r["job_title"] for r in rows)


def test_unreachable_graph_raises_side_unreachable_after_bounded_retries(emu, make_client) -> None:
    client = make_client(max_wait_s=0.3)
    fid = ensure_folder(client, "CRM Contacts")
    emu.fault(status="drop", rate=1.0)
    with pytest.raises(SideUnreachable, match="did not answer"):
        client.get_json("contactFolders")
    with pytest.raises(SideUnreachable):
        OutlookWriter(client, fid).apply(actions(create_rows(3)), None)
    emu.clear()
    emu.fault(status=503, rate=1.0, retry_after=0)
    with pytest.raises(SideUnreachable):
        client.get_json("contactFolders")


def test_inner_failures_beyond_the_budget_fail_per_record(emu, make_client) -> None:
    client = make_client(max_wait_s=0.3)
    fid = ensure_folder(client, "CRM Contacts")
    emu.fault(status=429, rate=1.0, retry_after=0)
    result = OutlookWriter(client, fid).apply(actions(create_rows(3)), None)
    emu.clear()
    assert (result["status"] == "failed").all()
    assert result["error"].str.contains("next cycle").all()


def test_client_keeps_at_most_4_requests_in_flight(emu, make_client) -> None:
    client = make_client()
    ensure_folder(client, "CRM Contacts")
    requests.post(f"{emu.url}/_emulator/latency", json={"ms": 60}, timeout=10)
    emu.reset_stats()
    threads = [threading.Thread(target=client.get_json, args=("contactFolders",)) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = emu.stats()
    assert stats["requests"] == 12 and stats["throttled"] == 0
