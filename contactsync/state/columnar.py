"""A frame of text and time columns as one compressed blob: how a user's links and mirror
are kept, so that a cycle loads 100,000 of them in a fraction of a second.

Read as rows (SQLite ``fetchall``: one value object and one row tuple per field of every
contact, then a 2-D array, then ``conform``), 100,000 mirror rows took ~1.9 s and as many
links ~1.2 s of every cycle that cannot settle (bench/README.md, issue 15). As columns, a
text column is its values joined by a separator and split back by one C call, a time
column is its int64 nanoseconds, and the whole is one zlib stream: decoding costs a
tenth. Format (version 2):

    MAGIC | 8 bytes big-endian header length | header JSON | one zlib stream per column

The header gives ``rows``, and per column its ``name``, ``kind`` (``text``: the values
joined by U+001F after the int32 positions of the ``missing`` ones; ``sparse``, for a
column more than half empty: the values present joined after the int32 positions of the
``present`` ones; ``json``: a JSON list,
for a column whose values contain U+001F or U+001E themselves; ``time``: int64
nanoseconds since the epoch, UTC, missing = the smallest int64) and its compressed byte
length. Each column is compressed on its own so that a reader of two columns (R7's move
check reads crm_id and outlook_id of every link, contactsync.state.links) inflates two,
not twenty-eight. Version 1 (what the store wrote before: the same header and bodies as
one zlib stream, no MAGIC) is still read. Nothing is pickled: a blob is data, never code.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

FORMAT_VERSION = 2
#: Starts a version-2 blob; a version-1 blob starts with zlib's header byte 0x78.
MAGIC = b"CSB2"
_SEP = "\x1f"
_NAT = np.iinfo(np.int64).min
#: zlib level: 1 compresses a 100,000-contact mirror 6x at several hundred MB/s.
LEVEL = 1


def text_column(values: np.ndarray) -> tuple[dict[str, object], bytes]:
    """A text column's header entry and body.

    ``text``: the positions of its missing values as little-endian int32 (``missing`` =
    how many), then the values joined by U+001F. ``sparse`` (more than half missing): the
    positions of the values present (``present`` = how many), then those values joined:
    a column that is empty in most contacts (middle name, spouse, ...; 16 of the 27 link
    columns in the 100,000-contact bench) then decodes without splitting 100,000 empty
    strings only to overwrite them. The positions sit in the column's own stream, not in
    the header, which every reader parses whole (as JSON lists, 100,000 links' empty
    fields made a header of megabytes)."""
    missing = np.asarray(pd.isna(values), dtype=bool)
    n_missing = int(missing.sum())
    sparse = 2 * n_missing > len(values)
    present = values[~missing] if sparse else (values.copy() if n_missing else values)
    if n_missing and not sparse:
        present[missing] = ""
    items = present.tolist()
    try:
        joined = _SEP.join(items)
    except TypeError:  # a value that is not a str: stored as its text
        items = [v if type(v) is str else str(v) for v in items]
        joined = _SEP.join(items)
    if joined.count(_SEP) != max(len(items) - 1, 0):  # a value holds the separator itself
        all_items = values.tolist()
        body = json.dumps([None if m else (v if type(v) is str else str(v))
                           for v, m in zip(all_items, missing, strict=True)], ensure_ascii=False).encode()
        return {"kind": "json"}, body
    if sparse:
        at = np.flatnonzero(~missing).astype("<i4")
        return {"kind": "sparse", "present": int(at.size)}, at.tobytes() + joined.encode()
    gaps = np.flatnonzero(missing).astype("<i4")
    return {"kind": "text", "missing": int(gaps.size)}, gaps.tobytes() + joined.encode()


def encode(frame: pd.DataFrame, times: Sequence[str] = ()) -> bytes:
    """The frame (text columns, and UTC datetime columns named in ``times``) as a blob."""
    header: dict[str, object] = {"version": FORMAT_VERSION, "rows": len(frame), "columns": []}
    bodies: list[bytes] = []
    for name in frame.columns:
        if name in times:
            stamps = pd.to_datetime(frame[name], utc=True, errors="coerce")
            ns = stamps.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
            meta, body = {"kind": "time"}, ns.astype(">i8").tobytes()
        else:
            meta, body = text_column(np.asarray(frame[name].to_numpy(dtype=object), dtype=object))
        packed = zlib.compress(body, LEVEL)
        header["columns"].append({"name": name, **meta, "bytes": len(packed)})  # type: ignore[union-attr]
        bodies.append(packed)
    head = json.dumps(header).encode()
    return MAGIC + len(head).to_bytes(8, "big") + head + b"".join(bodies)


def decode(blob: bytes, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The frame a blob holds: text columns as object arrays with None for missing, time
    columns as UTC datetimes (model conventions), in the stored order; only ``columns``
    when given (the others are skipped, not split)."""
    if blob.startswith(MAGIC):
        raw, at, inflate = memoryview(blob), len(MAGIC), True
    else:  # version 1: one zlib stream
        raw, at, inflate = memoryview(zlib.decompress(blob)), 0, False
    size = int.from_bytes(raw[at : at + 8], "big")
    header = json.loads(bytes(raw[at + 8 : at + 8 + size]))
    if header.get("version") != (FORMAT_VERSION if inflate else 1):
        raise ValueError(f"state blob format {header.get('version')} is not {FORMAT_VERSION}")
    n = int(header["rows"])
    at += 8 + size
    wanted = [c for c in header["columns"] if columns is None or c["name"] in columns]
    text_names = [c["name"] for c in wanted if c["kind"] != "time"]
    table = np.empty((len(text_names), n), dtype=object)
    times: dict[str, pd.Series] = {}
    j = 0
    for col in header["columns"]:
        stored = raw[at : at + col["bytes"]]
        at += col["bytes"]
        if columns is not None and col["name"] not in columns:
            continue
        body = zlib.decompress(stored) if inflate else bytes(stored)
        if col["kind"] == "time":
            ns = np.frombuffer(body, dtype=">i8").astype(np.int64)
            stamps = ns.view("datetime64[ns]").copy()
            stamps[ns == _NAT] = np.datetime64("NaT")
            times[col["name"]] = pd.Series(stamps).dt.tz_localize("UTC")
            continue
        if n:
            if col["kind"] == "json":
                table[j] = json.loads(body)
            elif col["kind"] == "sparse":
                k = 4 * int(col["present"])
                table[j] = None
                if k:
                    table[j, np.frombuffer(body[:k], dtype="<i4")] = body[k:].decode().split(_SEP)
            elif col["kind"] != "text":
                raise ValueError(f"state blob column {col['name']!r} has an unknown kind {col['kind']!r}")
            else:
                gaps: object = col["missing"]
                if inflate:  # version 2: the positions lead the column's own stream
                    k = 4 * int(gaps)  # type: ignore[call-overload]
                    gaps, body = np.frombuffer(body[:k], dtype="<i4"), body[k:]
                table[j] = body.decode().split(_SEP)
                if len(gaps):  # type: ignore[arg-type]
                    table[j, gaps] = None
        j += 1
    frame = pd.DataFrame(table.T, columns=text_names, dtype=object, copy=False)
    for name, values in times.items():
        frame[name] = values
    return frame[[c["name"] for c in wanted]]
