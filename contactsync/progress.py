"""Hooks for progress, so the command can show a bar and each user's outcome as it comes
without the library knowing about terminals (the pipeline runs headless under Prefect
workers too): long loads report (user, done, total); the fan-out reports each user's
outcomes as soon as that user's cycles finish (issue 16: progress on long work)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: Called with (user, done, total) as a load advances.
ProgressHook = Callable[[str, int, int], None]
_hook: ProgressHook | None = None


def report(user: str, done: int, total: int) -> None:
    """Tell the installed hook (if any) how far a load is."""
    if _hook is not None:
        _hook(user, done, total)


@contextmanager
def installed(hook: ProgressHook | None) -> Iterator[None]:
    """Install ``hook`` for the duration of a command."""
    global _hook
    previous, _hook = _hook, hook
    try:
        yield
    finally:
        _hook = previous


#: Called with one user's outcomes (contactsync.cycle.outcome.CycleOutcome) when they finish.
OutcomeHook = Callable[[list[Any]], None]
_outcome_hook: OutcomeHook | None = None


def user_finished(outcomes: list[Any]) -> None:
    """Tell the installed outcome hook (if any) that a user's cycles ended with ``outcomes``."""
    if _outcome_hook is not None:
        _outcome_hook(outcomes)


@contextmanager
def outcomes_installed(hook: OutcomeHook | None) -> Iterator[None]:
    """Install ``hook`` for each user's outcomes for the duration of a command."""
    global _outcome_hook
    previous, _outcome_hook = _outcome_hook, hook
    try:
        yield
    finally:
        _outcome_hook = previous
