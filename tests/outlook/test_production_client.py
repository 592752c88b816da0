"""The Outlook client through what production Graph does (spec/GRAPH_API.md), over real HTTP.

One test (or a few) per behaviour of issue 12, named after it, against the session
emulator set to that behaviour (tests/outlook/conftest.py resets it between tests).
"""

from __future__ import annotations

import time

import requests

from contactsync.outlook.extract import ensure_folder
from contactsync.outlook.load import OutlookWriter
from tests.outlook.conftest import actions, create_rows


def _control(emu, path: str, body: dict) -> None:
    requests.post(f"{emu.url}/_emulator/{path}", json=body, timeout=10).raise_for_status()


# -- 1. batches run in parallel inside -------------------------------------------------


def test_batch_parallel_inside_client_counts_inner_requests_no_429(emu, make_client) -> None:
    """200 creates as 10 batches of 20 with 50 ms a request: no inner request is throttled,
    and the load takes about what 4 places allow (200 x 50 ms / 4 = 2.5 s), not 4x less."""
    client = make_client()
    fid = ensure_folder(client, "CRM Contacts")
    _control(emu, "latency", {"ms": 50})
    emu.reset_stats()
    t0 = time.perf_counter()
    result = OutlookWriter(client, fid).apply(actions(create_rows(200)), None)
    wall = time.perf_counter() - t0
    stats = emu.stats()
    assert (result["status"] == "applied").all()
    assert stats["throttled"] == 0, stats
    assert stats["inner_requests"] == 200 and stats["batches"] == 10
    assert 2.5 <= wall < 2.5 * 1.6, wall


def test_batch_parallel_inside_pacer_places_of_a_batch(make_client) -> None:
    """A batch of 20 takes all 4 places, a batch of 3 three, a plain request one."""
    pacer = make_client().pacer
    assert [pacer.places_for(w) for w in (1, 3, 4, 20)] == [1, 3, 4, 4]
