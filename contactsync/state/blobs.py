"""A user's links and Outlook mirror: one columnar blob (the base) and the rows changed
since it was written (the delta: a few small columnar blobs, the ``state_segments``).

Why: a cycle that cannot settle reads every link and mirror row; as 100,000 SQL rows that
cost ~3 s of local work at 100,000 contacts (issue 15). The base is decoded in a fraction
of that (contactsync.state.columnar), and a cycle that changes 1 % writes 1 % of the rows
as one segment, not the whole base. When the delta grows past a quarter of the base (at
least COMPACT_MIN rows), or rows must leave the base (unlinks, status changes, R7 moves),
the two are merged into a new base in the same transaction (compaction).

Segments are appended in ``seq`` order, a later row superseding an earlier one of the
same key; a save folds the newest segments into its own while they are no bigger than it
(a binary counter: ~log2 of the delta's saves stay, so a read decodes a handful and a
save rewrites on average a few times its own rows). The ``links`` / ``outlook_contacts``
rows a version-4 program left are read as the oldest layer and folded into a segment at
that user's next save (schema version 5).

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

from contactsync.model import OUTLOOK_COLUMNS, OUTLOOK_TIMES, conform, empty_frame
from contactsync.plan.schema import LINK_COLUMNS
from contactsync.state.columnar import Reader, decode, encode, encode_columns, time_ns, utc_times
from contactsync.state.key_order import merge_order
from contactsync.state.rows import now_iso, read_frame
from contactsync.state.schema import blobs_table, links_table, outlook_table, segments_table

#: A delta of up to this many rows never forces a compaction.
COMPACT_MIN = 2_000
#: The delta's share of the base from which a save compacts. Reading a delta costs its
#: rows' decode only (the merge into the base costs the base's size whatever the delta's),
#: while a compaction re-encodes the whole base (~0.5 s at 100,000 mirror rows): a quarter
#: compacts a 1 %-edits cycle's saves once in ~12 cycles, a first sync's links ~15 times
#: where a tenth made it ~27.
COMPACT_SHARE = 4
#: A save past this many segments folds them all into its own.
MAX_SEGMENTS = 12
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
    return max(COMPACT_MIN, base_rows // COMPACT_SHARE)


def _blob_where(kind: Kind, user: str, folder_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    b = blobs_table
    return (b.c.crm_user == user, b.c.kind == kind.name, b.c.folder_id == folder_id)


def _delta_where(kind: Kind, user: str, folder_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    t = kind.table
    where = (t.c.crm_user == user,)
    return (*where, t.c.folder_id == folder_id) if kind is MIRROR else where


def _segment_where(kind: Kind, user: str, folder_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    s = segments_table
    return (s.c.crm_user == user, s.c.kind == kind.name, s.c.folder_id == folder_id)


def base_rows(conn: Connection, kind: Kind, user: str, folder_id: str = "") -> int:
    """How many rows the base holds (0 = none), without decoding it."""
    found = conn.execute(sa.select(blobs_table.c.rows).where(*_blob_where(kind, user, folder_id))).scalar()
    return int(found or 0)


def delta_rows(conn: Connection, kind: Kind, user: str, folder_id: str = "") -> int:
    """The delta's rows as written (a row superseded by a later save counts twice): what
    decides the next compaction."""
    return _legacy_rows(conn, kind, user, folder_id) + int(conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(segments_table.c.rows), 0))
        .where(*_segment_where(kind, user, folder_id))
    ).scalar_one())


def _legacy_rows(conn: Connection, kind: Kind, user: str, folder_id: str) -> int:
    """Delta rows a version-4 program left in the row tables (0 once a save folded them)."""
    return int(conn.execute(
        sa.select(sa.func.count()).select_from(kind.table).where(*_delta_where(kind, user, folder_id))
    ).scalar_one())


def read_base(
    conn: Connection, kind: Kind, user: str, folder_id: str = "", columns: Sequence[str] | None = None
) -> pd.DataFrame | None:
    data = conn.execute(sa.select(blobs_table.c.data).where(*_blob_where(kind, user, folder_id))).scalar()
    return None if data is None else decode(bytes(data), columns)


def read_delta(
    conn: Connection, kind: Kind, user: str, folder_id: str = "", columns: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The delta: its rows as a conformed frame in key order, and the keys it removes;
    of the segments, only ``columns`` (and those the fold needs) when given."""
    wanted = None if columns is None else {*columns, kind.key, kind.gone[0], *((kind.also_unique,) if kind.also_unique else ())}
    layers = [_legacy_layer(conn, kind, user, folder_id)]
    layers += [decode(data, None if wanted is None else [c for c in kind.columns if c in wanted])
               for _, _, data in _segments(conn, kind, user, folder_id, with_data=True)]
    found = _fold(layers, kind)
    removed = np.array([], dtype=object)
    if len(found):
        tomb = (found[kind.gone[0]] == kind.gone[1]).to_numpy()
        if tomb.any():
            removed = found.loc[tomb, kind.key].to_numpy(dtype=object)
            found = found[~tomb].reset_index(drop=True)
    return found, removed


def _legacy_layer(conn: Connection, kind: Kind, user: str, folder_id: str) -> pd.DataFrame:
    """The rows a version-4 program wrote to the row tables, tombstones included (counted
    first: an empty frame of 30 columns costs more than the count)."""
    if not _legacy_rows(conn, kind, user, folder_id):
        return pd.DataFrame()
    t = kind.table
    found = read_frame(conn.execute(
        sa.select(*[t.c[c] for c in kind.columns]).where(*_delta_where(kind, user, folder_id))
    ), plain=True)
    if found.empty:
        return found
    for col in kind.times:
        found[col] = pd.to_datetime(found[col], utc=True, format="ISO8601")
    return conform(found, kind.columns)


def _segments(
    conn: Connection, kind: Kind, user: str, folder_id: str, *, with_data: bool = False
) -> list[tuple[int, int, bytes]]:
    """The delta's segments in write order: (seq, rows, data; data b"" unless asked)."""
    s = segments_table
    cols = [s.c.seq, s.c.rows, *([s.c.data] if with_data else [])]
    found = conn.execute(sa.select(*cols).where(*_segment_where(kind, user, folder_id)).order_by(s.c.seq))
    return [(int(r[0]), int(r[1]), bytes(r[2]) if with_data else b"") for r in found]


def _fold(layers: Sequence[pd.DataFrame], kind: Kind) -> pd.DataFrame:
    """Layers (oldest first; tombstones are rows) as one: each key's last row, and for
    links no two rows on one Outlook contact (the later wins, R7), in key order.

    A row survives when no later row has its key or its outlook_id: what applying the
    layers one by one gives, since a save never holds two rows of one key or one Outlook
    contact, and a save that moves an Outlook contact to another CRM id is compacted at
    once (links.LinkStore.save_pairs) instead of reaching the delta."""
    frames = [f for f in layers if len(f)]
    if not frames:
        return empty_frame(kind.columns)  # (conform of no rows costs ~0.07 s: 30 columns)
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    keys = frame[kind.key].to_numpy(dtype=object)
    keep = ~pd.Index(keys, dtype=object).duplicated(keep="last")
    if kind.also_unique is not None:
        unique = frame[kind.also_unique].to_numpy(dtype=object)
        held = np.flatnonzero(~pd.isna(unique))
        if held.size:
            keep[held[pd.Index(unique[held], dtype=object).duplicated(keep="last")]] = False
    at = np.flatnonzero(keep)
    at = at[np.argsort(keys[at], kind="stable")]
    if len(frames) == 1 and len(at) == len(frame) and bool((at == np.arange(len(at))).all()):
        return frame.reset_index(drop=True)
    return frame.take(at).reset_index(drop=True)


def add_rows(
    conn: Connection, kind: Kind, user: str, folder_id: str,
    rows: pd.DataFrame | None, removed: Sequence[str] = (),
) -> None:
    """Append ``rows`` (and tombstones of the ``removed`` keys, which the rows outdo) to
    the delta as one segment, folding into it the newest segments no bigger than it (all
    of them past MAX_SEGMENTS, and the row tables' rows of a version-4 program)."""
    layer = _layer(rows, removed, kind)
    if not len(layer):
        return
    segs = _segments(conn, kind, user, folder_id)
    legacy = _legacy_rows(conn, kind, user, folder_id)
    take = len(segs) if legacy or len(segs) >= MAX_SEGMENTS else 0
    size = len(layer)
    while take < len(segs) and segs[-1 - take][1] <= size:
        size += segs[-1 - take][1]
        take += 1
    seq = segs[-1][0] + 1 if segs else 1
    if take or legacy:
        s = segments_table
        first = segs[-take][0] if take else seq
        found = conn.execute(sa.select(s.c.data).where(*_segment_where(kind, user, folder_id), s.c.seq >= first)
                             .order_by(s.c.seq)).scalars().all()
        older = [_legacy_layer(conn, kind, user, folder_id)] if legacy else []
        layer = _fold([*older, *(decode(bytes(d)) for d in found), layer], kind)
        conn.execute(sa.delete(s).where(*_segment_where(kind, user, folder_id), s.c.seq >= first))
        if legacy:
            conn.execute(sa.delete(kind.table).where(*_delta_where(kind, user, folder_id)))
    conn.execute(segments_table.insert().values(
        crm_user=user, kind=kind.name, folder_id=folder_id, seq=seq, rows=len(layer),
        data=encode(layer, kind.times),
    ))


def _layer(rows: pd.DataFrame | None, removed: Sequence[str], kind: Kind) -> pd.DataFrame:
    """One save's rows as a delta layer: the tombstones, then the rows (later wins)."""
    parts = []
    if len(removed):
        gone = sorted({str(k) for k in removed})
        parts.append(pd.DataFrame({kind.key: gone, kind.gone[0]: [kind.gone[1]] * len(gone)}, dtype=object))
    if rows is not None and len(rows):
        parts.append(rows.reindex(columns=list(kind.columns)))
    if not parts:
        return conform(pd.DataFrame(), kind.columns)
    return _fold([_conformed(parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True), kind)], kind)


def _conformed(frame: pd.DataFrame, kind: Kind) -> pd.DataFrame:
    """``conform(frame, kind.columns)`` for a save's rows, as one object block and the
    times: ``conform`` costs ~3 ms per column whatever the rows (0.1 s for a save of 10)."""
    frame = frame.reindex(columns=list(kind.columns))
    texts = [c for c in kind.columns if c not in kind.times]
    block = np.empty((len(texts), len(frame)), dtype=object)
    for j, col in enumerate(texts):
        values = frame[col].to_numpy(dtype=object)
        block[j] = values
        block[j][pd.isna(values)] = None
    out = pd.DataFrame(block.T, columns=texts, dtype=object, copy=False)
    for col in kind.times:
        out.insert(kind.columns.index(col), col, pd.to_datetime(frame[col], utc=True, errors="coerce").reset_index(drop=True))
    return out


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
    conn.execute(sa.delete(segments_table).where(*_segment_where(kind, user, folder_id)))


def compact(
    conn: Connection, kind: Kind, user: str, folder_id: str,
    then: Sequence[tuple[pd.DataFrame, Sequence[str]]] = (),
) -> int:
    """Fold the delta, and after it each (rows in key order, keys removed) of ``then``,
    into a new base, column by column; returns its rows.

    The same rows as ``write_base(merged(read(...), rows, removed))``, without the whole
    base decoded at once: the merge's order comes from the key columns alone
    (``key_order.merge_order``), then each column is decoded, merged, encoded and let go before the
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
        order = merge_order(keys, unique, row_keys, row_unique, removed)
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
    order = merge_order(base[kind.key].to_numpy(dtype=object),
                        None if unique is None else base[unique].to_numpy(dtype=object),
                        delta[kind.key].to_numpy(dtype=object),
                        None if unique is None else delta[unique].to_numpy(dtype=object), removed)
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


def read(conn: Connection, kind: Kind, user: str, folder_id: str = "") -> pd.DataFrame:
    """The user's rows of ``kind``: base and delta merged (model conventions), in key order.

    The merge's order comes from the base's key columns alone (``key_order.merge_order``); then each
    column is decoded and put in its place by one take, straight into the frame's one
    block: no frame of the base is made only to be merged into a second one."""
    delta, removed = read_delta(conn, kind, user, folder_id)
    data = conn.execute(sa.select(blobs_table.c.data).where(*_blob_where(kind, user, folder_id))).scalar()
    if data is None:
        frame = delta
    elif delta.empty and not len(removed):
        frame = decode(bytes(data))
    else:
        frame = _merged_from(Reader(bytes(data)), delta, removed, kind)
    return frame if len(frame) else conform(frame, kind.columns)


def _merged_from(base: Reader, delta: pd.DataFrame, removed: Sequence[str], kind: Kind) -> pd.DataFrame:
    """``merged(decode(base), delta, kind, removed)`` (its rows and values), the base
    decoded one column at a time into the merged order; columns in ``kind.columns`` order."""
    n = base.rows
    keys = _base_text(base, kind.key, n)
    unique = None if kind.also_unique is None else _base_text(base, kind.also_unique, n)
    order = merge_order(keys, unique, delta[kind.key].to_numpy(dtype=object),
                        None if unique is None else delta[kind.also_unique].to_numpy(dtype=object), removed)
    if order is None:
        order = np.arange(n)
    texts = [c for c in kind.columns if c not in kind.times]
    block = np.empty((len(texts), len(order)), dtype=object)
    for j, col in enumerate(texts):
        values = keys if col == kind.key else unique if col == kind.also_unique else _base_text(base, col, n)
        block[j] = np.concatenate([values, delta[col].to_numpy(dtype=object)])[order]
    frame = pd.DataFrame(block.T, columns=texts, dtype=object, copy=False)
    for col in kind.times:  # put in place: a reorder of the columns would copy the block
        stored = base.time_ns(col) if col in base.names else np.full(n, MISSING_NS, dtype=np.int64)
        frame.insert(kind.columns.index(col), col, utc_times(np.concatenate([stored, time_ns(delta[col])])[order]))
    return frame


def fold_all(conn: Connection) -> None:
    """Migration: every user's (and folder's) rows become that user's base."""
    users = [r[0] for r in conn.execute(sa.select(links_table.c.crm_user).distinct())]
    for user in users:
        write_base(conn, LINKS, user, "", read_delta(conn, LINKS, user)[0])
    t = outlook_table
    for user, folder in conn.execute(sa.select(t.c.crm_user, t.c.folder_id).distinct()).all():
        write_base(conn, MIRROR, user, folder, read_delta(conn, MIRROR, user, folder)[0])
