"""ensure_folder (R3) and the delta extract, against the emulator over real HTTP."""

from __future__ import annotations

import math
from urllib.parse import quote

import requests

from contactsync.outlook.extract import ensure_folder, extract
from contactsync.outlook.load import OutlookWriter
from tests.outlook.conftest import actions, create_rows


def test_r3_ensure_folder_creates_once_and_is_idempotent(emu, make_client) -> None:
    client = make_client()
    first = ensure_folder(client, "CRM Contacts")
    again = ensure_folder(client, "CRM Contacts")
    assert first == again
    folders = client.get_json("contactFolders", params={"$top": "100"})["value"]
    assert [f["displayName"] for f in folders].count("CRM Contacts") == 1
    # the folder is a real contact folder, not the default one (O365 issue 764)
    assert client.get_json(f"contactFolders/{quote(first, safe='')}")["displayName"] == "CRM Contacts"


def test_r3_ensure_folder_with_a_quote_in_its_name(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "O'Brien's contacts")
    assert ensure_folder(client, "O'Brien's contacts") == fid


def test_r3_ensure_folder_survives_commit_then_fail(emu, make_client) -> None:
    client = make_client()
    emu.fault(status="commit-then-fail", rate=1.0, methods=["POST"], retry_after=0)
    fid = ensure_folder(client, "CRM Contacts")
    emu.clear()
    folders = client.get_json("contactFolders", params={"$top": "100"})["value"]
    assert [f["id"] for f in folders if f["displayName"] == "CRM Contacts"] == [fid]


def _seed(client, n: int, fid: str, prefix: str = "C") -> None:
    result = OutlookWriter(client, fid).apply(actions(create_rows(n, prefix)), None)
    assert (result["status"] == "applied").all()


def test_full_delta_then_edits_moves_deletes_come_as_an_incremental_delta(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    other = ensure_folder(client, "Elsewhere")
    _seed(client, 30, fid)
    emu.reset_stats()
    first = extract(client, fid, snapshot=None, delta_link=None, page_size=7)
    assert first.full and len(first.frame) == 30
    # the delta pages, plus one plain read of the folder for the tags (delta has no $expand)
    assert first.requests == math.ceil(30 / 7) + 1 == emu.stats()["requests"]
    assert first.frame["crm_tag"].notna().all()  # the tag is read back (R7a)
    assert first.frame["change_key"].notna().all() and first.frame["outlook_created"].notna().all()

    ids = list(first.frame.sort_values("first_name")["outlook_id"])
    edited, moved, deleted = ids[0], ids[1], ids[2]
    client.patch_json(f"contacts/{quote(edited, safe='')}", {"jobTitle": "Chief"})
    requests.post(
        f"{emu.url}/_emulator/users/{quote(client.mailbox, safe='')}/contacts/{quote(moved, safe='')}/move",
        json={"destinationId": other},
        headers={"Prefer": 'IdType="ImmutableId"'},
        timeout=10,
    ).raise_for_status()
    client.delete(f"contacts/{quote(deleted, safe='')}")

    second = extract(client, fid, snapshot=first.frame, delta_link=first.delta_link, page_size=7)
    assert not second.full
    assert list(second.changed["outlook_id"]) == [edited]
    assert sorted(second.removed_ids) == sorted([moved, deleted])
    assert len(second.frame) == 28
    row = second.frame.set_index("outlook_id").loc[edited]
    assert row["job_title"] == "Chief"
    assert set(second.frame["outlook_id"]) == set(ids) - {moved, deleted}


def test_quiet_extract_costs_exactly_one_request(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    _seed(client, 12, fid)
    first = extract(client, fid, snapshot=None, delta_link=None)
    emu.reset_stats()
    quiet = extract(client, fid, snapshot=first.frame, delta_link=first.delta_link)
    assert emu.stats()["requests"] == 1 and quiet.requests == 1
    assert quiet.changed.empty and quiet.removed_ids == []
    assert set(quiet.frame["outlook_id"]) == set(first.frame["outlook_id"])


def test_expired_delta_token_restarts_with_a_full_read(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    _seed(client, 5, fid)
    first = extract(client, fid, snapshot=None, delta_link=None)
    stale = first.frame.iloc[:2]  # a snapshot that no longer matches: the full read replaces it
    broken = first.delta_link.split("$deltatoken=")[0] + "$deltatoken=expired-token"
    again = extract(client, fid, snapshot=stale, delta_link=broken)
    assert again.full
    assert set(again.frame["outlook_id"]) == set(first.frame["outlook_id"])
    assert again.delta_link and again.delta_link != broken


def test_no_snapshot_means_full_read_even_with_a_link(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    _seed(client, 3, fid)
    first = extract(client, fid, snapshot=None, delta_link=None)
    again = extract(client, fid, snapshot=None, delta_link=first.delta_link)
    assert again.full and len(again.frame) == 3


def test_full_read_streamed_into_rows_gives_the_frame_of_the_whole_graph_json(emu, make_client) -> None:
    """A full read keeps each page's contacts as canonical rows, not Graph JSON (issue 15:
    the first sync's memory): the frame must be what mapping the folder's whole JSON,
    with its CrmContactId tags (R7a), gives, every value of every contact."""
    import pandas as pd

    from contactsync.outlook.mapping import CRM_TAG_EXPAND, contacts_to_frame

    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    _seed(client, 23, fid)
    first = extract(client, fid, snapshot=None, delta_link=None, page_size=5)
    folder = f"contactFolders/{quote(fid, safe='')}/contacts"
    whole = client.get_json(folder, params={"$top": "100", "$expand": CRM_TAG_EXPAND})["value"]
    order = {cid: k for k, cid in enumerate(first.frame["outlook_id"])}
    expected = contacts_to_frame(sorted(whole, key=lambda c: order[c["id"]]))
    assert expected["crm_tag"].notna().all()
    pd.testing.assert_frame_equal(first.frame, expected)
