"""Delta as the Outlook extract uses it: a snapshot + every delta since = the folder, always.

Random edits (create, patch, delete, move out and back, permanent delete) interleaved with
delta reads of random page sizes, some of them with edits between the pages. After each
read, the snapshot the client keeps must equal the folder's real content (R8, R11, R17).
"""

from __future__ import annotations

import random

import pytest
import requests

from contactsync.emulator import EmulatorHandle

from .conftest import control, make_folder


def apply_delta(snapshot: dict[str, dict], graph: requests.Session, url: str, page: int,
                during: object = None) -> str:
    while True:
        body = graph.get(url, headers={"Prefer": f"odata.maxpagesize={page}"}).json()
        for item in body["value"]:
            if "@removed" in item:
                snapshot.pop(item["id"], None)
            else:
                snapshot[item["id"]] = item
        if "@odata.deltaLink" in body:
            return body["@odata.deltaLink"]
        if callable(during):
            during()
        url = body["@odata.nextLink"]


@pytest.mark.parametrize("seed", range(6))
def test_r8_snapshot_plus_deltas_equals_the_folder(emulator: EmulatorHandle, graph: requests.Session,
                                                   user: str, seed: int) -> None:
    rng = random.Random(seed)
    fid, other = make_folder(graph, user, "Sync"), make_folder(graph, user, "Other")
    sync_url = f"{user}/contactFolders/{fid}/contacts"
    upn = "lee@example.com"
    counter = iter(range(10_000))

    def in_folder(folder: str) -> list[dict]:
        return graph.get(f"{user}/contactFolders/{folder}/contacts", params={"$top": "1000"}).json()["value"]

    def edit() -> None:
        inside, outside = in_folder(fid), in_folder(other)
        op = rng.choice(["create", "create", "patch", "patch", "delete", "move_out", "move_in", "purge"])
        if op == "create" or not inside:
            graph.post(sync_url, json={"givenName": f"n{next(counter)}"})
        elif op == "patch":
            graph.patch(f"{user}/contacts/{rng.choice(inside)['id']}", json={"jobTitle": f"t{next(counter)}"})
        elif op == "delete":
            graph.delete(f"{user}/contacts/{rng.choice(inside)['id']}")
        elif op == "move_out":
            control(emulator, "POST", f"users/{upn}/contacts/{rng.choice(inside)['id']}/move", {"destinationId": other})
        elif op == "move_in" and outside:
            control(emulator, "POST", f"users/{upn}/contacts/{rng.choice(outside)['id']}/move", {"destinationId": fid})
        elif op == "purge":
            graph.post(f"{user}/contacts/{rng.choice(inside)['id']}/permanentDelete")

    for _ in range(5):
        edit()
    snapshot: dict[str, dict] = {}
    link = apply_delta(snapshot, graph, f"{sync_url}/delta", rng.randint(1, 4), during=edit)
    for _ in range(8):
        for _ in range(rng.randint(0, 6)):
            edit()
        during = edit if rng.random() < 0.6 else None
        if rng.random() < 0.3:  # start over, as after a lost state store
            snapshot = {}
            link = apply_delta(snapshot, graph, f"{sync_url}/delta", rng.randint(1, 2), during=during)
        else:
            link = apply_delta(snapshot, graph, link, rng.randint(1, 4), during=during)
        # What was edited during the pages shows up in the next delta at the latest.
        follow = dict(snapshot)
        link = apply_delta(follow, graph, link, 50)
        snapshot = follow
        truth = {c["id"]: c for c in in_folder(fid)}
        assert set(snapshot) == set(truth)
        for cid, contact in truth.items():
            assert snapshot[cid]["changeKey"] == contact["changeKey"]
