"""Folders and contacts over real HTTP: what the sync's Outlook side relies on (R3, R4, R7a, R11, R12)."""

from __future__ import annotations

import time
from urllib.parse import quote

import requests

from contactsync.emulator import EmulatorHandle

from .conftest import TAG_ID, control, make_contact, make_folder

# -- folders (R3: the sync folder is found by name, created if missing) -------------------


def test_r3_folder_created_then_found_by_filter(graph: requests.Session, user: str) -> None:
    assert graph.get(f"{user}/contactFolders").json()["value"] == []
    fid = make_folder(graph, user, "CRM Contacts")
    make_folder(graph, user, "Other")
    r = graph.get(f"{user}/contactFolders", params={"$filter": "displayName eq 'CRM Contacts'"})
    assert r.status_code == 200
    assert [f["id"] for f in r.json()["value"]] == [fid]
    assert r.json()["value"][0]["displayName"] == "CRM Contacts"


def test_r3_folder_filter_with_percent_encoded_dollar_and_quote(graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user, "Lee's contacts")
    flt = quote("displayName eq 'Lee''s contacts'")
    r = graph.get(f"{user}/contactFolders?%24filter={flt}")
    assert [f["id"] for f in r.json()["value"]] == [fid]


def test_folder_name_clash_is_409_and_top_pages(graph: requests.Session, user: str) -> None:
    make_folder(graph, user, "A")
    r = graph.post(f"{user}/contactFolders", json={"displayName": "a"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "ErrorFolderExists"
    make_folder(graph, user, "B")
    page = graph.get(f"{user}/contactFolders", params={"$top": "1"}).json()
    assert len(page["value"]) == 1 and page["@odata.nextLink"].startswith("http://")
    rest = graph.get(page["@odata.nextLink"]).json()
    assert [f["displayName"] for f in page["value"] + rest["value"]] == ["A", "B"]


def test_folder_get_patch_delete_and_child_folders(graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user, "Parent")
    assert graph.get(f"{user}/contactFolders/{fid}").json()["displayName"] == "Parent"
    r = graph.patch(f"{user}/contactFolders/{fid}", json={"displayName": "Renamed"})
    assert r.status_code == 200 and r.json()["displayName"] == "Renamed"
    r = graph.post(f"{user}/contactFolders/{fid}/childFolders", json={"displayName": "Kid"})
    assert r.status_code == 201 and r.json()["parentFolderId"] == fid
    kids = graph.get(f"{user}/contactFolders/{fid}/childFolders").json()["value"]
    assert [k["displayName"] for k in kids] == ["Kid"]
    assert graph.delete(f"{user}/contactFolders/{fid}").status_code == 204
    r = graph.get(f"{user}/contactFolders/{fid}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "ErrorItemNotFound"


def test_mailboxes_are_separate(emulator: EmulatorHandle, graph: requests.Session) -> None:
    a = f"{emulator.graph_url}/users/a@example.com"
    b = f"{emulator.graph_url}/users/b%40example.com"
    make_folder(graph, a, "Only A")
    assert graph.get(f"{b}/contactFolders").json()["value"] == []
    assert len(graph.get(f"{a}/contactFolders").json()["value"]) == 1


# -- contacts ------------------------------------------------------------------------------


def test_r4_create_in_folder_returns_contact_with_server_fields(graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    c = make_contact(graph, user, fid, jobTitle="Countess", businessPhones=["+44 1"],
                     businessAddress={"street": "1 Main St\r\nFloor 2", "city": "London"})
    for key in ("id", "changeKey", "createdDateTime", "lastModifiedDateTime"):
        assert c[key]
    assert c["parentFolderId"] == fid
    assert c["lastModifiedDateTime"].endswith("Z")
    assert c["displayName"] == "Ada Lovelace"
    assert c["businessAddress"] == {"street": "1 Main St\r\nFloor 2", "city": "London"}
    got = graph.get(f"{user}/contactFolders/{fid}/contacts/{c['id']}").json()
    assert got["jobTitle"] == "Countess" and got["businessPhones"] == ["+44 1"]
    assert got["homePhones"] == [] and got["mobilePhone"] is None  # full shape, as Graph


def test_default_folder_contacts(graph: requests.Session, user: str) -> None:
    c = make_contact(graph, user)
    listed = graph.get(f"{user}/contacts").json()["value"]
    assert [x["id"] for x in listed] == [c["id"]]
    fid = make_folder(graph, user)
    assert graph.get(f"{user}/contactFolders/{fid}/contacts").json()["value"] == []


def test_accepts_what_real_clients_send(graph: requests.Session, user: str) -> None:
    body = {"@odata.type": "#microsoft.graph.contact", "givenName": "Grace",
            "birthday": "1906-12-09T00:00:00+00:00",
            "businessAddress": {"@odata.type": "#microsoft.graph.physicalAddress", "street": "a\nb"}}
    r = graph.post(f"{user}/contacts", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["birthday"] == "1906-12-09T00:00:00Z"
    r = graph.patch(f"{user}/contacts/{r.json()['id']}",
                    json={"@odata.type": "#microsoft.graph.contact", "birthday": "1906-12-10T00:00:00Z"})
    assert r.status_code == 200 and r.json()["birthday"] == "1906-12-10T00:00:00Z"


def test_unknown_property_and_bad_types_are_400(graph: requests.Session, user: str) -> None:
    r = graph.post(f"{user}/contacts", json={"givenName": "X", "favouriteColour": "red"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "ErrorInvalidRequest"
    r = graph.post(f"{user}/contacts", json={"businessPhones": "not a list"})
    assert r.status_code == 400
    r = graph.post(f"{user}/contacts", json={"birthday": "yesterday"})
    assert r.status_code == 400
    r = graph.post(f"{user}/contacts", data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()


def test_patch_merges_and_moves_change_key_and_time(graph: requests.Session, user: str) -> None:
    c = make_contact(graph, user, jobTitle="Analyst", businessAddress={"street": "1", "city": "Paris"})
    time.sleep(0.002)
    r = graph.patch(f"{user}/contacts/{c['id']}", json={"department": "R&D", "businessAddress": {"city": "Lyon"}})
    assert r.status_code == 200
    p = r.json()
    assert p["jobTitle"] == "Analyst" and p["department"] == "R&D"  # untouched fields kept
    assert p["businessAddress"] == {"street": "1", "city": "Lyon"}  # complex values merge
    assert p["changeKey"] != c["changeKey"]
    assert p["lastModifiedDateTime"] > c["lastModifiedDateTime"]
    assert p["createdDateTime"] == c["createdDateTime"]
    # Even a PATCH that changes nothing is a change for Outlook.
    again = graph.patch(f"{user}/contacts/{c['id']}", json={"department": "R&D"}).json()
    assert again["changeKey"] != p["changeKey"]
    assert again["lastModifiedDateTime"] > p["lastModifiedDateTime"]
    cleared = graph.patch(f"{user}/contacts/{c['id']}", json={"department": None}).json()
    assert cleared["department"] is None


def test_r12_delete_moves_to_deleted_items(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    c = make_contact(graph, user, fid)
    assert graph.delete(f"{user}/contacts/{c['id']}").status_code == 204
    assert graph.get(f"{user}/contactFolders/{fid}/contacts").json()["value"] == []
    assert graph.get(f"{user}/contacts/{c['id']}").status_code == 404  # its id changed
    deleted = control(emulator, "GET", "users/lee@example.com/deleted").json()["value"]
    assert [d["givenName"] for d in deleted] == ["Ada"]
    assert deleted[0]["id"] != c["id"] and deleted[0]["parentFolderId"] != fid


def test_permanent_delete_removes_for_good(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    c = make_contact(graph, user)
    assert graph.post(f"{user}/contacts/{c['id']}/permanentDelete").status_code == 204
    assert graph.get(f"{user}/contacts/{c['id']}").status_code == 404
    assert control(emulator, "GET", "users/lee@example.com/deleted").json()["value"] == []
    r = graph.delete(f"{user}/contacts/{c['id']}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "ErrorItemNotFound"


def test_immutable_ids_survive_delete_and_move(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    immutable = {"Prefer": 'IdType="ImmutableId"'}
    a, b = make_folder(graph, user, "A"), make_folder(graph, user, "B")
    r = graph.post(f"{user}/contactFolders/{a}/contacts", json={"givenName": "Imm"}, headers=immutable)
    iid = r.json()["id"]
    plain = graph.get(f"{user}/contacts/{iid}").json()
    assert plain["id"] != iid  # without the header Graph answers the (changing) rest id
    moved = control(emulator, "POST", f"users/lee@example.com/contacts/{plain['id']}/move", {"destinationId": b})
    assert moved.status_code == 201 and moved.json()["id"] != plain["id"]
    assert graph.get(f"{user}/contacts/{plain['id']}").status_code == 404
    after = graph.get(f"{user}/contacts/{iid}", headers=immutable).json()
    assert after["id"] == iid and after["parentFolderId"] == b
    assert graph.delete(f"{user}/contacts/{iid}", headers=immutable).status_code == 204
    gone = graph.get(f"{user}/contacts/{iid}", headers=immutable).json()
    assert gone["id"] == iid and gone["givenName"] == "Imm"


def test_r7a_extended_property_round_trip_only_with_expand(graph: requests.Session, user: str) -> None:
    c = make_contact(graph, user, singleValueExtendedProperties=[{"id": TAG_ID, "value": "CDEMOA000001"}])
    assert "singleValueExtendedProperties" not in c
    expand = f"singleValueExtendedProperties($filter=id eq '{TAG_ID}')"
    got = graph.get(f"{user}/contacts/{c['id']}", params={"$expand": expand}).json()
    assert got["singleValueExtendedProperties"] == [{"id": TAG_ID, "value": "CDEMOA000001"}]
    listed = graph.get(f"{user}/contacts", params={"$expand": expand}).json()["value"]
    assert listed[0]["singleValueExtendedProperties"][0]["value"] == "CDEMOA000001"
    graph.patch(f"{user}/contacts/{c['id']}", json={"singleValueExtendedProperties": [{"id": TAG_ID, "value": "C2"}]})
    got = graph.get(f"{user}/contacts/{c['id']}", params={"$expand": expand}).json()
    assert got["singleValueExtendedProperties"] == [{"id": TAG_ID, "value": "C2"}]
    graph.patch(f"{user}/contacts/{c['id']}", json={"singleValueExtendedProperties": [{"id": TAG_ID, "value": None}]})
    assert "singleValueExtendedProperties" not in graph.get(f"{user}/contacts/{c['id']}", params={"$expand": expand}).json()
    other = "singleValueExtendedProperties($filter=id eq 'String {00000000-0000-0000-0000-000000000000} Name X')"
    assert "singleValueExtendedProperties" not in graph.get(f"{user}/contacts/{c['id']}", params={"$expand": other}).json()


def test_r7a_filter_contacts_by_tag(graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    make_contact(graph, user, fid, singleValueExtendedProperties=[{"id": TAG_ID, "value": "C1"}])
    want = make_contact(graph, user, fid, givenName="Bob", singleValueExtendedProperties=[{"id": TAG_ID, "value": "C2"}])
    flt = f"singleValueExtendedProperties/Any(ep: ep/id eq '{TAG_ID}' and ep/value eq 'C2')"
    found = graph.get(f"{user}/contactFolders/{fid}/contacts", params={"$filter": flt}).json()["value"]
    assert [c["id"] for c in found] == [want["id"]]
    by_mail = graph.get(f"{user}/contactFolders/{fid}/contacts",
                        params={"$filter": "emailAddresses/any(a:a/address eq 'ADA@example.com')"}).json()["value"]
    assert len(by_mail) == 2
    assert graph.get(f"{user}/contacts", params={"$filter": "nonsense"}).status_code == 400


def test_list_paging_skip_top_and_select(graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    ids = [make_contact(graph, user, fid, givenName=f"N{i}")["id"] for i in range(5)]
    url = f"{user}/contactFolders/{fid}/contacts"
    page = graph.get(url, params={"$top": "2", "$select": "givenName,surname"}).json()
    assert set(page["value"][0]) == {"@odata.etag", "id", "givenName", "surname"}
    seen = [c["id"] for c in page["value"]]
    while "@odata.nextLink" in page:
        assert page["@odata.nextLink"].startswith("http://127.0.0.1")
        page = graph.get(page["@odata.nextLink"]).json()
        assert set(page["value"][0]) == {"@odata.etag", "id", "givenName", "surname"}
        seen += [c["id"] for c in page["value"]]
    assert seen == ids
    assert [c["id"] for c in graph.get(url, params={"$skip": "3"}).json()["value"]] == ids[3:]
    assert graph.get(url, params={"$select": "noSuchThing"}).status_code == 400


def test_contact_under_unknown_folder_is_404(graph: requests.Session, user: str) -> None:
    r = graph.post(f"{user}/contactFolders/AAMkNOPE=/contacts", json={"givenName": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "ErrorItemNotFound"


def test_401_without_bearer_token(emulator: EmulatorHandle, user: str) -> None:
    r = requests.get(f"{user}/contacts", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    r = requests.get(f"{user}/contacts", headers={"Authorization": "Basic abc"}, timeout=10)
    assert r.status_code == 401
    r = requests.get(f"{user}/contacts", headers={"authorization": "bearer anything"}, timeout=10)
    assert r.status_code == 200


def test_state_survives_restart_with_db_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from contactsync.emulator import start_in_thread
    from tests.fixtures.emulator import graph_session

    db = tmp_path / "mailboxes.db"
    with start_in_thread(db_path=db) as first:
        s = graph_session(first)
        user = f"{first.graph_url}/users/lee@example.com"
        fid = make_folder(s, user)
        cid = make_contact(s, user, fid)["id"]
        link = s.get(f"{user}/contactFolders/{fid}/contacts/delta").json()["@odata.deltaLink"]
    with start_in_thread(db_path=db) as second:
        s = graph_session(second)
        user = f"{second.graph_url}/users/lee@example.com"
        assert s.get(f"{user}/contacts/{cid}").json()["givenName"] == "Ada"
        # a delta token of the first run still works (same db, same signing secret)
        path = link.split("/v1.0", 1)[1]
        assert s.get(second.graph_url + path).status_code == 200


def test_unknown_paths_answer_in_graph_error_shape(emulator: EmulatorHandle, graph: requests.Session,
                                                   user: str) -> None:
    for url in (f"{user}/calendars", f"{emulator.graph_url}/groups/x", f"{emulator.url}/nothing"):
        r = graph.get(url)
        assert r.status_code in (400, 404) and set(r.json()["error"]) >= {"code", "message"}, url
    r = graph.put(f"{user}/contacts")
    assert r.status_code == 405 and "error" in r.json()


def test_orderby_on_contacts_as_o365_sends_it(graph: requests.Session, user: str) -> None:
    for name in ("Carol", "alice", "Bob"):
        make_contact(graph, user, givenName=name)
    asc = graph.get(f"{user}/contacts", params={"$orderby": "givenName", "$top": "2"}).json()
    rest = graph.get(asc["@odata.nextLink"]).json()["value"]
    assert [c["givenName"] for c in asc["value"] + rest] == ["alice", "Bob", "Carol"]
    desc = graph.get(f"{user}/contacts", params={"$orderby": "givenName desc"}).json()["value"]
    assert [c["givenName"] for c in desc] == ["Carol", "Bob", "alice"]
    assert graph.get(f"{user}/contacts", params={"$orderby": "emailAddresses"}).status_code == 400


def test_segment_names_ignore_case_as_graph(graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    c = make_contact(graph, user, fid)
    lower = user.replace("/users/", "/Users/")
    r = graph.get(f"{lower}/contactfolders/{fid}/Contacts/{c['id']}")
    assert r.status_code == 200 and r.json()["id"] == c["id"]
    assert graph.get(f"{user}/contactFolders/{fid}/contacts/microsoft.graph.delta()").status_code == 200
