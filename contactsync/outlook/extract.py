"""Outlook extract: the sync folder (R3) and its contacts as a canonical frame.

The folder is read with Graph's delta query and the answer applied to the previous
Outlook snapshot, so a quiet cycle costs exactly one request (DESIGN.md, step 1). The
first call, or a call whose token Graph no longer knows (410 / SyncStateNotFound), reads
the whole folder instead (``full``), starting over when its own skip token expires.

What production Graph does, and how this module copes (spec/GRAPH_API.md):
- delta items may be partial: an updated contact may carry only its id and the changed
  properties; it is merged over the stored copy (:func:`merge_items`), never put in its
  place: an absent property keeps its value, one sent as null is cleared;
- contact delta documents ``$select`` only: the delta is asked without ``$expand``, and
  the CrmContactId tags (R7a) are read where they are needed with a plain read of the
  folder that carries the ``$expand`` (:func:`read_tags`): every contact of a full read,
  and the contacts of a delta round the mirror does not hold yet (a stored one's
  tag, None included, is known);
- sync state expires: 410 / ``SyncStateNotFound`` / ``resyncRequired`` start a full read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from contactsync.errors import SideUnreachable
from contactsync.model import OUTLOOK_COLUMNS, OUTLOOK_TIMES, conform, empty_frame
from contactsync.outlook.client import GraphClient, GraphRequestError, GraphTransientError
from contactsync.outlook.mapping import (
    ADDRESS_PROPS,
    EMAIL_INDEX,
    SCALAR_PROPS,
    contact_to_row,
    contacts_to_frame,
    rows_to_frame,
    text_or_none,
)
from contactsync.outlook.tags import TAG_PAGE, read_tags, with_tags

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
    text = f"{exc.code} {exc}".lower()
    return exc.status == 410 or "syncstatenotfound" in text or "resyncrequired" in text or (
        exc.status == 400 and "syncstate" in text
    )


#: Full reads whose own skip token expired half-way, started over at most this often.
FULL_READ_ATTEMPTS = 3


def _read_delta(
    client: GraphClient, url: str, params: dict | None, page_size: int, *, as_rows: bool = False
) -> tuple[dict[str, Any], str, int]:
    """Follow one delta chain: {id: contact | None (removed)}, the delta link, pages read.

    ``as_rows``: each contact is kept as its canonical row (:func:`contact_to_row`) as its
    page arrives, not as Graph JSON: a full read needs nothing else of it, and 75,000 raw
    contacts held at once cost ~200 MB of a first sync's peak where their rows cost ~60 MB
    (issue 15, bench/README.md).
    """
    items: dict[str, Any] = {}
    delta_link: str | None = None
    pages = 0
    for page in client.iter_pages(url, params=params, page_size=page_size):
        pages += 1
        for item in page.get("value", []):
            cid = item.get("id")
            if cid is None:
                continue
            items[cid] = None if "@removed" in item else (contact_to_row(item) if as_rows else item)
        delta_link = page.get("@odata.deltaLink") or delta_link
    if not delta_link:
        raise SideUnreachable(
            f"the delta of {client.mailbox}'s folder ended without a deltaLink",
            hint="a Graph or emulator fault: run the cycle again (a full read follows)",
        )
    return items, delta_link, pages


TagReader = Callable[[list[str], int], dict[str, str | None]]


@dataclass(frozen=True)
class FolderChanges:
    """What one delta round returned: {id: contact | None (removed)} and where to go on."""

    items: dict[str, Any]
    delta_link: str
    full: bool  # a whole-folder read (first call, or the token had expired)
    requests: int
    #: reads the tags of the given contacts (folder size given); set for delta rounds
    read_tags: TagReader | None = None
    #: the items are canonical rows already (a full read: _read_delta's ``as_rows``)
    rows: bool = False

    @property
    def quiet(self) -> bool:
        """Nothing changed since the delta link the round started from."""
        return not self.full and not self.items


def read_changes(client: GraphClient, folder_id: str, *, delta_link: str | None, page_size: int = 500) -> FolderChanges:
    """One delta round: from ``delta_link``, or the whole folder without one (or when
    Graph no longer knows the token: 410 / SyncStateNotFound / resyncRequired).

    A full read whose own skip token expires half-way starts over (a few times at most).
    Its tags are read beside it (:func:`read_tags`); a delta round's are read by
    :func:`apply_changes` for the contacts the mirror does not hold.
    """
    start = client.url(f"contactFolders/{quote(folder_id, safe='')}/contacts/delta")
    pages = 0
    if delta_link:
        try:
            items, link, pages = _read_delta(client, str(delta_link), None, page_size)
            return FolderChanges(items, link, False, pages,
                                 read_tags=lambda ids, size: read_tags(client, folder_id, ids, size))
        except GraphRequestError as exc:
            if not _is_expired_token(exc):
                raise
            log.warning("delta token of %s expired (%s %s): reading the whole folder",
                        client.mailbox, exc.status, exc.code)
            pages += 1
    with ThreadPoolExecutor(1, thread_name_prefix="graph-tags") as pool:
        # The tags' plain read runs beside the delta chain (each takes its own place).
        tags_read = pool.submit(read_tags, client, folder_id, None)
        for attempt in range(1, FULL_READ_ATTEMPTS + 1):
            try:
                items, link, more = _read_delta(client, start, None, page_size, as_rows=True)
                break
            except GraphRequestError as exc:
                if not _is_expired_token(exc) or attempt == FULL_READ_ATTEMPTS:
                    raise
                log.warning("the full read of %s lost its sync state half-way (%s): starting over",
                            client.mailbox, exc.status)
                pages += 1
        tags = tags_read.result()
    pages += more
    pages += max(1, -(-len(tags) // TAG_PAGE))
    for cid, tag in tags.items():  # the tags beside the rows, as with_tags puts them in items
        row = items.get(cid)
        if row is not None:
            row["crm_tag"] = text_or_none(tag)
    return FolderChanges(items, link, True, pages, rows=True)


_PROPERTY_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("outlook_id",),
    "changeKey": ("change_key",),
    "createdDateTime": ("outlook_created",),
    "lastModifiedDateTime": ("outlook_modified",),
    "singleValueExtendedProperties": ("crm_tag",),
    **{prop: (field,) for field, prop in SCALAR_PROPS.items()},
    "emailAddresses": tuple(EMAIL_INDEX),
    "businessPhones": ("work_phone", "business_phones_rest"),
    "homePhones": ("home_phone",),
    "birthday": ("birthday",),
    "businessAddress": tuple(ADDRESS_PROPS),
    "categories": ("categories",),
}


def merge_items(
    items: list[dict[str, Any]], snapshot: pd.DataFrame | None, at: np.ndarray | None = None
) -> pd.DataFrame:
    """Delta items as rows, each merged over its stored copy where there is one.

    "Updated instances are represented by their id with at least the properties that have
    been updated" (learn.microsoft.com/graph/delta-query-overview): only the columns of
    the properties an item carries are taken from it; an absent property keeps the stored
    value, one sent as null is cleared. Column by column: each column is the item's value
    where the item carries a property of that column or is not stored, else the stored one
    (issue 15: no stored row turned into a dict). ``at``: each item's row in ``snapshot``
    (:func:`stored_rows`), when the caller has it already.
    """
    new = contacts_to_frame(items)
    if snapshot is None or snapshot.empty or new.empty:
        return new
    known = at if at is not None else stored_rows(snapshot, new["outlook_id"].astype(str).to_numpy(dtype=object))
    is_known = known >= 0
    if not is_known.any():
        return new
    carried = {}  # column -> which items carry a property of it
    for prop, cols in _PROPERTY_COLUMNS.items():
        has = np.fromiter((prop in item for item in items), dtype=bool, count=len(items))
        for col in cols:
            carried[col] = carried[col] | has if col in carried else has
    old = snapshot.iloc[np.where(is_known, known, 0)].reset_index(drop=True).reindex(columns=list(OUTLOOK_COLUMNS))
    out: dict[str, Any] = {}
    for col in OUTLOOK_COLUMNS:
        keep_old = is_known & ~carried.get(col, np.zeros(len(items), dtype=bool))
        if col == "outlook_id" or not keep_old.any():
            out[col] = new[col]
        elif col in OUTLOOK_TIMES:
            out[col] = new[col].where(~keep_old, old[col].to_numpy())
        else:  # object columns, None for missing, on both sides: no conform needed
            out[col] = np.where(keep_old, old[col].to_numpy(dtype=object), new[col].to_numpy(dtype=object))
    return _frame(out, len(items))


def _frame(columns: dict[str, Any], rows: int) -> pd.DataFrame:
    """Conformed columns as a frame in ``OUTLOOK_COLUMNS`` order: text as one object
    block (pandas 3 would infer Arrow-backed ``str`` from object arrays, and ``conform``
    turn it back), times as they are."""
    texts = [c for c in OUTLOOK_COLUMNS if c not in OUTLOOK_TIMES]
    block = np.empty((len(texts), rows), dtype=object)
    for j, col in enumerate(texts):
        value = columns[col]
        block[j] = value.to_numpy(dtype=object) if isinstance(value, pd.Series) else value
    frame = pd.DataFrame(block.T, columns=texts, dtype=object, copy=False)
    for col in OUTLOOK_TIMES:
        value = columns[col]
        frame[col] = value.reset_index(drop=True) if isinstance(value, pd.Series) else value
    return frame[list(OUTLOOK_COLUMNS)]


def known_versions(
    upserts: list[dict[str, Any]], snapshot: pd.DataFrame | None, at: np.ndarray | None = None
) -> np.ndarray:
    """Which delta items the mirror holds already, in that very version: same id, same
    ``changeKey``. Graph gives a contact a new changeKey on every change
    (learn.microsoft.com/graph/api/resources/contact: "Identifies the version of the
    contact. Every time the contact is changed, ChangeKey changes as well"), so an item
    with the key the mirror stored is the copy stored: above all the echo of the sync's own
    writes, which the writer recorded with the key Graph answered (outlook.load). A
    person's edit after that write has a new key and is merged as ever (R8/R9); an item
    without a key (a partial one) is never taken as known. ``at``: each item's row in
    ``snapshot`` (:func:`stored_rows`), when the caller has it already."""
    if snapshot is None or snapshot.empty or not upserts:
        return np.zeros(len(upserts), dtype=bool)
    if at is None:
        at = stored_rows(snapshot, np.array([str(c.get("id")) for c in upserts], dtype=object))
    keys = np.array([c.get("changeKey") for c in upserts], dtype=object)
    mine = np.where(at >= 0, snapshot["change_key"].to_numpy(dtype=object)[np.maximum(at, 0)], None)
    return (keys == mine) & pd.notna(keys) & pd.notna(mine)


def stored_rows(snapshot: pd.DataFrame, ids: np.ndarray, index: pd.Index | None = None) -> np.ndarray:
    """The mirror's row of each id (its last one, -1 where not stored), found on the id
    column alone: taking the whole 100,000-row mirror apart (``drop_duplicates``,
    ``set_index``) to look up the few ids of a delta round cost a copy of every column.
    ``index``: :func:`id_index` of ``snapshot``, made once per round (a hash of 100,000
    ids costs ~15 ms, and a round looks ids up three times)."""
    stored = snapshot["outlook_id"].to_numpy(dtype=object)
    if index is None:
        index = id_index(snapshot)
    if index.is_unique:
        return index.get_indexer(ids)
    last = ~index.duplicated(keep="last")
    at = pd.Index(stored[last], dtype=object).get_indexer(ids)
    return np.where(at >= 0, np.flatnonzero(last)[np.maximum(at, 0)], -1)


def id_index(snapshot: pd.DataFrame) -> pd.Index:
    """The mirror's ids as an object Index (not inferred as Arrow str, pandas 3)."""
    return pd.Index(snapshot["outlook_id"].to_numpy(dtype=object), dtype=object)


def apply_changes(changes: FolderChanges, snapshot: pd.DataFrame | None) -> OutlookExtract:
    """The folder now: ``snapshot`` (the stored mirror) with ``changes`` applied.

    Items the mirror holds already in the same version (:func:`known_versions`: the echo
    of the sync's own writes) are dropped before anything is parsed, tagged or merged: a
    cycle after 25,000 writes then costs what one after none does (issue 15).
    """
    upserts = [c for c in changes.items.values() if c is not None]
    removed = [cid for cid, c in changes.items.items() if c is None]
    index = at = None
    if upserts and not changes.full and not changes.rows and snapshot is not None and not snapshot.empty:
        index = id_index(snapshot)  # one hash of the mirror's ids serves every look-up below
        at = stored_rows(snapshot, np.array([str(c.get("id")) for c in upserts], dtype=object), index)
        known = known_versions(upserts, snapshot, at)
        if known.any():
            upserts = [c for c, k in zip(upserts, known.tolist(), strict=True) if not k]
            at = at[~known]
    if upserts and not changes.full and changes.read_tags is not None:
        # Only contacts the mirror does not hold: a stored one's tag is known, None
        # included (every full read reads every tag; a tag changes only by this sync's
        # writes, which the mirror takes, or another app's, which waits for the next full
        # read: README "R7a"). At 1 % edits of pairs whose Outlook side was never written
        # (tag_links with-write) re-reading those None tags cost 50 $batch GETs a cycle.
        held = np.zeros(len(upserts), dtype=bool) if at is None else at >= 0
        untagged = sorted({str(c["id"]) for c, h in zip(upserts, held.tolist(), strict=True)
                           if not h and "singleValueExtendedProperties" not in c})
        with_tags(changes.items, changes.read_tags(untagged, 0 if snapshot is None else len(snapshot)))
    if not upserts:
        changed = empty_frame(OUTLOOK_COLUMNS)
    elif changes.rows:
        changed = rows_to_frame(upserts)
    else:
        changed = merge_items(upserts, None if changes.full else snapshot, at)
    if changes.full:
        frame = changed
        removed = []
    elif snapshot is None:
        raise ValueError("apply_changes: a delta round needs the mirror it continues")
    elif not upserts and not removed:
        frame = snapshot  # a quiet round: the mirror as stored (already conformed)
    else:
        frame = _applied(snapshot, changed, removed, index, at)
    return OutlookExtract(
        frame=frame,
        delta_link=changes.delta_link,
        changed=changed,
        removed_ids=removed,
        full=changes.full,
        requests=changes.requests,
    )


def _conformed(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` has the mirror's columns in the dtypes ``conform`` gives (what
    the store loads): then it needs no ``conform`` of its 100,000 rows again."""
    return list(frame.columns) == list(OUTLOOK_COLUMNS) and all(
        str(frame[c].dtype).startswith("datetime64[") and str(frame[c].dtype).endswith(", UTC]")
        if c in OUTLOOK_TIMES else frame[c].dtype == object for c in OUTLOOK_COLUMNS)


def _applied(
    snapshot: pd.DataFrame, changed: pd.DataFrame, removed: list[str],
    index: pd.Index | None = None, at: np.ndarray | None = None,
) -> pd.DataFrame:
    """The stored rows neither removed nor changed, then the changed rows (the order a
    concat of the two gives), as one take per column of the mirror straight into the
    frame's one block: no mask copy, no concat of frames, no ``conform`` of 100,000 rows
    that both inputs already conform to (at 1 % edits that was ~0.25 s of every cycle,
    issue 15). ``index``/``at``: the mirror's :func:`id_index` and each changed row's
    place in it, when the caller has them (then no second hash of its ids)."""
    if not _conformed(snapshot):
        snapshot = conform(snapshot, OUTLOOK_COLUMNS)
        index = at = None
    if index is None:
        index = id_index(snapshot)
    if index.is_unique:  # the store's mirror: each id once, so rows go by their places
        gone = np.zeros(len(snapshot), dtype=bool)
        if at is None or len(at) != len(changed):
            at = index.get_indexer(changed["outlook_id"].to_numpy(dtype=object))
        out = index.get_indexer(np.asarray(removed, dtype=object)) if removed else np.array([], dtype=np.int64)
        for places in (at, out):
            gone[places[places >= 0]] = True
    else:
        drop = np.concatenate([np.asarray(removed, dtype=object), changed["outlook_id"].to_numpy(dtype=object)])
        gone = index.isin(drop)
    kept = np.flatnonzero(~gone)
    order = np.concatenate([kept, len(snapshot) + np.arange(len(changed))])
    texts = [c for c in OUTLOOK_COLUMNS if c not in OUTLOOK_TIMES]
    block = np.empty((len(texts), len(order)), dtype=object)
    for j, col in enumerate(texts):
        block[j] = np.concatenate([snapshot[col].to_numpy(dtype=object), changed[col].to_numpy(dtype=object)])[order]
    frame = pd.DataFrame(block.T, columns=texts, dtype=object, copy=False)
    for col in OUTLOOK_TIMES:
        times = pd.concat([snapshot[col], changed[col]], ignore_index=True).take(order).reset_index(drop=True)
        frame.insert(OUTLOOK_COLUMNS.index(col), col, times)
    return frame


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
