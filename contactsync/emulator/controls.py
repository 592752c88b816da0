"""What the emulator adds around Graph for tests and rehearsals: counts, throttling, faults, latency.

Throttling follows Outlook's per-mailbox limits (spec/GRAPH_API.md): a sliding window of
requests (10,000 per 600 s) and a number of requests in flight (4). Each request inside a
``$batch`` takes its own place in the window.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = (401, 412, 429, 500, 503, "drop", "commit-then-fail")
#: Faults of the HTTP request itself (the token travels with it; a ``$batch`` is one
#: request, its method POST), not of the calls inside a batch.
HTTP_FAULTS = frozenset({401})


@dataclass
class Limits:
    requests_per_window: int = 10_000
    window_s: float = 600.0
    concurrent: int = 4


@dataclass
class Fault:
    """An injected failure for a share (``rate``) of requests with one of ``methods``."""

    status: int | str
    rate: float = 1.0
    retry_after: float | None = None
    methods: frozenset[str] | None = None  # None: every method
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random)
    count: int | None = None  # the next ``count`` matching requests only (then it is spent)
    skip: int = 0  # let this many matching requests pass first (an extra: "the third write")

    @classmethod
    def parse(cls, body: Any) -> Fault:
        if not isinstance(body, dict):
            raise ValueError("a fault is a JSON object")
        status = body.get("status")
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if status not in FAULT_KINDS:
            raise ValueError(f"status must be one of {FAULT_KINDS}")
        rate = float(body.get("rate", 1.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        methods = body.get("methods")
        seed = body.get("seed")
        retry = body.get("retry_after")
        count = body.get("count")
        if count is not None and int(count) < 0:
            raise ValueError("count must be >= 0")
        return cls(
            status=status,
            rate=rate,
            retry_after=float(retry) if retry is not None else None,
            methods=frozenset(m.upper() for m in methods) if methods else None,
            seed=seed,
            rng=random.Random(seed),
            count=int(count) if count is not None else None,
            skip=max(0, int(body.get("skip", 0))),
        )

    def describe(self) -> dict[str, Any]:
        return {"status": self.status, "rate": self.rate, "retry_after": self.retry_after,
                "methods": sorted(self.methods) if self.methods else None, "seed": self.seed,
                "count": self.count, "skip": self.skip}


def retry_after_header(seconds: float, minimum: int = 1) -> str:
    """Whole seconds, rounded up; throttling says at least 1, a fault says what it was told (0 too)."""
    return str(max(minimum, math.ceil(seconds)))


class Controls:
    """Thread-safe counters and knobs shared by every request of one emulator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[str, int] = defaultdict(int)
        self.reset()

    def reset(self) -> None:
        """Graph's own limits, no fault, no latency, zero counts (requests in flight stay counted)."""
        with self._lock:
            self.limits = Limits()
            self.fault: Fault | None = None
            self.latency_ms = 0.0
            self._window: dict[str, deque[float]] = defaultdict(deque)
            self._stats = self._zero()

    # stats

    @staticmethod
    def _zero() -> dict[str, Any]:
        return {"requests": 0, "by_method": {}, "inner_requests": 0, "throttled": 0, "batches": 0}

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = self._zero()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self._stats, "by_method": dict(self._stats["by_method"])}

    def count_request(self, method: str, *, batch: bool = False) -> None:
        with self._lock:
            self._stats["requests"] += 1
            by = self._stats["by_method"]
            by[method] = by.get(method, 0) + 1
            if batch:
                self._stats["batches"] += 1

    def count_inner(self) -> None:
        with self._lock:
            self._stats["inner_requests"] += 1

    def count_throttled(self) -> None:
        with self._lock:
            self._stats["throttled"] += 1

    # throttling

    def set_limits(self, body: dict[str, Any]) -> Limits:
        with self._lock:
            if "requests_per_window" in body:
                self.limits.requests_per_window = int(body["requests_per_window"])
            if "window_s" in body:
                self.limits.window_s = float(body["window_s"])
            if "concurrent" in body:
                self.limits.concurrent = int(body["concurrent"])
            self._window.clear()
            return self.limits

    def acquire_slot(self, mailbox: str) -> bool:
        """Take one of the mailbox's concurrent-request places; False if all are taken."""
        with self._lock:
            if self._inflight[mailbox] >= self.limits.concurrent:
                return False
            self._inflight[mailbox] += 1
            return True

    def release_slot(self, mailbox: str) -> None:
        with self._lock:
            self._inflight[mailbox] = max(0, self._inflight[mailbox] - 1)

    def take_window(self, mailbox: str) -> float | None:
        """Count a request in the mailbox's window; the seconds to wait if it is full."""
        now = time.monotonic()
        with self._lock:
            window = self._window[mailbox]
            horizon = now - self.limits.window_s
            while window and window[0] <= horizon:
                window.popleft()
            if len(window) >= self.limits.requests_per_window:
                return window[0] + self.limits.window_s - now if window else self.limits.window_s
            window.append(now)
            return None

    # faults

    def set_fault(self, fault: Fault | None) -> None:
        with self._lock:
            self.fault = fault

    def pick_fault(self, method: str, *, http: bool = False) -> Fault | None:
        """The fault to inflict on this request, if the dice (or the count) say so.

        ``http``: the HTTP request itself is asked (401 faults); else a Graph call, top-level
        or inside a ``$batch`` (every other kind).
        """
        with self._lock:
            fault = self.fault
            if fault is None or (fault.status in HTTP_FAULTS) != http:
                return None
            if fault.methods is not None and method.upper() not in fault.methods:
                return None
            if fault.count is not None:
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                if fault.count <= 0:
                    return None
                fault.count -= 1
                return fault
            return fault if fault.rng.random() < fault.rate else None
