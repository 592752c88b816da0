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

from contactsync.model import OUTLOOK_COLUMNS, OUTLOOK_TIMES, conform
from contactsync.plan.schema import LINK_COLUMNS
from contactsync.state.columnar import Reader, decode, encode, encode_columns, time_ns
from contactsync.state.rows import chunks, now_iso, read_frame
from contactsync.state.schema import blobs_table, links_table, outlook_table

#: A delta of up to this many rows never forces a compaction.
COMPACT_MIN = 2_000
#: A missing time in a blob's time column (columnar's format).
MISSING_NS = np.iinfo(np.int64).min


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
    frame = frame.reset_index(drop=True)
    _store_base(conn, kind, user, folder_id, len(frame), encode(frame, kind.times))


def _store_base(conn: Connection, kind: Kind, user: str, folder_id: str, rows: int, data: bytes) -> None:
    conn.execute(sa.delete(blobs_table).where(*_blob_where(kind, user, folder_id)))
    conn.execute(blobs_table.insert().values(
        crm_user=user, kind=kind.name, folder_id=folder_id, rows=rows, data=data, updated_at=now_iso(),
    ))
    conn.execute(sa.delete(kind.table).where(*_delta_where(kind, user, folder_id)))


def compact(
    conn: Connection, kind: Kind, user: str, folder_id: str,
    then: Sequence[tuple[pd.DataFrame, Sequence[str]]] = (),
) -> int:
    """Fold the delta, and after it each (rows in key order, keys removed) of ``then``,
    into a new base, column by column; returns its rows.

    The same rows as ``write_base(merged(read(...), rows, removed))``, without the whole
    base decoded at once: the merge's order comes from the key columns alone
    (:func:`_order`), then each column is decoded, merged, encoded and let go before the
    next. A first sync's Outlook load compacts the mirror several times while the cycle
    holds both sides; decoding the whole 100,000-row mirror there was its peak of memory
    (55-75 MB over the rest, issue 15)."""
    data = conn.execute(sa.select(blobs_table.c.data).where(*_blob_where(kind, user, folder_id))).scalar()
    base = None if data is None else Reader(bytes(data))
    del data
    layers = [read_delta(conn, kind, user, folder_id), *then]
    n = 0 if base is None else base.rows
    keys = _base_text(base, kind.key, n)
    unique = None if kind.also_unique is None else _base_text(base, kind.also_unique, n)
    pick = np.arange(n)  # the new base's rows, as positions in [base; layer 1; layer 2; ...]
    offset = n
    for rows, removed in layers:
        row_keys = rows[kind.key].to_numpy(dtype=object)
        row_unique = None if kind.also_unique is None else rows[kind.also_unique].to_numpy(dtype=object)
        order = _order(keys, unique, row_keys, row_unique, kind, removed)
        if order is not None:
            pick = np.concatenate([pick, offset + np.arange(len(rows))])[order]
            keys = np.concatenate([keys, row_keys])[order]
            if unique is not None:
                unique = np.concatenate([unique, row_unique])[order]
        offset += len(rows)
    del keys, unique

    def column(name: str) -> np.ndarray:
        if name in kind.times:
            parts = [base.time_ns(name) if base is not None and name in base.names
                     else np.full(n, MISSING_NS, dtype=np.int64)]
            parts += [time_ns(rows[name]) for rows, _ in layers]
        else:
            parts = [_base_text(base, name, n)]
            parts += [rows[name].to_numpy(dtype=object) for rows, _ in layers]
        return np.concatenate(parts)[pick]

    blob = encode_columns(len(pick), ((name, column(name)) for name in kind.columns), kind.times)
    _store_base(conn, kind, user, folder_id, len(pick), blob)
    return len(pick)


def _base_text(base: Reader | None, name: str, n: int) -> np.ndarray:
    if base is None or name not in base.names:
        return np.full(n, None, dtype=object)
    return base.text(name)


def merged(
    base: pd.DataFrame | None, delta: pd.DataFrame, kind: Kind, removed: Sequence[str] = ()
) -> pd.DataFrame:
    """Base rows neither removed nor superseded by the delta, and the delta rows, in key
    order (both inputs in key order: the result's order is one binary search, no sort)."""
    if base is None or base.empty:
        return delta
    if delta.empty and not len(removed):
        return base
    unique = kind.also_unique
    order = _order(base[kind.key].to_numpy(dtype=object),
                   None if unique is None else base[unique].to_numpy(dtype=object),
                   delta[kind.key].to_numpy(dtype=object),
                   None if unique is None else delta[unique].to_numpy(dtype=object), kind, removed)
    if order is None:
        return base
    columns = list(base.columns)
    delta = delta.reindex(columns=columns)
    texts = [c for c in columns if c not in kind.times]
    block = np.empty((len(texts), len(order)), dtype=object)
    for j, col in enumerate(texts):  # one 2-D block, one pointer copy per value
        block[j] = np.concatenate([base[col].to_numpy(dtype=object), delta[col].to_numpy(dtype=object)])[order]
    out = pd.DataFrame(block.T, columns=texts, dtype=object, copy=False)
    for col in columns:
        if col in kind.times:  # in the unit pd.concat gives (the finer of the two)
            out[col] = pd.concat([base[col], delta[col]], ignore_index=True).take(order).reset_index(drop=True)
    return out[columns]


def _order(
    base_keys: np.ndarray, base_unique: np.ndarray | None, delta_keys: np.ndarray,
    delta_unique: np.ndarray | None, kind: Kind, removed: Sequence[str],
) -> np.ndarray | None:
    """The merged rows as positions in [base rows; delta rows], in key order (both in key
    order); None when the delta changes nothing. Found from the key columns alone, so the
    same order serves a merge of frames (:func:`merged`) and one column at a time
    (:func:`compact`)."""
    if not len(delta_keys) and not len(removed):
        return None
    replaced = _rows_replaced_in_place(base_keys, base_unique, delta_keys, delta_unique, kind, removed)
    if replaced is not None:
        return replaced
    gone = pd.Index(base_keys, dtype=object).isin(np.concatenate([delta_keys, np.asarray(removed, dtype=object)]))
    if base_unique is not None and delta_unique is not None:
        moved = delta_unique[~pd.isna(delta_unique)]
        if moved.size:
            gone |= pd.Series(base_unique, dtype=object).isin(moved).to_numpy()
    kept = np.flatnonzero(~gone)
    at = np.searchsorted(base_keys[kept], delta_keys)  # the kept row each delta row goes before
    before = np.zeros(len(kept) + 1, dtype=np.int64)
    np.add.at(before, at, 1)
    final = np.concatenate([np.arange(len(kept)) + np.cumsum(before)[:-1], at + np.arange(len(delta_keys))])
    order = np.empty(len(final), dtype=np.int64)
    order[final] = np.concatenate([kept, len(base_keys) + np.arange(len(delta_keys))])
    return order


def _rows_replaced_in_place(
    base_keys: np.ndarray, base_unique: np.ndarray | None, delta_keys: np.ndarray,
    delta_unique: np.ndarray | None, kind: Kind, removed: Sequence[str],
) -> np.ndarray | None:
    """The usual cycle's case: every delta row replaces the base row of its key (1 %
    edits), none is new, none removed, no Outlook contact moves to another CRM id (R7):
    the base's order with those rows swapped, no search over the kept rows. None = not
    this case."""
    at = _replaced_at(base_keys, base_unique, delta_keys, delta_unique, removed)
    if at is None:
        return None
    order = np.arange(len(base_keys))
    order[at] = len(base_keys) + np.arange(len(delta_keys))
    return order


def _replaced_at(
    base_keys: np.ndarray, base_unique: np.ndarray | None, delta_keys: np.ndarray,
    delta_unique: np.ndarray | None, removed: Sequence[str],
) -> np.ndarray | None:
    """The base row each delta row replaces, when each replaces one of its key and no
    Outlook contact moves to another CRM id (R7); None otherwise."""
    if len(removed) or not len(delta_keys):
        return None
    at = np.searchsorted(base_keys, delta_keys)
    if bool((at >= len(base_keys)).any()) or not bool((base_keys[at] == delta_keys).all()):
        return None  # a new key
    if base_unique is not None and delta_unique is not None:
        moved = delta_unique[~pd.isna(delta_unique)]
        if moved.size:
            holders = np.flatnonzero(pd.Series(base_unique, dtype=object).isin(moved).to_numpy())
            if not bool(np.isin(holders, at).all()):
                return None  # R7: a base row whose Outlook contact moves goes
    return at


def read(conn: Connection, kind: Kind, user: str, folder_id: str = "") -> pd.DataFrame:
    """The user's rows of ``kind``: base and delta merged (model conventions).

    When every delta row replaces a base row of its key (a 1 % cycle's saves), they are
    written into the decoded base's arrays before its frame is made; otherwise the base
    and the delta are merged (:func:`merged`: a second copy of every column)."""
    delta, removed = read_delta(conn, kind, user, folder_id)
    data = conn.execute(sa.select(blobs_table.c.data).where(*_blob_where(kind, user, folder_id))).scalar()
    if data is None:
        frame = delta
    elif delta.empty and not len(removed):
        frame = decode(bytes(data))
    else:
        done: list[bool] = []

        def into_base(texts: dict[str, np.ndarray], times: dict[str, np.ndarray]) -> None:
            unique = kind.also_unique
            at = _replaced_at(texts[kind.key], None if unique is None else texts[unique],
                              delta[kind.key].to_numpy(dtype=object),
                              None if unique is None else delta[unique].to_numpy(dtype=object), removed)
            if at is None or set(texts) | set(times) != set(delta.columns):
                return
            for col, values in texts.items():
                values[at] = delta[col].to_numpy(dtype=object)
            for col, ns in times.items():
                ns[at] = time_ns(delta[col])
            done.append(True)

        frame = decode(bytes(data), patch=into_base)
        if not done:
            frame = merged(frame, delta, kind, removed)
    return frame if len(frame) else conform(frame, kind.columns)


def fold_all(conn: Connection) -> None:
    """Migration: every user's (and folder's) rows become that user's base."""
    users = [r[0] for r in conn.execute(sa.select(links_table.c.crm_user).distinct())]
    for user in users:
        write_base(conn, LINKS, user, "", read_delta(conn, LINKS, user)[0])
    t = outlook_table
    for user, folder in conn.execute(sa.select(t.c.crm_user, t.c.folder_id).distinct()).all():
        write_base(conn, MIRROR, user, folder, read_delta(conn, MIRROR, user, folder)[0])
