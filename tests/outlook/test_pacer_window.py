"""The pacer keeps a mailbox inside Graph's request window on the client side (no 429 storm)."""

from __future__ import annotations

import time

from contactsync.outlook import pacing as connection
from contactsync.outlook.pacing import Pacer


def test_pacer_holds_requests_beyond_the_window_until_places_free() -> None:
    pacer = Pacer(concurrent=4, window=(5, 0.3))
    started = time.monotonic()
    for _ in range(5):
        with pacer.slot():
            pass
    assert time.monotonic() - started < 0.2  # the first five fit at once
    with pacer.slot():
        pass
    waited = time.monotonic() - started
    assert waited >= 0.3 + connection.WINDOW_MARGIN_S - 0.05


def test_a_batch_counts_once_per_inner_request() -> None:
    pacer = Pacer(concurrent=4, window=(20, 0.3))
    started = time.monotonic()
    with pacer.slot(weight=20):
        pass
    with pacer.slot(weight=1):  # the window is full: this one waits for the batch's places
        pass
    assert time.monotonic() - started >= 0.3 + connection.WINDOW_MARGIN_S - 0.05
