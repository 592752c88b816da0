"""Outlook extract: the sync folder (R3) and its contacts as a canonical frame.

The folder is read with Graph's delta query and the answer applied to the previous
Outlook snapshot, so a quiet cycle costs exactly one request (DESIGN.md, step 1). The
first call, or a call whose token Graph no longer knows (410 / SyncStateNotFound), reads
the whole folder instead (``full``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pandas as pd

from contactsync.errors import SideUnreachable
from contactsync.model import OUTLOOK_COLUMNS, conform, empty_frame
from contactsync.outlook.client import GraphClient, GraphRequestError, GraphTransientError
from contactsync.outlook.mapping import CRM_TAG_EXPAND, contacts_to_frame

log = logging.getLogger(__name__)


def ensure_folder(client: GraphClient, name: str) -> str:
    """The id of the mailbox's contact folder ``name``, created if missing (R3).

    The folder is created with a POST on ``contactFolders`` (not O365's
    ``new_contact().save()`` path, which writes to the default folder). The POST is not
    retried blindly: after an unclear answer the folder is looked up again first, so a
    create that was committed without an answer never makes a second folder.
    """
    book = client.address_book()
    escaped = name.replace("'", "''")
    last: Exception | None = None
    for attempt in range(1, 6):
        folder = book.get_folder(folder_name=escaped)
        if folder is not None and folder.folder_id:
            return str(folder.folder_id)
        try:
            created = client.post_json("contactFolders", {"displayName": name}, retry=False)
            log.info("created the contact folder %r in %s (R3)", name, client.mailbox)
            return str(created["id"])
        except GraphTransientError as exc:
            last = exc
            time.sleep(exc.retry_after if exc.retry_after is not None else client.policy.backoff(attempt))
    raise SideUnreachable(
        f"could not create the contact folder {name!r} in {client.mailbox}: {last}",
        rule="R3",
        hint="check the mailbox exists and the app has Contacts.ReadWrite; run the cycle again",
    )


@dataclass(frozen=True)
class OutlookExtract:
    """One extract of the sync folder."""

    frame: pd.DataFrame  # the whole folder now (model.OUTLOOK_COLUMNS)
    delta_link: str  # where the next extract starts
    changed: pd.DataFrame  # the contacts the delta returned (added or changed)
    removed_ids: list[str] = field(default_factory=list)  # left the folder or deleted
    full: bool = False  # the whole folder was read (first call, or token expired)
    requests: int = 0  # HTTP requests this extract made


def _is_expired_token(exc: GraphRequestError) -> bool:
    return exc.status == 410 or "syncstatenotfound" in exc.code.lower() or (
        exc.status == 400 and "syncstate" in str(exc).lower()
    )


def _read_delta(client: GraphClient, url: str, params: dict | None, page_size: int) -> tuple[dict[str, Any], str, int]:
    """Follow one delta chain: {id: contact | None (removed)}, the delta link, pages read."""
    items: dict[str, Any] = {}
    delta_link: str | None = None
    pages = 0
    for page in client.iter_pages(url, params=params, page_size=page_size):
        pages += 1
        for item in page.get("value", []):
            cid = item.get("id")
            if cid is None:
                continue
            items[cid] = None if "@removed" in item else item
        delta_link = page.get("@odata.deltaLink") or delta_link
    if not delta_link:
        raise SideUnreachable(
            f"the delta of {client.mailbox}'s folder ended without a deltaLink",
            hint="a Graph or emulator fault: run the cycle again (a full read follows)",
        )
    return items, delta_link, pages


@dataclass(frozen=True)
class FolderChanges:
    """What one delta round returned: {id: contact | None (removed)} and where to go on."""

    items: dict[str, Any]
    delta_link: str
    full: bool  # a whole-folder read (first call, or the token had expired)
    requests: int

    @property
    def quiet(self) -> bool:
        """Nothing changed since the delta link the round started from."""
        return not self.full and not self.items


def read_changes(client: GraphClient, folder_id: str, *, delta_link: str | None, page_size: int = 500) -> FolderChanges:
    """One delta round: from ``delta_link``, or the whole folder without one (or when
    Graph no longer knows the token: 410 / SyncStateNotFound)."""
    start = client.url(f"contactFolders/{quote(folder_id, safe='')}/contacts/delta")
    start_params = {"$expand": CRM_TAG_EXPAND}
    full = not delta_link
    pages = 0
    try:
        if full:
            items, link, pages = _read_delta(client, start, start_params, page_size)
        else:
            items, link, pages = _read_delta(client, str(delta_link), None, page_size)
    except GraphRequestError as exc:
        if full or not _is_expired_token(exc):
            raise
        log.warning("delta token of %s expired (%s): reading the whole folder", client.mailbox, exc.status)
        full = True
        items, link, more = _read_delta(client, start, start_params, page_size)
        pages += 1 + more
    return FolderChanges(items, link, full, pages)


def apply_changes(changes: FolderChanges, snapshot: pd.DataFrame | None) -> OutlookExtract:
    """The folder now: ``snapshot`` (the stored mirror) with ``changes`` applied."""
    upserts = [c for c in changes.items.values() if c is not None]
    removed = [cid for cid, c in changes.items.items() if c is None]
    changed = contacts_to_frame(upserts) if upserts else empty_frame(OUTLOOK_COLUMNS)
    if changes.full:
        frame = changed
        removed = []
    elif snapshot is None:
        raise ValueError("apply_changes: a delta round needs the mirror it continues")
    elif not upserts and not removed:
        frame = snapshot  # a quiet round: the mirror as stored (already conformed)
    else:
        base = conform(snapshot, OUTLOOK_COLUMNS)
        drop = set(removed) | set(changed["outlook_id"])
        base = base[~base["outlook_id"].isin(drop)]
        parts = [f for f in (base, changed) if not f.empty]
        frame = conform(pd.concat(parts, ignore_index=True), OUTLOOK_COLUMNS) if parts else empty_frame(OUTLOOK_COLUMNS)
    return OutlookExtract(
        frame=frame,
        delta_link=changes.delta_link,
        changed=changed,
        removed_ids=removed,
        full=changes.full,
        requests=changes.requests,
    )


def extract(
    client: GraphClient,
    folder_id: str,
    *,
    snapshot: pd.DataFrame | None,
    delta_link: str | None,
    page_size: int = 500,
) -> OutlookExtract:
    """The folder's contacts: ``snapshot`` with the delta since ``delta_link`` applied.

    Without a delta link or a snapshot, reads the whole folder (a full delta). The
    returned ``delta_link`` must be stored only once the cycle's writes have committed
    (STYLE.md: state advances only after what it records).
    """
    link = delta_link if snapshot is not None else None
    return apply_changes(read_changes(client, folder_id, delta_link=link, page_size=page_size), snapshot)
