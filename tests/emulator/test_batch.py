"""``$batch``: the Outlook load writes 20 requests at a time and reads one answer each."""

from __future__ import annotations

import requests

from contactsync.emulator import EmulatorHandle

from .conftest import control, make_contact, make_folder

JSON = {"Content-Type": "application/json"}


def batch(graph: requests.Session, emulator: EmulatorHandle, items: list[dict]) -> requests.Response:
    return graph.post(f"{emulator.graph_url}/$batch", json={"requests": items})


def by_id(r: requests.Response) -> dict[str, dict]:
    assert r.status_code == 200, r.text
    return {x["id"]: x for x in r.json()["responses"]}


def test_batch_mixed_success_and_failure(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    existing = make_contact(graph, user, fid)
    items = [
        {"id": "1", "method": "POST", "url": f"/users/lee%40example.com/contactFolders/{fid}/contacts",
         "headers": JSON, "body": {"givenName": "New"}},
        {"id": "2", "method": "PATCH", "url": f"users/lee@example.com/contacts/{existing['id']}",
         "headers": {"content-type": "application/json"}, "body": {"jobTitle": "CTO"}},
        {"id": "3", "method": "GET", "url": "/users/lee@example.com/contacts/AAMkNoSuchId="},
        {"id": "4", "method": "DELETE", "url": f"/users/lee@example.com/contacts/{existing['id']}"},
        {"id": "5", "method": "GET", "url": f"/users/lee@example.com/contactFolders/{fid}/contacts?%24select=givenName",
         "dependsOn": []},
    ]
    answers = by_id(batch(graph, emulator, items))
    assert answers["1"]["status"] == 201 and answers["1"]["body"]["givenName"] == "New"
    assert answers["1"]["headers"]["Content-Type"] == "application/json"
    assert answers["2"]["status"] == 200 and answers["2"]["body"]["jobTitle"] == "CTO"
    assert answers["3"]["status"] == 404
    assert answers["3"]["body"]["error"]["code"] == "ErrorItemNotFound"
    assert answers["4"]["status"] == 204 and "body" not in answers["4"]
    assert answers["5"]["status"] == 200
    assert [c["givenName"] for c in answers["5"]["body"]["value"]] == ["New"]
    # Each inner request really happened.
    listed = graph.get(f"{user}/contactFolders/{fid}/contacts").json()["value"]
    assert [c["givenName"] for c in listed] == ["New"]


def test_batch_depends_on_failure_gives_424(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    items = [
        {"id": "a", "method": "PATCH", "url": "/users/lee@example.com/contacts/AAMkGone=",
         "headers": JSON, "body": {"jobTitle": "x"}},
        {"id": "b", "method": "POST", "url": "/users/lee@example.com/contacts", "dependsOn": ["a"],
         "headers": JSON, "body": {"givenName": "Never"}},
        {"id": "c", "method": "POST", "url": "/users/lee@example.com/contacts", "dependsOn": ["b"],
         "headers": JSON, "body": {"givenName": "Never either"}},
        {"id": "d", "method": "POST", "url": "/users/lee@example.com/contacts",
         "headers": JSON, "body": {"givenName": "Independent"}},
    ]
    answers = by_id(batch(graph, emulator, items))
    assert answers["a"]["status"] == 404
    assert answers["b"]["status"] == 424 and answers["c"]["status"] == 424
    assert answers["b"]["body"]["error"]["code"] == "FailedDependency"
    assert answers["d"]["status"] == 201
    assert [c["givenName"] for c in graph.get(f"{user}/contacts").json()["value"]] == ["Independent"]


def test_batch_over_20_or_malformed_is_400(emulator: EmulatorHandle, graph: requests.Session) -> None:
    item = {"method": "GET", "url": "/users/lee@example.com/contacts"}
    r = batch(graph, emulator, [{**item, "id": str(i)} for i in range(21)])
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest"
    assert by_id(batch(graph, emulator, [{**item, "id": str(i)} for i in range(20)]))["19"]["status"] == 200
    no_type = [{"id": "1", "method": "POST", "url": "/users/lee@example.com/contacts", "body": {"givenName": "x"}}]
    assert batch(graph, emulator, no_type).status_code == 400
    dup = [{**item, "id": "1"}, {**item, "id": "1"}]
    assert batch(graph, emulator, dup).status_code == 400
    cycle = [{**item, "id": "1", "dependsOn": ["2"]}, {**item, "id": "2", "dependsOn": ["1"]}]
    assert batch(graph, emulator, cycle).status_code == 400
    absolute = [{**item, "id": "1", "url": "https://graph.microsoft.com/v1.0/users/x/contacts"}]
    assert batch(graph, emulator, absolute).status_code == 400
    assert graph.post(f"{emulator.graph_url}/$batch", json={}).status_code == 400


def test_batch_inner_requests_are_throttled_each_on_their_own(emulator: EmulatorHandle,
                                                             graph: requests.Session) -> None:
    control(emulator, "POST", "limits", {"requests_per_window": 3, "window_s": 60})
    items = [{"id": str(i), "method": "POST", "url": "/users/lee@example.com/contacts",
              "headers": JSON, "body": {"givenName": f"n{i}"}} for i in range(5)]
    answers = by_id(batch(graph, emulator, items))
    statuses = sorted(a["status"] for a in answers.values())
    assert statuses == [201, 201, 201, 429, 429]
    throttled = [a for a in answers.values() if a["status"] == 429]
    assert int(throttled[0]["headers"]["Retry-After"]) >= 1
    assert throttled[0]["body"]["error"]["code"] == "TooManyRequests"
    assert control(emulator, "GET", "stats").json()["throttled"] == 2


def test_batch_percent_encoded_url_and_prefer_inside(emulator: EmulatorHandle, graph: requests.Session,
                                                     user: str) -> None:
    fid = make_folder(graph, user)
    items = [{"id": "1", "method": "POST", "url": f"/users/lee%40example.com/contactFolders/{fid}/contacts",
              "headers": {"CONTENT-TYPE": "application/json", "prefer": 'IdType="ImmutableId"'},
              "body": {"@odata.type": "#microsoft.graph.contact", "givenName": "Imm"}}]
    iid = by_id(batch(graph, emulator, items))["1"]["body"]["id"]
    got = graph.get(f"{user}/contacts/{iid}", headers={"Prefer": 'IdType="ImmutableId"'}).json()
    assert got["id"] == iid


def test_batch_snake_case_depends_on_is_ignored_as_graph_does(emulator: EmulatorHandle,
                                                              graph: requests.Session) -> None:
    """Graph orders by ``dependsOn`` only; ``depends_on`` (sent by msgraph-sdk-python-core
    before its pull 996) is ignored: the request runs even though its "dependency" failed."""
    items = [
        {"id": "1", "method": "PATCH", "url": "/users/lee@example.com/contacts/AAMkGone=",
         "headers": JSON, "body": {"jobTitle": "x"}},
        {"id": "2", "method": "POST", "url": "/users/lee@example.com/contacts", "depends_on": ["1"],
         "headers": JSON, "body": {"givenName": "Unordered"}},
    ]
    answers = by_id(batch(graph, emulator, items))
    assert answers["1"]["status"] == 404
    assert answers["2"]["status"] == 201  # with dependsOn it would be 424 FailedDependency
    camel = [items[0], {**{k: v for k, v in items[1].items() if k != "depends_on"}, "dependsOn": ["1"]}]
    assert by_id(batch(graph, emulator, camel))["2"]["status"] == 424


def test_batch_depending_on_a_later_request_is_400(emulator: EmulatorHandle, graph: requests.Session) -> None:
    """Graph: "Invalid dependency for request Id" when dependsOn names a request listed after it."""
    item = {"method": "GET", "url": "/users/lee@example.com/contacts"}
    later = [{**item, "id": "1", "dependsOn": ["2"]}, {**item, "id": "2"}]
    r = batch(graph, emulator, later)
    assert r.status_code == 400 and "Invalid dependency for request Id '1'" in r.json()["error"]["message"]
    earlier = [{**item, "id": "2"}, {**item, "id": "1", "dependsOn": ["2"]}]
    assert {a["status"] for a in by_id(batch(graph, emulator, earlier)).values()} == {200}
