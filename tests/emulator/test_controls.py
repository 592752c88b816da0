"""Throttling, faults, latency and stats: what the client's retries and the benchmarks rely on."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from contactsync.emulator import EmulatorHandle
from tests.fixtures.emulator import graph_session

from .conftest import control, make_contact

JSON = {"Content-Type": "application/json"}


def test_throttling_window_gives_429_with_retry_after(emulator: EmulatorHandle, graph: requests.Session,
                                                      user: str) -> None:
    assert control(emulator, "POST", "limits", {"requests_per_window": 3, "window_s": 30}).status_code == 200
    assert [graph.get(f"{user}/contacts").status_code for _ in range(3)] == [200, 200, 200]
    r = graph.get(f"{user}/contacts")
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "TooManyRequests"
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    # Per mailbox: another mailbox is not throttled.
    assert graph.get(f"{emulator.graph_url}/users/other@example.com/contacts").status_code == 200


def test_throttling_window_slides(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    control(emulator, "POST", "limits", {"requests_per_window": 2, "window_s": 0.3})
    assert graph.get(f"{user}/contacts").status_code == 200
    assert graph.get(f"{user}/contacts").status_code == 200
    assert graph.get(f"{user}/contacts").status_code == 429
    time.sleep(0.35)
    assert graph.get(f"{user}/contacts").status_code == 200


def test_concurrency_limit_gives_429(emulator: EmulatorHandle, user: str) -> None:
    control(emulator, "POST", "limits", {"concurrent": 2})
    control(emulator, "POST", "latency", {"ms": 300})

    def one(_: int) -> requests.Response:
        return graph_session(emulator).get(f"{user}/contacts")

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(200) >= 1 and codes.count(429) >= 3, codes
    assert all(r.headers.get("Retry-After") for r in answers if r.status_code == 429)
    assert control(emulator, "GET", "stats").json()["throttled"] == codes.count(429)


def test_latency_is_added(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    assert control(emulator, "POST", "latency", {"ms": 150}).json() == {"ms": 150.0}
    t0 = time.perf_counter()
    graph.get(f"{user}/contacts")
    assert time.perf_counter() - t0 >= 0.15
    control(emulator, "POST", "latency", {"ms": 0})


@pytest.mark.parametrize("status", [429, 500, 503])
def test_fault_status_answers_without_writing(emulator: EmulatorHandle, graph: requests.Session, user: str,
                                              status: int) -> None:
    r = control(emulator, "POST", "faults", {"status": status, "rate": 1.0, "retry_after": 7, "methods": ["POST"]})
    assert r.status_code == 200
    r = graph.post(f"{user}/contacts", json={"givenName": "x"})
    assert r.status_code == status and "error" in r.json()
    assert r.headers["Retry-After"] == "7"
    assert graph.get(f"{user}/contacts").status_code == 200  # GET is not in "methods"
    assert control(emulator, "DELETE", "faults").status_code == 204
    assert graph.get(f"{user}/contacts").json()["value"] == []  # the faulted POST wrote nothing
    assert graph.post(f"{user}/contacts", json={"givenName": "x"}).status_code == 201


def test_fault_drop_closes_the_connection(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    control(emulator, "POST", "faults", {"status": "drop", "rate": 1.0, "methods": ["GET"]})
    with pytest.raises(requests.ConnectionError):
        graph_session(emulator).get(f"{user}/contacts")
    control(emulator, "DELETE", "faults")
    assert graph_session(emulator).get(f"{user}/contacts").status_code == 200


def test_fault_commit_then_fail_applies_the_write(emulator: EmulatorHandle, graph: requests.Session,
                                                  user: str) -> None:
    c = make_contact(graph, user)
    control(emulator, "POST", "faults", {"status": "commit-then-fail", "rate": 1.0, "methods": ["PATCH", "POST"]})
    r = graph.patch(f"{user}/contacts/{c['id']}", json={"jobTitle": "Applied"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "ServiceUnavailable"
    r = graph.post(f"{user}/contacts", json={"givenName": "Created anyway"})
    assert r.status_code == 503
    control(emulator, "DELETE", "faults")
    listed = {x["givenName"]: x for x in graph.get(f"{user}/contacts").json()["value"]}
    assert listed["Ada"]["jobTitle"] == "Applied"
    assert "Created anyway" in listed


def test_fault_rate_and_seed_are_reproducible(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    def run() -> list[int]:
        control(emulator, "POST", "faults", {"status": 500, "rate": 0.5, "seed": 42})
        codes = [graph.get(f"{user}/contacts").status_code for _ in range(20)]
        control(emulator, "DELETE", "faults")
        return codes

    first = run()
    assert first == run()
    assert 3 <= first.count(500) <= 17
    assert control(emulator, "POST", "faults", {"status": 418}).status_code == 400


def test_fault_retry_after_zero_is_kept(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    control(emulator, "POST", "faults", {"status": 429, "rate": 1.0, "retry_after": 0})
    assert graph.get(f"{user}/contacts").headers["Retry-After"] == "0"
    control(emulator, "POST", "faults", {"status": "commit-then-fail", "retry_after": 0})
    assert graph.get(f"{user}/contacts").headers["Retry-After"] == "0"


def test_faults_apply_to_inner_batch_requests_by_method(emulator: EmulatorHandle, graph: requests.Session) -> None:
    control(emulator, "POST", "faults", {"status": 503, "rate": 1.0, "methods": ["POST"]})
    items = [
        {"id": "w", "method": "POST", "url": "/users/lee@example.com/contacts", "headers": JSON,
         "body": {"givenName": "x"}},
        {"id": "r", "method": "GET", "url": "/users/lee@example.com/contacts"},
    ]
    r = graph.post(f"{emulator.graph_url}/$batch", json={"requests": items})
    assert r.status_code == 200
    answers = {a["id"]: a["status"] for a in r.json()["responses"]}
    assert answers == {"w": 503, "r": 200}


def test_inner_drop_loses_the_whole_batch_answer(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    control(emulator, "POST", "faults", {"status": "drop", "rate": 1.0, "methods": ["PATCH"]})
    items = [
        {"id": "1", "method": "POST", "url": "/users/lee@example.com/contacts", "headers": JSON,
         "body": {"givenName": "before"}},
        {"id": "2", "method": "PATCH", "url": "/users/lee@example.com/contacts/x", "headers": JSON,
         "body": {"givenName": "y"}, "dependsOn": ["1"]},
    ]
    with pytest.raises(requests.ConnectionError):
        graph_session(emulator).post(f"{emulator.graph_url}/$batch", json={"requests": items})
    control(emulator, "DELETE", "faults")
    assert [c["givenName"] for c in graph.get(f"{user}/contacts").json()["value"]] == ["before"]


def test_stats_count_requests_batches_and_inner(emulator: EmulatorHandle, graph: requests.Session,
                                                user: str) -> None:
    graph.get(f"{user}/contacts")
    graph.post(f"{user}/contacts", json={"givenName": "a"})
    requests.get(f"{user}/contacts", timeout=10)  # 401 still counts as received
    items = [{"id": str(i), "method": "GET", "url": "/users/lee@example.com/contacts"} for i in range(3)]
    graph.post(f"{emulator.graph_url}/$batch", json={"requests": items})
    control(emulator, "GET", "users/lee@example.com/deleted")  # control endpoints never count
    stats = control(emulator, "GET", "stats").json()
    assert stats == {"requests": 4, "by_method": {"GET": 2, "POST": 2}, "inner_requests": 3,
                     "throttled": 0, "batches": 1}
    reset = control(emulator, "POST", "stats/reset").json()
    assert reset["requests"] == 0 and reset["by_method"] == {} and reset["inner_requests"] == 0


def test_move_endpoint_needs_known_contact_and_folder(emulator: EmulatorHandle, graph: requests.Session,
                                                      user: str) -> None:
    c = make_contact(graph, user)
    r = control(emulator, "POST", f"users/lee@example.com/contacts/{c['id']}/move", {"destinationId": "nope"})
    assert r.status_code == 404
    r = control(emulator, "POST", "users/lee@example.com/contacts/nope/move", {"destinationId": "contacts"})
    assert r.status_code == 404


def test_seed_and_reset_extras(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    assert control(emulator, "GET", "health").json() == {"ok": True}
    r = control(emulator, "POST", "users/lee@example.com/seed",
                {"contacts": [{"givenName": f"s{i}"} for i in range(3)]})
    assert r.status_code == 201 and len(r.json()["ids"]) == 3
    listed = graph.get(f"{user}/contacts").json()["value"]
    assert [c["id"] for c in listed] == r.json()["ids"]
    assert control(emulator, "POST", "users/lee@example.com/seed", {"contacts": [{"bogus": 1}]}).status_code == 400
    control(emulator, "POST", "limits", {"requests_per_window": 1})
    assert control(emulator, "POST", "reset").status_code == 204
    assert control(emulator, "GET", "stats").json()["requests"] == 0
    assert graph.get(f"{user}/contacts").json()["value"] == []  # mailboxes forgotten, limits back
    assert graph.get(f"{user}/contacts").status_code == 200


def test_concurrent_writers_lose_nothing(emulator: EmulatorHandle) -> None:
    """Many clients at once (the fan-out over users): every write lands, each delta sees it."""
    control(emulator, "POST", "limits", {"concurrent": 100})

    def writer(n: int) -> list[int]:
        s = graph_session(emulator)
        user = f"{emulator.graph_url}/users/u{n % 3}@example.com"
        return [s.post(f"{user}/contacts", json={"givenName": f"w{n}-{i}"}).status_code for i in range(10)]

    with ThreadPoolExecutor(8) as pool:
        codes = [c for batch in pool.map(writer, range(12)) for c in batch]
    assert codes == [201] * 120
    s = graph_session(emulator)
    total = 0
    for m in range(3):
        body = s.get(f"{emulator.graph_url}/users/u{m}@example.com/contactFolders/contacts/contacts/delta",
                     headers={"Prefer": "odata.maxpagesize=1000"}).json()
        total += len({c["id"] for c in body["value"]})
    assert total == 120
