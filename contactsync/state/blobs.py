"""A user's links and Outlook mirror: one columnar blob (the base) and the rows changed
since it was written (the delta, in the ``links`` / ``outlook_contacts`` tables).

Why: a cycle that cannot settle reads every link and mirror row; as 100,000 SQL rows that
cost ~3 s of local work at 100,000 contacts (issue 15). The base is decoded in a fraction
of that (contactsync.state.columnar), and a cycle that changes 1 % writes 1 % of the rows
to the delta, not the whole base. When the delta grows past a tenth of the base (at
least COMPACT_MIN rows), or rows must leave the base (unlinks, Outlook deletes, status
changes), the two are merged into a new base in the same transaction (compaction).

Reading = base rows not superseded by a delta row (same key; for links also the same
outlook_id, R7's one-to-one move) + the delta rows, in key order (what the row tables
gave on SQLite, whose primary-key scan is in binary = code point order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from contactsync.model import OUTLOOK_COLUMNS, conform
from contactsync.plan.schema import LINK_COLUMNS
from contactsync.state.columnar import decode, encode
from contactsync.state.rows import chunks, now_iso, read_frame
from contactsync.state.schema import blobs_table, links_table, outlook_table

#: A delta of up to this many rows never forces a compaction.
COMPACT_MIN = 2_000
OUTLOOK_TIMES = ("outlook_created", "outlook_modified")


@dataclass(frozen=True)
class Kind:
    """One kind of per-user data kept as base + delta."""

    name: str
    table: sa.Table
    columns: tuple[str, ...]
    key: str
    times: tuple[str, ...] = ()
    also_unique: str | None = None  # a second unique column (links: outlook_id)
    #: A delta row with this value in this column says "the key left" (a tombstone).
    gone: tuple[str, str] = ("", "")


#: Tombstones: a link status no link has; a change key Graph never gives (its change
#: keys are base64, which has no "~").
LINK_GONE = "removed"
MIRROR_GONE = "~removed~"
LINKS = Kind("links", links_table, LINK_COLUMNS, "crm_id", also_unique="outlook_id",
             gone=("status", LINK_GONE))
MIRROR = Kind("mirror", outlook_table, OUTLOOK_COLUMNS, "outlook_id", times=OUTLOOK_TIMES,
              gone=("change_key", MIRROR_GONE))


def compact_limit(base_rows: int) -> int:
    """The delta size from which the next save folds it into the base."""
    return max(COMPACT_MIN, base_rows // 10)


def _blob_where(kind: Kind, user: str, folder_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    b = blobs_table
    return (b.c.crm_user == user, b.c.kind == kind.name, b.c.folder_id == folder_id)


def _delta_where(kind: Kind, user: str, folder_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    t = kind.table
    where = (t.c.crm_user == user,)
    return (*where, t.c.folder_id == folder_id) if kind is MIRROR else where


def base_rows(conn: Connection, kind: Kind, user: str, folder_id: str = "") -> int:
    """How many rows the base holds (0 = none), without decoding it."""
    found = conn.execute(sa.select(blobs_table.c.rows).where(*_blob_where(kind, user, folder_id))).scalar()
    return int(found or 0)


def delta_rows(conn: Connection, kind: Kind, user: str, folder_id: str = "") -> int:
    return int(conn.execute(
        sa.select(sa.func.count()).select_from(kind.table).where(*_delta_where(kind, user, folder_id))
    ).scalar_one())


def read_base(
    conn: Connection, kind: Kind, user: str, folder_id: str = "", columns: Sequence[str] | None = None
) -> pd.DataFrame | None:
    data = conn.execute(sa.select(blobs_table.c.data).where(*_blob_where(kind, user, folder_id))).scalar()
    return None if data is None else decode(bytes(data), columns)


def read_delta(
    conn: Connection, kind: Kind, user: str, folder_id: str = ""
) -> tuple[pd.DataFrame, np.ndarray]:
    """The delta: its rows as a conformed frame in key order, and the keys it removes."""
    t = kind.table
    found = read_frame(conn.execute(
        sa.select(*[t.c[c] for c in kind.columns]).where(*_delta_where(kind, user, folder_id))
    ), plain=True)
    removed = np.array([], dtype=object)
    if not found.empty:
        tomb = (found[kind.gone[0]] == kind.gone[1]).to_numpy()
        if tomb.any():
            removed = found.loc[tomb, kind.key].to_numpy(dtype=object)
            found = found[~tomb]
    for col in kind.times:
        if not found.empty:
            found[col] = pd.to_datetime(found[col], utc=True, format="ISO8601")
    frame = conform(found, kind.columns)
    if len(frame) > 1:
        frame = frame.take(np.argsort(frame[kind.key].to_numpy(dtype=object), kind="stable"))
    return frame.reset_index(drop=True), removed


def add_tombstones(conn: Connection, kind: Kind, user: str, folder_id: str, keys: Sequence[str]) -> None:
    """Delta rows saying these keys left (their changed rows, if any, go first)."""
    t = kind.table
    where = _delta_where(kind, user, folder_id)
    keys = sorted(set(keys))
    for chunk in chunks(keys):
        conn.execute(sa.delete(t).where(*where, t.c[kind.key].in_(chunk)))
    lead = {"crm_user": user, **({"folder_id": folder_id} if kind is MIRROR else {})}
    if kind is LINKS:
        lead["updated_at"] = now_iso()
    rows = [{**lead, kind.key: k, kind.gone[0]: kind.gone[1]} for k in keys]
    for chunk in chunks(rows):
        conn.execute(t.insert(), chunk)


def write_base(conn: Connection, kind: Kind, user: str, folder_id: str, frame: pd.DataFrame) -> None:
    """Replace the base with ``frame`` (sorted by key here) and empty the delta."""
    frame = frame.reindex(columns=list(kind.columns))
    keys = frame[kind.key].to_numpy(dtype=object)
    if len(frame) > 1 and not bool((keys[1:] > keys[:-1]).all()):
        frame = frame.take(np.argsort(keys, kind="stable"))
    conn.execute(sa.delete(blobs_table).where(*_blob_where(kind, user, folder_id)))
    conn.execute(blobs_table.insert().values(
        crm_user=user, kind=kind.name, folder_id=folder_id, rows=len(frame),
        data=encode(frame.reset_index(drop=True), kind.times), updated_at=now_iso(),
    ))
    conn.execute(sa.delete(kind.table).where(*_delta_where(kind, user, folder_id)))


def merged(
    base: pd.DataFrame | None, delta: pd.DataFrame, kind: Kind, removed: Sequence[str] = ()
) -> pd.DataFrame:
    """Base rows neither removed nor superseded by the delta, and the delta rows, in key
    order (both inputs in key order: the result's order is one binary search, no sort)."""
    if base is None or base.empty:
        return delta
    if delta.empty and not len(removed):
        return base
    base_keys = base[kind.key].to_numpy(dtype=object)
    delta_keys = delta[kind.key].to_numpy(dtype=object)
    replaced = _rows_replaced_in_place(base, base_keys, delta, delta_keys, kind, removed)
    if replaced is not None:
        return replaced
    gone = pd.Index(base_keys).isin(np.concatenate(
        [delta_keys, np.asarray(removed, dtype=object)]))
    if kind.also_unique is not None:
        moved = delta[kind.also_unique].dropna().to_numpy(dtype=object)
        if moved.size:
            gone |= base[kind.also_unique].isin(moved).to_numpy()
    kept = base[~gone] if gone.any() else base
    kept_keys = base_keys[~gone] if gone.any() else base_keys
    at = np.searchsorted(kept_keys, delta_keys)  # the kept row each delta row goes before
    before = np.zeros(len(kept) + 1, dtype=np.int64)
    np.add.at(before, at, 1)
    final = np.concatenate([np.arange(len(kept)) + np.cumsum(before)[:-1],
                            at + np.arange(len(delta))])
    both = pd.concat([kept, delta], ignore_index=True)
    return both.take(np.argsort(final)).reset_index(drop=True)


def _rows_replaced_in_place(
    base: pd.DataFrame, base_keys: np.ndarray, delta: pd.DataFrame, delta_keys: np.ndarray,
    kind: Kind, removed: Sequence[str],
) -> pd.DataFrame | None:
    """The usual cycle's case, in one copy of the base: every delta row replaces the base
    row of its key (1 % edits), none is new, none removed, no Outlook contact moves to
    another CRM id (R7). The general path copies the base three times (mask, concat,
    take): at 100,000 links, 0.4 s of every load after a 1 % save. None = not this case."""
    if len(removed) or not len(delta):
        return None
    at = np.searchsorted(base_keys, delta_keys)
    if bool((at >= len(base_keys)).any()) or not bool((base_keys[at] == delta_keys).all()):
        return None  # a new key
    if kind.also_unique is not None:
        moved = delta[kind.also_unique].dropna().to_numpy(dtype=object)
        if moved.size:
            holders = np.flatnonzero(base[kind.also_unique].isin(moved).to_numpy())
            if not bool(np.isin(holders, at).all()):
                return None  # R7: a base row whose Outlook contact moves goes
    columns = list(base.columns)
    times = [c for c in columns if c in kind.times]
    texts = [c for c in columns if c not in kind.times]
    block = base[texts].to_numpy(dtype=object, copy=True)
    block[at] = delta.reindex(columns=texts).to_numpy(dtype=object)
    out = pd.DataFrame(block, columns=texts, dtype=object, copy=False)
    for col in times:  # in the unit pd.concat would give (the finer of the two)
        unit = pd.concat([base[col].iloc[:0], delta[col].iloc[:0]]).dtype
        values = base[col].astype(unit).array.copy()
        values[at] = delta[col].astype(unit).array
        out[col] = values
    return out[columns]


def read(conn: Connection, kind: Kind, user: str, folder_id: str = "") -> pd.DataFrame:
    """The user's rows of ``kind``: base and delta merged (model conventions)."""
    delta, removed = read_delta(conn, kind, user, folder_id)
    frame = merged(read_base(conn, kind, user, folder_id), delta, kind, removed)
    return frame if len(frame) else conform(frame, kind.columns)


def fold_all(conn: Connection) -> None:
    """Migration: every user's (and folder's) rows become that user's base."""
    users = [r[0] for r in conn.execute(sa.select(links_table.c.crm_user).distinct())]
    for user in users:
        write_base(conn, LINKS, user, "", read_delta(conn, LINKS, user)[0])
    t = outlook_table
    for user, folder in conn.execute(sa.select(t.c.crm_user, t.c.folder_id).distinct()).all():
        write_base(conn, MIRROR, user, folder, read_delta(conn, MIRROR, user, folder)[0])
