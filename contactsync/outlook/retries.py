"""Retries: bounded by one deadline for the whole side, whatever retries sit above it.

The contract (spec/INTERFACE.md) is "failed after bounded retries, at most about 2
minutes". A budget per request would multiply: every request of a cycle, and every
Prefect task retry above them, would get its own. So the budget is a :class:`Deadline`
kept in the per-cycle Outlook client: it starts when the first request that failed was
*sent* (a request that hangs counts from its start) and ends when a request succeeds; a
Prefect task retried meets the same deadline, and every read timeout is cut to what is
left of it. One request is retried with tenacity (:func:`retrying`), honouring
``Retry-After`` or backing off exponentially with jitter.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type

from contactsync.errors import SideUnreachable
from contactsync.outlook.errors import GraphTransientError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Read timeout of one request when the deadline leaves more (seconds).
READ_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0


@dataclass
class Deadline:
    """The side's retry budget: ``budget_s`` seconds without one successful answer."""

    budget_s: float = 120.0
    _since: float | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def failed(self, sent_at: float) -> None:
        """A request sent at ``sent_at`` (monotonic) got no usable answer."""
        with self._lock:
            if self._since is None or sent_at < self._since:
                self._since = sent_at

    def succeeded(self) -> None:
        with self._lock:
            self._since = None

    def elapsed(self, now: float | None = None) -> float:
        with self._lock:
            since = self._since
        return 0.0 if since is None else (now or time.monotonic()) - since

    def left(self, now: float | None = None) -> float:
        return self.budget_s - self.elapsed(now)

    def exceeded_by(self, wait: float) -> bool:
        """Whether waiting ``wait`` more seconds would go past the deadline."""
        with self._lock:
            since = self._since
        return since is not None and time.monotonic() - since + wait > self.budget_s


@dataclass
class RetryPolicy:
    """How to wait between attempts, and the side's :class:`Deadline` they all share."""

    max_wait_s: float = 120.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    read_timeout_s: float = READ_TIMEOUT_S
    deadline: Deadline = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = Deadline(self.max_wait_s)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (attempt 1, 2, ...)."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)

    def timeout(self) -> tuple[float, float]:
        """(connect, read) timeouts of the next attempt: never past the deadline."""
        left = max(1.0, self.deadline.left())
        return min(CONNECT_TIMEOUT_S, left), min(self.read_timeout_s, left)

    def wait_for(self, attempt: int, retry_after: float | None) -> float:
        return retry_after if retry_after is not None else self.backoff(attempt)

    def unreachable(self, what: str, attempts: int, reason: str) -> SideUnreachable:
        return SideUnreachable(
            f"Microsoft Graph did not answer {what} after {attempts} attempts in "
            f"{self.deadline.elapsed():.1f} s (last: {reason})",
            hint="check the network and Graph's service health; the next cycle "
            "resumes where this one stopped",
        )


def retrying(policy: RetryPolicy, what: str, attempt_once: Callable[[], T]) -> T:
    """``attempt_once()`` until it does not raise :class:`GraphTransientError`, within the
    deadline; then :class:`~contactsync.errors.SideUnreachable`."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = exc.retry_after if isinstance(exc, GraphTransientError) else None
        return policy.wait_for(state.attempt_number, hint)

    def stop(state: RetryCallState) -> bool:
        return policy.deadline.exceeded_by(state.upcoming_sleep)

    def give_up(state: RetryCallState) -> T:
        exc = state.outcome.exception() if state.outcome else None
        raise policy.unreachable(what, state.attempt_number, str(exc).split(": ", 1)[-1]) from None

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info("Graph %s: %s; retrying in %.2f s", what, exc, state.upcoming_sleep)

    runner = Retrying(
        retry=retry_if_exception_type(GraphTransientError), wait=wait, stop=stop,
        retry_error_callback=give_up, before_sleep=before_sleep, sleep=time.sleep,
    )
    return runner(attempt_once)
