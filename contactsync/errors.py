"""Errors named after what the user sees, classed by what happens next.

One place, :func:`show_error`, turns them into the message a user reads (with the fix) and
an exit code (spec/INTERFACE.md); every command of the CLI goes through it. Retry
policies (Prefect task retries, the Graph client) catch only :class:`TransientError`; a
:class:`RecordError` fails its own record (quarantined, R19) and the cycle goes on. The
mass-change guard (R16) is not an error: it is a cycle outcome (``guard-stopped``, exit 3).
"""

from __future__ import annotations

import sys
from typing import TextIO


class ContactSyncError(Exception):
    """Base class: carries the record, the rule and what to do."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        record_id: str | None = None,
        rule: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.record_id = record_id
        self.rule = rule
        self.hint = hint

    def describe(self) -> str:
        """The one-paragraph message shown to the user."""
        parts = [self.message]
        if self.record_id:
            parts.append(f"record: {self.record_id}")
        if self.rule:
            parts.append(f"rule: {self.rule}")
        text = " | ".join(parts)
        if self.hint:
            text += f"\n  what to do: {self.hint}"
        return text


class ConfigError(ContactSyncError):
    """The configuration file or the command line is wrong (exit code 2)."""

    exit_code = 2


class TransientError(ContactSyncError):
    """Worth retrying: throttling, 5xx, dropped connections, a lost database connection."""


class FatalError(ContactSyncError):
    """Retrying will not help (a 4xx other than 429, a schema mismatch, bad credentials)."""


class SideUnreachable(FatalError):
    """A side (CRM or Outlook) could not be reached after bounded retries (exit code 1)."""


class RecordError(ContactSyncError):
    """One record cannot be written as it is: it is quarantined (R19), the rest goes on."""


class LockedError(ContactSyncError):
    """Another cycle for the same user holds the lock (exit code 4)."""

    exit_code = 4


def show_error(exc: ContactSyncError, stream: TextIO | None = None) -> int:
    """Show ``exc`` as users read it (``contact-sync: ...`` and what to do) on stderr and
    return its exit code: the one place a command turns an error into output."""
    print(f"contact-sync: {exc.describe()}", file=stream or sys.stderr)
    return exc.exit_code
