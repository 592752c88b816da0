"""A hook for progress of long loads, so the command can show a bar without the library
knowing about terminals (the pipeline runs headless under Prefect workers too)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
