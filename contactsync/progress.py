"""Hooks for progress, so the command can show a bar and each user's outcome as it comes
without the library knowing about terminals (the pipeline runs headless under Prefect
workers too): long loads report (user, done, total); the fan-out reports each user's
outcomes as soon as that user's cycles finish (issue 16: progress on long work).

One mechanism for both: a :class:`Hook` slot that a command fills for its duration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, ParamSpec

P = ParamSpec("P")


class Hook(Generic[P]):
    """One callback slot: empty by default (headless runs pay nothing), filled by a command
    for its duration with :meth:`installed`, called by the library where it has news."""

    def __init__(self) -> None:
        self._fn: Callable[P, None] | None = None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        if self._fn is not None:
            self._fn(*args, **kwargs)

    @contextmanager
    def installed(self, fn: Callable[P, None] | None) -> Iterator[None]:
        """``fn`` in the slot until the block ends (then whatever was there before)."""
        previous, self._fn = self._fn, fn
        try:
            yield
        finally:
            self._fn = previous


#: Called with (user, done, total) as a load advances.
load_progress: Hook[[str, int, int]] = Hook()
#: Called with one user's outcomes (contactsync.cycle.outcome.CycleOutcome) when they finish.
user_outcomes: Hook[[list[Any]]] = Hook()

# The names the callers use (the cycle reports loads, the fan-out finished users).
report = load_progress
installed = load_progress.installed
user_finished = user_outcomes
outcomes_installed = user_outcomes.installed
