"""The emulator must not be the bottleneck of the sync's benchmarks: timings over real HTTP."""

from __future__ import annotations

import time

import requests

from contactsync.emulator import EmulatorHandle

from .conftest import make_folder

JSON = {"Content-Type": "application/json"}


def test_1000_creates_through_batch_are_fast(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    url = f"/users/lee@example.com/contactFolders/{fid}/contacts"
    t0 = time.perf_counter()
    for b in range(50):
        items = [{"id": str(i), "method": "POST", "url": url, "headers": JSON,
                  "body": {"givenName": f"G{b}-{i}", "surname": "S",
                           "emailAddresses": [{"address": f"g{b}.{i}@example.com"}]}} for i in range(20)]
        r = graph.post(f"{emulator.graph_url}/$batch", json={"requests": items})
        assert all(a["status"] == 201 for a in r.json()["responses"])
    elapsed = time.perf_counter() - t0
    print(f"\n1,000 creates in 50 $batch: {elapsed:.2f} s = {1000 / elapsed:,.0f} inner requests/s")
    assert elapsed < 5.0
    assert emulator.store.current_seq(emulator.store.mailbox("lee@example.com")) == 1000


def test_delta_over_10000_contacts_is_fast(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    store = emulator.store
    store.create_contacts(store.mailbox("lee@example.com"), fid,
                          [{"givenName": f"G{i}", "surname": "S", "emailAddresses": [{"address": f"{i}@x.org"}]}
                           for i in range(10_000)])
    t0 = time.perf_counter()
    url, seen, pages = f"{user}/contactFolders/{fid}/contacts/delta", 0, 0
    while url:
        body = graph.get(url, headers={"Prefer": "odata.maxpagesize=1000"}).json()
        seen, pages = seen + len(body["value"]), pages + 1
        url, link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert graph.get(link).json()["value"] == []
    quiet = time.perf_counter() - t0
    print(f"\nfull delta of 10,000 in {pages} pages: {full:.2f} s; quiet incremental delta: {quiet * 1000:.1f} ms")
    assert seen == 10_000
    assert full < 5.0 and quiet < 0.5
