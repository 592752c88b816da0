"""The sync's words, stated once: each vocabulary is a ``Literal`` type (for the type
checker and the settings' validation) and the tuple of its values (for CLI choices,
checks and messages). Config, the plan, the state store and the CLI all take them from
here, so a new policy or status is added in one place.
"""

from __future__ import annotations

from typing import Literal, get_args

#: R9: who wins a conflict.
Policy = Literal["latest", "crm", "outlook"]
POLICIES: tuple[Policy, ...] = get_args(Policy)

#: R10: which way values flow (per sync, or per field).
Direction = Literal["two-way", "crm-to-outlook", "outlook-to-crm"]
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)

#: R7a: when a new link's Outlook contact gets its CrmContactId tag (config.SyncSettings).
TagLinks = Literal["with-write", "at-link"]
TAG_LINKS: tuple[TagLinks, ...] = get_args(TagLinks)

#: The two systems a record or an action belongs to.
Side = Literal["crm", "outlook"]
SIDES: tuple[Side, ...] = get_args(Side)

#: A run's status in the state store (and, but for ``running``, a cycle's outcome).
RunStatus = Literal["running", "ok", "dry-run", "guard-stopped", "failed", "locked"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)

#: A journal entry's state (R18): new -> started -> applied | failed.
JournalState = Literal["new", "started", "applied", "failed"]
JOURNAL_STATES: tuple[JournalState, ...] = get_args(JournalState)

#: A link's status: ``stopped`` keeps the row of a pair whose Outlook copy stays (R12).
LinkStatus = Literal["active", "stopped"]
LINK_STATUSES: tuple[LinkStatus, ...] = get_args(LinkStatus)
