"""Pacing: Graph's per-mailbox limits kept on the client side, so a bulk load never storms.

Outlook allows an app 4 concurrent requests per mailbox and 10,000 requests in 10
minutes, each request inside a ``$batch`` counted on its own; and Graph runs up to 4
requests of a batch at once, each in one of the 4 places (spec/GRAPH_API.md, "Throttling"
and "Batches run in parallel inside"). One :class:`Pacer` per mailbox and process holds
both, and everybody waits after a 429.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

#: Graph's Outlook limit: 4 concurrent requests per app and mailbox.
MAX_CONCURRENT = 4

#: Graph's per-mailbox request window (spec/GRAPH_API.md): 10,000 requests in 600 s, each
#: request inside a ``$batch`` counted. New pacers use it; a test or a benchmark against a
#: scaled-down emulator may set it before the first client of a mailbox is made.
MAILBOX_WINDOW: tuple[int, float] = (10_000, 600.0)
#: Seconds added to the window for clock granularity (places are freed by completion time).
WINDOW_MARGIN_S = 0.05


class Pacer:
    """At most ``concurrent`` places in use per mailbox (a ``$batch`` takes one per inner
    request Graph runs at once, up to 4), at most ``window[0]`` requests
    (inner ``$batch`` requests each counted) in any ``window[1]`` seconds; after a 429
    everybody waits.

    Keeping to the window on the client side is what makes a bulk load run at the
    throttle-limited rate without a storm of 429s (each of which costs a ``Retry-After``
    wait and a re-send). A request holds its places from the moment it leaves until its
    answer is back, and then for one window from that answer: the server counted it at
    some moment in between, so its place is surely free again when the pacer re-uses it.
    Shared by every client of the same mailbox in this process (see :func:`pacer_for`), so
    parallel loads of one user cannot exceed Graph's per-mailbox limit between them.
    """

    def __init__(
        self,
        concurrent: int = MAX_CONCURRENT,
        spacing_s: float = 0.05,
        window: tuple[int, float] | None = None,
    ) -> None:
        self.concurrent = concurrent
        self.spacing_s = spacing_s
        self.window_limit, self.window_s = window or MAILBOX_WINDOW
        self._lock = threading.Lock()
        self._places_free = threading.Condition(self._lock)
        self._places = 0  # concurrent places held (a $batch holds up to 4, one per running inner request)
        self._not_before = 0.0
        self._spaced_until = 0.0
        self._next_slot = 0.0
        self._done: deque[float] = deque()  # answer time of each counted request in the window
        self._in_flight = 0  # places held by requests not answered yet

    def _window_wait(self, now: float, weight: int) -> float:
        """Seconds until ``weight`` more requests fit in the window (lock held)."""
        horizon = self.window_s + WINDOW_MARGIN_S
        done = self._done
        while done and done[0] <= now - horizon:
            done.popleft()
        weight = min(weight, self.window_limit)
        over = len(done) + self._in_flight + weight - self.window_limit
        if over <= 0:
            return 0.0
        if over <= len(done):
            return max(0.0, done[over - 1] + horizon - now)
        return 0.05  # places held by requests in flight: look again shortly

    def places_for(self, weight: int) -> int:
        """Concurrent places a request of ``weight`` inner requests takes at Graph.

        Graph runs up to 4 requests of a ``$batch`` at once, each in one of the mailbox's
        4 places (spec/GRAPH_API.md, "Batches run in parallel inside"): a batch of 20
        takes all 4, so two batches in flight would overrun the mailbox.
        """
        return max(1, min(weight, self.concurrent))

    @contextmanager
    def slot(self, weight: int = 1) -> Iterator[None]:
        """Hold the concurrent places of a request counting ``weight`` in the window."""
        places = self.places_for(weight)
        with self._places_free:
            while self._places + places > self.concurrent:
                self._places_free.wait()
            self._places += places
        try:
            while True:
                with self._lock:
                    now = time.monotonic()
                    start = max(now, self._not_before, now + self._window_wait(now, weight))
                    if start <= now:
                        if now < self._spaced_until:
                            start = max(now, self._next_slot)
                            self._next_slot = start + self.spacing_s
                        self._in_flight += weight
                        break
                time.sleep(start - now)
            if start > now:
                time.sleep(start - now)
            try:
                yield
            finally:
                with self._lock:
                    self._in_flight -= weight
                    self._done.extend([time.monotonic()] * weight)
        finally:
            with self._places_free:
                self._places -= places
                self._places_free.notify_all()

    def throttled(self, retry_after: float) -> None:
        """A 429: hold every request of this mailbox for ``retry_after``, then space them."""
        with self._lock:
            now = time.monotonic()
            self._not_before = max(self._not_before, now + retry_after)
            self._spaced_until = max(self._spaced_until, self._not_before + 10.0)


_PACERS: dict[str, Pacer] = {}
_PACERS_LOCK = threading.Lock()


def pacer_for(base_url: str, mailbox: str, concurrent: int = MAX_CONCURRENT) -> Pacer:
    """The process-wide pacer of one mailbox."""
    key = f"{base_url.lower()}|{mailbox.lower()}"
    with _PACERS_LOCK:
        pacer = _PACERS.get(key)
        if pacer is None or pacer.concurrent != concurrent:
            pacer = _PACERS[key] = Pacer(concurrent)
        return pacer


