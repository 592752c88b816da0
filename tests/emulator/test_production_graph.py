"""What production Graph does that a kind emulator would not (spec/GRAPH_API.md), over real HTTP.

One test (or a few) per behaviour of issue 12, named after it; the client's side of each
behaviour is in tests/outlook/test_production_client.py, the whole cycle in
tests/e2e/test_graph_production.py.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from contactsync.emulator import EmulatorHandle
from tests.fixtures.emulator import graph_session

from .conftest import control, make_contact, make_folder

JSON = {"Content-Type": "application/json"}
MBX = "/users/lee%40example.com"


def _batch(emulator: EmulatorHandle, items: list[dict]) -> dict[str, dict]:
    r = graph_session(emulator).post(f"{emulator.graph_url}/$batch", json={"requests": items})
    assert r.status_code == 200, r.text
    return {x["id"]: x for x in r.json()["responses"]}


def _gets(n: int, prefix: str = "") -> list[dict]:
    return [{"id": f"{prefix}{i}", "method": "GET", "url": f"{MBX}/contactFolders"} for i in range(n)]


# -- 1. batches run in parallel inside -------------------------------------------------


def test_batch_parallel_inside_runs_4_at_a_time(emulator: EmulatorHandle, user: str) -> None:
    """20 requests of one batch, 4 at a time, 100 ms each: ~5 rounds, all in a place."""
    control(emulator, "POST", "latency", {"ms": 100})
    t0 = time.perf_counter()
    answers = _batch(emulator, _gets(20))
    wall = time.perf_counter() - t0
    assert {a["status"] for a in answers.values()} == {200}
    assert 0.48 <= wall < 2.0, wall  # 5 rounds of 4: not 1 (all at once, 0.1 s) nor 20 (one by one, 2 s)
    stats = control(emulator, "GET", "stats").json()
    assert stats["inner_requests"] == 20 and stats["batches"] == 1 and stats["throttled"] == 0


def test_batch_parallel_inside_next_round_starts_when_the_last_ones_latency_is_over(
        emulator: EmulatorHandle, user: str, monkeypatch) -> None:
    """A batch's second round takes its places at the due time of the first (Graph's clock),
    not when the emulator's timers woke: the slop of 5 rounds would add up in every batch
    (issue 12). Read off the loop's clock, so it holds at any load."""
    control(emulator, "POST", "latency", {"ms": 50})
    emu = emulator.emulator
    served = emu._served
    placed: dict[str, float] = {}

    async def spy(request, req, mailbox, at=None):  # noqa: ANN001, ANN202 (wraps the private hook)
        import asyncio

        placed[req.query.get("k", "")] = asyncio.get_running_loop().time() if at is None else at
        return await served(request, req, mailbox, at)

    monkeypatch.setattr(emu, "_served", spy)
    items = [{"id": str(i), "method": "GET", "url": f"{MBX}/contactFolders?k={i}"} for i in range(8)]
    answers = _batch(emulator, items)
    assert {a["status"] for a in answers.values()} == {200}
    first = sorted(placed[str(i)] for i in range(4))
    second = sorted(placed[str(i)] for i in range(4, 8))
    assert second == pytest.approx([p + 0.05 for p in first], abs=1e-9)


def test_batch_parallel_inside_two_batches_get_mailbox_concurrency_429s(emulator: EmulatorHandle,
                                                                       user: str) -> None:
    """Two batches of 20 in flight want 8 places of 4: the extra inner requests get 429."""
    control(emulator, "POST", "latency", {"ms": 100})
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda p: _batch(emulator, _gets(20, p)), ["a", "b"]))
    throttled = [a for answers in both for a in answers.values() if a["status"] == 429]
    assert throttled, "two batches of 20 at once must overrun 4 places"
    assert all(a["body"]["error"]["code"] == "TooManyRequests" for a in throttled)
    assert all("MailboxConcurrency" in a["body"]["error"]["message"] for a in throttled)
    assert all(int(a["headers"]["Retry-After"]) >= 1 for a in throttled)
    assert control(emulator, "GET", "stats").json()["throttled"] == len(throttled)


def test_batch_parallel_inside_keeps_depends_on_order(emulator: EmulatorHandle, user: str) -> None:
    """dependsOn still orders requests when the others run in parallel."""
    graph = graph_session(emulator)
    fid = make_folder(graph, user)
    c = make_contact(graph, user, fid)
    items = [
        {"id": "1", "method": "PATCH", "url": f"{MBX}/contacts/{c['id']}", "headers": JSON,
         "body": {"jobTitle": "first"}},
        {"id": "2", "method": "PATCH", "url": f"{MBX}/contacts/{c['id']}", "headers": JSON,
         "body": {"jobTitle": "second"}, "dependsOn": ["1"]},
        *_gets(6, "g"),
    ]
    answers = _batch(emulator, items)
    assert answers["2"]["status"] == 200
    assert graph.get(f"{user}/contacts/{c['id']}").json()["jobTitle"] == "second"


def test_batch_parallel_inside_a_single_request_meets_a_full_batch(emulator: EmulatorHandle,
                                                                   user: str) -> None:
    """A plain request sent while a batch holds all 4 places gets 429 MailboxConcurrency."""
    control(emulator, "POST", "latency", {"ms": 200})
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(_batch, emulator, _gets(8))
        time.sleep(0.1)
        r = graph_session(emulator).get(f"{user}/contactFolders")
        running.result()
    assert r.status_code == 429 and "MailboxConcurrency" in r.json()["error"]["message"]




# -- 6. no lost updates: If-Match and 412 ----------------------------------------------


def test_if_match_stale_etag_gets_412_and_writes_nothing(emulator: EmulatorHandle, user: str) -> None:
    graph = graph_session(emulator)
    c = make_contact(graph, user, jobTitle="Buyer")
    read_etag = c["@odata.etag"]
    assert read_etag == f'W/"{c["changeKey"]}"'
    person = graph.patch(f"{user}/contacts/{c['id']}", json={"jobTitle": "Chief Buyer"})
    assert person.status_code == 200
    stale = graph.patch(f"{user}/contacts/{c['id']}", json={"jobTitle": "Sync"},
                        headers={"If-Match": read_etag})
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert graph.get(f"{user}/contacts/{c['id']}").json()["jobTitle"] == "Chief Buyer"
    gone = graph.delete(f"{user}/contacts/{c['id']}", headers={"If-Match": read_etag})
    assert gone.status_code == 412
    assert graph.get(f"{user}/contacts/{c['id']}").status_code == 200


def test_if_match_current_etag_or_star_writes(emulator: EmulatorHandle, user: str) -> None:
    graph = graph_session(emulator)
    c = make_contact(graph, user)
    ok = graph.patch(f"{user}/contacts/{c['id']}", json={"jobTitle": "A"}, headers={"If-Match": c["@odata.etag"]})
    assert ok.status_code == 200 and ok.json()["changeKey"] != c["changeKey"]
    star = graph.patch(f"{user}/contacts/{c['id']}", json={"jobTitle": "B"}, headers={"If-Match": "*"})
    assert star.status_code == 200
    inner = _batch(emulator, [{"id": "1", "method": "DELETE", "url": f"{MBX}/contacts/{c['id']}",
                               "headers": {"if-match": c["@odata.etag"]}}])
    assert inner["1"]["status"] == 412  # inside a $batch too (header names in any case)
    now = graph.get(f"{user}/contacts/{c['id']}").json()
    inner = _batch(emulator, [{"id": "1", "method": "DELETE", "url": f"{MBX}/contacts/{c['id']}",
                               "headers": {"If-Match": now["@odata.etag"]}}])
    assert inner["1"]["status"] == 204


def test_if_match_fault_412_answers_a_race_without_writing(emulator: EmulatorHandle, user: str) -> None:
    graph = graph_session(emulator)
    c = make_contact(graph, user, jobTitle="Buyer")
    assert control(emulator, "POST", "faults", {"status": 412, "count": 1, "methods": ["PATCH"]}).status_code == 200
    r = graph.patch(f"{user}/contacts/{c['id']}", json={"jobTitle": "X"})
    assert r.status_code == 412 and r.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert graph.patch(f"{user}/contacts/{c['id']}", json={"jobTitle": "X"}).status_code == 200  # spent


# -- 2. partial delta items ---------------------------------------------------------------


def _delta(graph, user: str, fid: str, link: str | None = None, **params: str) -> tuple[list[dict], str]:
    url: str | None = link or f"{user}/contactFolders/{fid}/contacts/delta"
    items: list[dict] = []
    while url:
        r = graph.get(url, params=None if link or "?" in url else params)
        assert r.status_code == 200, r.text
        items += r.json()["value"]
        url, link = r.json().get("@odata.nextLink"), r.json().get("@odata.deltaLink") or link
    return items, str(link)


def test_partial_delta_items_carry_only_changed_properties(emulator: EmulatorHandle, user: str) -> None:
    graph = graph_session(emulator)
    assert control(emulator, "POST", "delta", {"updated_items": "changed"}).json()["updated_items"] == "changed"
    fid = make_folder(graph, user)
    c = make_contact(graph, user, fid, jobTitle="Buyer", mobilePhone="+1 555 0100")
    _, link = _delta(graph, user, fid)
    graph.patch(f"{user}/contacts/{c['id']}", json={"jobTitle": "Chief Buyer", "mobilePhone": None}).raise_for_status()
    new = make_contact(graph, user, fid, givenName="Grace", surname="Hopper")
    items, _ = _delta(graph, user, fid, link)
    by_id = {i["id"]: i for i in items}
    partial = by_id[c["id"]]
    assert partial["jobTitle"] == "Chief Buyer" and partial["mobilePhone"] is None  # null = cleared
    assert "givenName" not in partial and "emailAddresses" not in partial  # unchanged: absent
    assert partial["changeKey"] and partial["lastModifiedDateTime"] and partial["@odata.etag"]
    assert by_id[new["id"]]["givenName"] == "Grace" and "emailAddresses" in by_id[new["id"]]  # new: whole


def test_partial_delta_items_default_full(emulator: EmulatorHandle, user: str) -> None:
    graph = graph_session(emulator)
    fid = make_folder(graph, user)
    c = make_contact(graph, user, fid)
    _, link = _delta(graph, user, fid)
    graph.patch(f"{user}/contacts/{c['id']}", json={"jobTitle": "CTO"}).raise_for_status()
    items, _ = _delta(graph, user, fid, link)
    assert items[0]["givenName"] == "Ada" and items[0]["jobTitle"] == "CTO"


# -- 3. no $expand inside delta ------------------------------------------------------------

EXPAND = "singleValueExtendedProperties($filter=id eq 'String {5c0b8a3e-8d2c-4f55-9a51-3c2b8a6f0a11} Name CrmContactId')"


def test_no_expand_in_delta_reject_answers_400(emulator: EmulatorHandle, user: str) -> None:
    graph = graph_session(emulator)
    control(emulator, "POST", "delta", {"expand": "reject"})
    fid = make_folder(graph, user)
    r = graph.get(f"{user}/contactFolders/{fid}/contacts/delta", params={"$expand": EXPAND})
    assert r.status_code == 400 and r.json()["error"]["code"] == "ErrorInvalidUrlQuery"
    assert graph.get(f"{user}/contactFolders/{fid}/contacts/delta").status_code == 200
    # a plain read of the folder still carries the $expand
    assert graph.get(f"{user}/contactFolders/{fid}/contacts", params={"$expand": EXPAND}).status_code == 200


def test_no_expand_in_delta_ignore_drops_it(emulator: EmulatorHandle, user: str) -> None:
    graph = graph_session(emulator)
    control(emulator, "POST", "delta", {"expand": "ignore"})
    fid = make_folder(graph, user)
    make_contact(graph, user, fid, singleValueExtendedProperties=[
        {"id": "String {5c0b8a3e-8d2c-4f55-9a51-3c2b8a6f0a11} Name CrmContactId", "value": "C1"}])
    items, _ = _delta(graph, user, fid, None, **{"$expand": EXPAND})
    assert items and all("singleValueExtendedProperties" not in i for i in items)
    listed = graph.get(f"{user}/contactFolders/{fid}/contacts", params={"$expand": EXPAND}).json()["value"]
    assert listed[0]["singleValueExtendedProperties"][0]["value"] == "C1"


# -- 4. sync state expires -------------------------------------------------------------------


def test_sync_state_expires_old_delta_and_skip_tokens_answer_410(emulator: EmulatorHandle, user: str) -> None:
    graph = graph_session(emulator)
    fid = make_folder(graph, user)
    for i in range(3):
        make_contact(graph, user, fid, givenName=f"P{i}")
    _, delta_link = _delta(graph, user, fid)
    first = graph.get(f"{user}/contactFolders/{fid}/contacts/delta", headers={"Prefer": "odata.maxpagesize=1"})
    skip_link = first.json()["@odata.nextLink"]
    r = control(emulator, "POST", "users/lee@example.com/expire-sync-state")
    assert r.status_code == 200
    for link in (delta_link, skip_link):
        gone = graph.get(link)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "SyncStateNotFound"
    items, fresh = _delta(graph, user, fid)  # a full delta starts a new sync state
    assert len(items) == 3 and graph.get(fresh).status_code == 200


# -- 5. tokens expire mid-run ---------------------------------------------------------------


def test_token_expires_401_fault_answers_the_next_n_requests(emulator: EmulatorHandle, user: str) -> None:
    graph = graph_session(emulator)
    assert control(emulator, "POST", "faults", {"status": 401, "count": 2, "skip": 1, "methods": ["GET"]}).status_code == 200
    codes = [graph.get(f"{user}/contactFolders") for _ in range(4)]
    assert [r.status_code for r in codes] == [200, 401, 401, 200]
    expired = codes[1]
    assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "Lifetime validation failed, the token is expired." in expired.json()["error"]["message"]
    assert "invalid_token" in expired.headers["WWW-Authenticate"]


def test_token_expires_401_meets_the_batch_envelope(emulator: EmulatorHandle, user: str) -> None:
    control(emulator, "POST", "faults", {"status": 401, "count": 1, "methods": ["POST"]})
    r = graph_session(emulator).post(f"{emulator.graph_url}/$batch", json={"requests": _gets(2)})
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"


# -- 7. whole-second times -------------------------------------------------------------------


def test_whole_second_times_as_graph_sends_them(emulator: EmulatorHandle, user: str) -> None:
    import re

    graph = graph_session(emulator)
    c = make_contact(graph, user)
    edited = graph.patch(f"{user}/contacts/{c['id']}", json={"jobTitle": "x"}).json()
    again = graph.patch(f"{user}/contacts/{c['id']}", json={"jobTitle": "y"}).json()
    whole = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
    for body in (c, edited, again):
        assert whole.match(body["createdDateTime"]) and whole.match(body["lastModifiedDateTime"]), body
    assert again["lastModifiedDateTime"] > edited["lastModifiedDateTime"]  # it still moves on every change
