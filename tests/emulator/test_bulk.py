"""A first sync's bulk over real HTTP: 1,000 creates through 50 ``$batch`` and a delta of 10,000
contacts in pages of the size asked for. That the emulator is not what the sync's benchmarks
measure is bench/speed_floors.py's to show (emulator_creates_1000, emulator_delta_10k)."""

from __future__ import annotations

import requests

from contactsync.emulator import EmulatorHandle

from .conftest import make_folder

JSON = {"Content-Type": "application/json"}


def test_1000_creates_through_50_batches_all_land(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    url = f"/users/lee@example.com/contactFolders/{fid}/contacts"
    for b in range(50):
        items = [{"id": str(i), "method": "POST", "url": url, "headers": JSON,
                  "body": {"givenName": f"G{b}-{i}", "surname": "S",
                           "emailAddresses": [{"address": f"g{b}.{i}@example.com"}]}} for i in range(20)]
        r = graph.post(f"{emulator.graph_url}/$batch", json={"requests": items})
        assert all(a["status"] == 201 for a in r.json()["responses"])
    assert emulator.store.current_seq(emulator.store.mailbox("lee@example.com")) == 1000


def test_delta_over_10000_contacts_pages_and_then_is_quiet(emulator: EmulatorHandle, graph: requests.Session, user: str) -> None:
    fid = make_folder(graph, user)
    store = emulator.store
    store.create_contacts(store.mailbox("lee@example.com"), fid,
                          [{"givenName": f"G{i}", "surname": "S", "emailAddresses": [{"address": f"{i}@x.org"}]}
                           for i in range(10_000)])
    url, seen, pages = f"{user}/contactFolders/{fid}/contacts/delta", 0, 0
    while url:
        body = graph.get(url, headers={"Prefer": "odata.maxpagesize=1000"}).json()
        seen, pages = seen + len(body["value"]), pages + 1
        url, link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
    assert (seen, pages) == (10_000, 50)  # 1,000 asked, 200 a page given (emulator/odata.py's cap)
    assert graph.get(link).json()["value"] == []
