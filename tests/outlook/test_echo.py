"""The echo of the sync's own writes (issue 15 goal 2): the writer keeps each committed
contact as Graph answered it, the mirror stores it, and the next delta's items in that very
version (same id, same changeKey) are dropped unparsed; a person's later edit still merges
(R8/R9). Against the emulator over real HTTP, and on plain frames."""

from __future__ import annotations

from urllib.parse import quote

import pandas as pd

from contactsync.outlook.extract import (
    FolderChanges,
    apply_changes,
    ensure_folder,
    extract,
    known_versions,
)
from contactsync.outlook.load import OutlookWriter
from contactsync.outlook.mapping import CRM_TAG_PROPERTY_ID
from tests.outlook.conftest import actions, create_rows


def _mirror_with(frame: pd.DataFrame, written: pd.DataFrame) -> pd.DataFrame:
    """What the cycle's mirror holds after the load: the read frame, written rows over it."""
    rest = frame[~frame["outlook_id"].isin(written["outlook_id"])]
    return pd.concat([rest, written], ignore_index=True)


def test_written_rows_are_the_contacts_as_graph_holds_them(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    writer = OutlookWriter(client, fid)
    result = writer.apply(actions(create_rows(3)), None)
    assert (result["status"] == "applied").all()
    written = writer.written().set_index("outlook_id")
    assert sorted(written.index) == sorted(result["outlook_id"])
    full = extract(client, fid, snapshot=None, delta_link=None).frame.set_index("outlook_id")
    for oid in written.index:  # the same version, values and tag (R7a) as a read gives
        assert written.loc[oid, "change_key"] == full.loc[oid, "change_key"]
        assert written.loc[oid, "crm_tag"] == full.loc[oid, "crm_tag"]
        assert written.loc[oid, "email1"] == full.loc[oid, "email1"]
        assert written.loc[oid, "city"] == "Springfield"


def test_echo_of_own_writes_is_dropped_and_a_later_edit_still_merges(emu, make_client) -> None:
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    OutlookWriter(client, fid).apply(actions(create_rows(6)), None)
    first = extract(client, fid, snapshot=None, delta_link=None)
    ids = sorted(first.frame["outlook_id"])
    updates = [{"action_id": f"u{k}", "op": "update", "rule": "R8", "outlook_id": oid,
                "crm_id": first.frame.set_index("outlook_id").loc[oid, "crm_tag"],
                "fields": "job_title", "job_title": f"Sync wrote {k}"} for k, oid in enumerate(ids[:3])]
    writer = OutlookWriter(client, fid)
    assert (writer.apply(actions(updates), first.frame)["status"] == "applied").all()
    mirror = _mirror_with(first.frame, writer.written())
    # a person edits one of the contacts the sync just wrote: a new changeKey (R8/R9)
    client.patch_json(f"contacts/{quote(ids[0], safe='')}", {"jobTitle": "Person wrote"})

    emu.reset_stats()
    second = extract(client, fid, snapshot=mirror, delta_link=first.delta_link)
    assert list(second.changed["outlook_id"]) == [ids[0]]  # the two pure echoes dropped
    assert emu.stats()["requests"] == 1  # no tag read: the mirror knows every tag
    now = second.frame.set_index("outlook_id")
    assert now.loc[ids[0], "job_title"] == "Person wrote"
    assert now.loc[ids[1], "job_title"] == "Sync wrote 1" and now.loc[ids[2], "job_title"] == "Sync wrote 2"
    assert len(second.frame) == 6

    # Without the written rows (the code before): every echo is parsed and merged again.
    emu.reset_stats()
    before = extract(client, fid, snapshot=first.frame, delta_link=first.delta_link)
    assert sorted(before.changed["outlook_id"]) == sorted(ids[:3])
    assert before.frame.set_index("outlook_id").drop(columns=["outlook_modified"]).sort_index().equals(
        now.drop(columns=["outlook_modified"]).sort_index())


def _snapshot() -> pd.DataFrame:
    return pd.DataFrame({"outlook_id": ["a", "b", "c"], "change_key": ["ka", "kb", None],
                         "job_title": ["old a", "old b", "old c"]})


def test_known_versions_needs_the_same_id_and_the_same_key() -> None:
    items = [
        {"id": "a", "changeKey": "ka", "jobTitle": "echo"},  # the version stored: known
        {"id": "b", "changeKey": "kb2", "jobTitle": "a person's edit"},  # a new version
        {"id": "c", "changeKey": "kc"},  # the mirror has no key for it
        {"id": "d", "changeKey": "ka"},  # another contact's key: not this one's version
        {"id": "a", "jobTitle": "partial, no key"},  # partial items are never taken as known
    ]
    assert known_versions(items, _snapshot()).tolist() == [True, False, False, False, False]
    assert known_versions(items, None).tolist() == [False] * 5


def test_partial_items_still_merge_over_the_mirror_when_echoes_are_dropped() -> None:
    items = {
        "a": {"id": "a", "changeKey": "ka", "jobTitle": "echo"},
        "b": {"id": "b", "changeKey": "kb2", "jobTitle": "new b"},  # partial: only its title
    }
    snapshot = pd.DataFrame({"outlook_id": ["a", "b"], "change_key": ["ka", "kb"],
                             "job_title": ["old a", "old b"], "first_name": ["Ann", "Bob"]})
    out = apply_changes(FolderChanges(items, "link", False, 1), snapshot)
    assert list(out.changed["outlook_id"]) == ["b"]
    now = out.frame.set_index("outlook_id")
    assert now.loc["a", "job_title"] == "old a"  # the stored version stands
    assert now.loc["b", "job_title"] == "new b" and now.loc["b", "first_name"] == "Bob"
    assert now.loc["b", "change_key"] == "kb2"


def test_r7a_a_changed_contact_the_mirror_holds_untagged_needs_no_tag_read(emu, make_client) -> None:
    """README "R7a": a delta round reads tags only for contacts the mirror does not hold.
    A stored contact without a tag (an Outlook contact linked without a write, tag_links
    with-write) that a person edits is merged with its tag as stored: no plain read for
    it, one request for the round; a contact new to the folder still has its tag read."""
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    for k in range(3):  # made in Outlook: no CrmContactId tag
        client.post_json(f"contactFolders/{quote(fid, safe='')}/contacts",
                         {"givenName": f"P{k}", "surname": "Person", "jobTitle": "old"})
    first = extract(client, fid, snapshot=None, delta_link=None)
    assert first.frame["crm_tag"].isna().all()
    ids = sorted(first.frame["outlook_id"])
    for oid in ids[:2]:
        client.patch_json(f"contacts/{quote(oid, safe='')}", {"jobTitle": "edited"})

    emu.reset_stats()
    second = extract(client, fid, snapshot=first.frame, delta_link=first.delta_link)
    assert emu.stats()["requests"] == 1  # the delta page alone
    assert sorted(second.changed["outlook_id"]) == ids[:2]
    now = second.frame.set_index("outlook_id")
    assert (now.loc[ids[:2], "job_title"] == "edited").all() and now.loc[ids[:2], "crm_tag"].isna().all()

    tagged = client.post_json(f"contactFolders/{quote(fid, safe='')}/contacts", {
        "givenName": "New", "surname": "Copy",
        "singleValueExtendedProperties": [{"id": CRM_TAG_PROPERTY_ID, "value": "CDEMOA000009"}]})
    emu.reset_stats()
    third = extract(client, fid, snapshot=second.frame, delta_link=second.delta_link)
    assert emu.stats()["requests"] >= 2  # the new contact's tag is read beside the delta
    assert third.frame.set_index("outlook_id").loc[tagged["id"], "crm_tag"] == "CDEMOA000009"
