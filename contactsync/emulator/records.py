"""What the emulator's store is made of: its SQLite schema, ids, times, and the records.

Kept apart from :mod:`~contactsync.emulator.store` (the transactions) so that the shapes
a mailbox is stored in can be read in one place.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from contactsync.emulator.props import full_shape

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mailbox (
    mid INTEGER PRIMARY KEY,
    upn TEXT NOT NULL UNIQUE COLLATE NOCASE,
    seq INTEGER NOT NULL DEFAULT 0,
    root_id TEXT NOT NULL,
    contacts_id TEXT NOT NULL,
    deleted_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS folder (
    id TEXT PRIMARY KEY,
    mid INTEGER NOT NULL,
    parent_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS folder_parent ON folder (mid, parent_id);
CREATE TABLE IF NOT EXISTS contact (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    iid TEXT NOT NULL UNIQUE,
    mid INTEGER NOT NULL,
    folder_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    change_key TEXT NOT NULL,
    props TEXT NOT NULL,
    ext TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS contact_folder_seq ON contact (folder_id, seq);
CREATE INDEX IF NOT EXISTS contact_folder_pk ON contact (folder_id, pk);
CREATE TABLE IF NOT EXISTS tombstone (
    folder_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    iid TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstone_folder_seq ON tombstone (folder_id, seq);
CREATE TABLE IF NOT EXISTS contact_change (
    pk INTEGER PRIMARY KEY,
    arrived INTEGER NOT NULL,
    props TEXT NOT NULL
);
"""
#: ``contact_change``: per contact, the seq at which it arrived in its folder (created or
#: moved in) and, per property, the seq of its last change: what a partial delta item
#: carries ("Updated instances are represented by their id with at least the properties
#: that have been updated", learn.microsoft.com/graph/delta-query-overview).

CONTACT_COLS = "pk, id, iid, mid, folder_id, seq, created, modified, change_key, props, ext"


class FolderExists(Exception):
    """A folder of that name already exists under that parent (Graph: 409)."""


class DistinguishedFolder(Exception):
    """The default Contacts or Deleted Items folder cannot be deleted or renamed."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def new_id(kind: str) -> str:
    """Ids shaped like Exchange's (long, URL-safe base64, ``=`` at the end)."""
    prefix = {"contact": "AAMkAGE1", "immutable": "AAkALgAA", "folder": "AAMkAGE1AAAuAAAA"}[kind]
    return prefix + _b64(os.urandom(30)) + "AAA="


def new_change_key() -> str:
    return "EQAAABYAAA" + _b64(os.urandom(12))


def iso(moment: datetime) -> str:
    """Whole seconds with ``Z``, as Graph sends ``createdDateTime`` and ``lastModifiedDateTime``
    (``"2014-10-19T23:08:24Z"``, learn.microsoft.com/graph/api/contact-get)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    """A stored time, whole seconds or (files written before) with fractions."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def later_than(previous: str | None) -> str:
    """Now in whole seconds, but after ``previous``: lastModifiedDateTime moves on every
    change (spec/GRAPH_API.md), so a second edit within the same second is stamped with
    the next one."""
    now = datetime.now(UTC).replace(microsecond=0)
    if previous:
        before = _parse_time(previous).replace(microsecond=0)
        if now <= before:
            now = before + timedelta(seconds=1)
    return iso(now)


@dataclass(frozen=True)
class Mailbox:
    mid: int
    upn: str
    root_id: str
    contacts_id: str
    deleted_id: str


@dataclass(frozen=True)
class Folder:
    id: str
    mid: int
    parent_id: str
    name: str
    kind: str  # "contacts" | "deleteditems" | "user"


@dataclass(frozen=True)
class Contact:
    """A stored contact; its properties stay JSON text until asked for.

    ``props_text`` is the full Graph shape of the writable properties (every property,
    null/[]/{} when unset), so a delta page is assembled from stored text without a
    parse and a dump per contact.
    """

    pk: int
    id: str
    iid: str
    mid: int
    folder_id: str
    seq: int
    created: str
    modified: str
    change_key: str
    props_text: str
    ext_text: str

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Contact:
        return cls(*row[:11])

    @cached_property
    def props(self) -> dict[str, Any]:
        return json.loads(self.props_text)

    @cached_property
    def ext(self) -> dict[str, str | None]:
        return json.loads(self.ext_text) if self.ext_text != "{}" else {}


def props_json(props: dict[str, Any]) -> str:
    return json.dumps(full_shape(props), separators=(",", ":"))


def ext_json(ext: dict[str, str | None]) -> str:
    return json.dumps(ext, separators=(",", ":"))


@dataclass(frozen=True)
class Removed:
    """A tombstone: the contact left the folder at ``seq``."""

    id: str
    iid: str
    seq: int
    reason: str  # "changed" (moved) | "deleted"
