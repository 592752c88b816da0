"""Folder delta: the Outlook extract reads only what changed (R8 inputs, R11 removals)."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import requests

from contactsync.emulator import EmulatorHandle

from .conftest import TAG_ID, control, make_contact, make_folder


def read_delta(graph: requests.Session, url: str, page: int | None = None,
               headers: dict[str, str] | None = None) -> tuple[list[dict], str, int]:
    """Follow a delta chain: (items, delta link, pages)."""
    hdrs = dict(headers or {})
    if page:
        hdrs["Prefer"] = ", ".join(filter(None, [hdrs.get("Prefer"), f"odata.maxpagesize={page}"]))
    items, pages = [], 0
    while True:
        r = graph.get(url, headers=hdrs)
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        items += body["value"]
        if "@odata.nextLink" in body:
            assert "@odata.deltaLink" not in body
            assert "$skiptoken=" in body["@odata.nextLink"]
            url = body["@odata.nextLink"]
            continue
        assert "$deltatoken=" in body["@odata.deltaLink"]
        return items, body["@odata.deltaLink"], pages


def test_r8_full_then_incremental_with_removals(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    fid, other = make_folder(graph, user, "CRM Contacts"), make_folder(graph, user, "Elsewhere")
    c = [make_contact(graph, user, fid, givenName=f"P{i}") for i in range(5)]
    make_contact(graph, user, other, givenName="Outside")
    start = f"{user}/contactFolders/{fid}/contacts/delta"
    items, link, pages = read_delta(graph, start, page=2)
    assert pages == 3
    assert sorted(i["givenName"] for i in items) == [f"P{i}" for i in range(5)]
    assert all("@removed" not in i for i in items)
    assert link.startswith("http://127.0.0.1")

    # A quiet mailbox: the delta link returns nothing new, one request.
    items, link, pages = read_delta(graph, link)
    assert items == [] and pages == 1

    graph.patch(f"{user}/contacts/{c[0]['id']}", json={"jobTitle": "Boss"})
    graph.delete(f"{user}/contacts/{c[1]['id']}")
    control(emulator, "POST", f"users/lee@example.com/contacts/{c[2]['id']}/move", {"destinationId": other})
    graph.post(f"{user}/contacts/{c[3]['id']}/permanentDelete")
    new = make_contact(graph, user, fid, givenName="New")
    make_contact(graph, user, other, givenName="Still outside")

    items, link, _ = read_delta(graph, link, page=2)
    changed = {i["id"]: i for i in items if "@removed" not in i}
    removed = {i["id"]: i["@removed"]["reason"] for i in items if "@removed" in i}
    assert set(changed) == {c[0]["id"], new["id"]}
    assert changed[c[0]["id"]]["jobTitle"] == "Boss"
    assert removed == {c[1]["id"]: "deleted", c[2]["id"]: "changed", c[3]["id"]: "deleted"}
    assert read_delta(graph, link)[0] == []


def test_r11_delta_with_immutable_ids_reports_the_same_id(emulator: EmulatorHandle, graph: requests.Session,
                                                          user: str) -> None:
    imm = {"Prefer": 'IdType="ImmutableId"'}
    fid, other = make_folder(graph, user, "A"), make_folder(graph, user, "B")
    cid = graph.post(f"{user}/contactFolders/{fid}/contacts", json={"givenName": "I"}, headers=imm).json()["id"]
    items, link, _ = read_delta(graph, f"{user}/contactFolders/{fid}/contacts/delta()", headers=imm)
    assert [i["id"] for i in items] == [cid]
    control(emulator, "POST", f"users/lee@example.com/contacts/{cid}/move", {"destinationId": other})
    items, _, _ = read_delta(graph, link, headers=imm)
    assert items == [{"id": cid, "@removed": {"reason": "changed"}}]


def test_delta_carries_extended_property_with_expand(graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    make_contact(graph, user, fid, singleValueExtendedProperties=[{"id": TAG_ID, "value": "C9"}])
    expand = f"singleValueExtendedProperties($filter=id eq '{TAG_ID}')"
    r = graph.get(f"{user}/contactFolders/{fid}/contacts/delta", params={"$expand": expand})
    assert r.json()["value"][0]["singleValueExtendedProperties"] == [{"id": TAG_ID, "value": "C9"}]
    # The chain remembers the $expand of its first request.
    link = r.json()["@odata.deltaLink"]
    graph.patch(f"{user}/contacts/{r.json()['value'][0]['id']}", json={"jobTitle": "x"})
    again = graph.get(link).json()["value"]
    assert again[0]["singleValueExtendedProperties"] == [{"id": TAG_ID, "value": "C9"}]


def test_delta_rejects_top_and_pages_by_prefer(graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    for i in range(3):
        make_contact(graph, user, fid, givenName=f"x{i}")
    url = f"{user}/contactFolders/{fid}/contacts/delta"
    r = graph.get(url, params={"$top": "2"})
    assert r.status_code == 400 and "error" in r.json()
    r = graph.get(url, headers={"Prefer": "odata.maxpagesize=2"})
    assert len(r.json()["value"]) == 2 and "@odata.nextLink" in r.json()
    assert r.headers["Preference-Applied"] == "odata.maxpagesize=2"
    # Two Prefer header lines count as one list of preferences.
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("GET", parts.path)
    for name, value in (("Authorization", "Bearer t"), ("Prefer", 'IdType="ImmutableId"'),
                        ("Prefer", "odata.maxpagesize=1")):
        conn.putheader(name, value)
    conn.endheaders()
    body = json.loads(conn.getresponse().read())
    conn.close()
    assert len(body["value"]) == 1 and body["value"][0]["id"].startswith("AAkA")  # immutable ids


def test_delta_410_on_garbled_or_foreign_token(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    fid, other = make_folder(graph, user, "A"), make_folder(graph, user, "B")
    url = f"{user}/contactFolders/{fid}/contacts/delta"
    for bad in ("garbage", "eyJhIjoxfQ", ""):
        r = graph.get(url, params={"$deltatoken": bad})
        assert r.status_code == 410, bad
        assert r.json()["error"]["code"] in ("SyncStateNotFound", "resyncRequired")
    r = graph.get(url, params={"$skiptoken": "x"})
    assert r.status_code == 410
    # A valid token of another folder is refused too.
    link = graph.get(f"{user}/contactFolders/{other}/contacts/delta").json()["@odata.deltaLink"]
    token = link.split("$deltatoken=")[1]
    assert graph.get(url, params={"$deltatoken": token}).status_code == 410
    # The delta link of a folder that no longer exists is 404, as any item of it.
    graph.delete(f"{user}/contactFolders/{other}")
    assert graph.get(link).status_code == 404


def test_contact_changed_during_a_full_pass_is_not_lost(graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    c = [make_contact(graph, user, fid, givenName=f"P{i}") for i in range(4)]
    url = f"{user}/contactFolders/{fid}/contacts/delta"
    first = graph.get(url, headers={"Prefer": "odata.maxpagesize=2"}).json()
    delivered = {i["id"] for i in first["value"]}
    moved_out = next(x for x in c if x["id"] in delivered)
    graph.delete(f"{user}/contacts/{moved_out['id']}")  # leaves after it was delivered
    rest, link, _ = read_delta(graph, first["@odata.nextLink"], page=2)
    items, _, _ = read_delta(graph, link)
    assert {"id": moved_out["id"], "@removed": {"reason": "deleted"}} in items


def test_deltatoken_latest_skips_the_initial_read(graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    make_contact(graph, user, fid, givenName="Old")
    r = graph.get(f"{user}/contactFolders/{fid}/contacts/delta", params={"$deltatoken": "latest"})
    assert r.status_code == 200 and r.json()["value"] == []
    new = make_contact(graph, user, fid, givenName="New")
    items, _, _ = read_delta(graph, r.json()["@odata.deltaLink"])
    assert [i["id"] for i in items] == [new["id"]]


def test_contact_delta_pages_are_capped_at_200_like_graph(emulator: EmulatorHandle, graph: requests.Session,
                                                          user: str) -> None:
    """Graph returns at most 200 contacts per delta page, whatever maxpagesize asks (and 200
    without it): a client that counts on bigger pages would under-count its requests."""
    fid = make_folder(graph, user)
    emulator.store.create_contacts(emulator.store.mailbox("lee@example.com"), fid,
                                   [{"givenName": f"G{i}"} for i in range(250)])
    url = f"{user}/contactFolders/{fid}/contacts/delta"
    asked = graph.get(url, headers={"Prefer": "odata.maxpagesize=1000"})
    assert len(asked.json()["value"]) == 200 and "@odata.nextLink" in asked.json()
    assert asked.headers["Preference-Applied"] == "odata.maxpagesize=200"
    assert len(graph.get(url).json()["value"]) == 200
