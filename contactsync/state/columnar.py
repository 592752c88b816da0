"""A frame of text and time columns as one compressed blob: how a user's links and mirror
are kept, so that a cycle loads 100,000 of them in a fraction of a second.

Read as rows (SQLite ``fetchall``: one value object and one row tuple per field of every
contact, then a 2-D array, then ``conform``), 100,000 mirror rows took ~1.9 s and as many
links ~1.2 s of every cycle that cannot settle (bench/README.md, issue 15). As columns, a
text column is its values joined by a separator and split back by one C call, a time
column is its int64 nanoseconds, each column compressed on its own: decoding costs a
tenth. Format (version 3):

    MAGIC | 8 bytes big-endian header length | header JSON | one LZ4 frame per column

The header gives ``rows``, and per column its ``name``, ``kind`` (``text``: the values
joined by U+001F after the int32 positions of the ``missing`` ones; ``sparse``, for a
column more than half empty: the values present joined after the int32 positions of the
``present`` ones; ``dict``, for a dense column of few distinct values: int32 codes and
the ``distinct`` values joined; ``json``: a JSON list,
for a column whose values contain U+001F or U+001E themselves; ``time``: int64
nanoseconds since the epoch, UTC, missing = the smallest int64) and its compressed byte
length, and its ``raw`` length. Each column is compressed on its own so that a reader of two columns (R7's move
check reads crm_id and outlook_id of every link, contactsync.state.links) inflates two,
not twenty-eight. Versions 2 (zlib streams, no ``dict`` columns, no ``raw``) and 1 (the
same header and bodies as one zlib stream, no MAGIC) are still read; a store's blobs
take version 3 at their next compaction. Nothing is pickled: a blob is data, never code.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Sequence

import lz4.frame
import numpy as np
import pandas as pd

FORMAT_VERSION = 3
#: Starts a blob of that version; a version-1 blob starts with zlib's header byte 0x78.
MAGICS = {2: b"CSB2", 3: b"CSB3"}
MAGIC = MAGICS[FORMAT_VERSION]
#: A dense text column with at most this share of distinct values is stored as codes.
DICT_SHARE = 0.25
_SEP = "\x1f"
_NAT = np.iinfo(np.int64).min
#: zlib level: 1 compresses a 100,000-contact mirror 6x at several hundred MB/s.
LEVEL = 1


def lz4_compress(body: bytes) -> bytes:
    """Version 3's codec: one LZ4 frame (the standard frame format), which inflates a
    100,000-contact mirror's columns in ~5 ms where zlib took ~60 ms, for blobs ~1.3x
    zlib's size. The ``lz4`` package, not pyarrow's codec that wrote the first version-3
    blobs: the same frame format (each reads the other's), without pyarrow's ~60 MB in
    every process (issue 15 goal 3)."""
    return lz4.frame.compress(body, store_size=True)


def lz4_decompress(stored: bytes | memoryview, size: int) -> bytes:
    """One column's LZ4 frame inflated; ``size`` (the header's ``raw``) is checked, so a
    truncated or foreign body is an error here, not a wrong column further on. Frames
    pyarrow wrote carry no content size: lz4 then grows its buffer as it inflates."""
    body = lz4.frame.decompress(stored)
    if len(body) != size:
        raise ValueError(f"state blob column inflated to {len(body)} bytes, not {size}: the blob is damaged")
    return body


def _few_distinct(values: np.ndarray, sample: int = 2_000) -> bool:
    """Whether a column may be worth codes, judged on its first values: a column of ids or
    names is not factorised in full only to be stored as text (~10 ms per 100,000)."""
    head = [v for v in values[:sample].tolist() if v is not None]
    return len(set(head)) <= DICT_SHARE * max(len(head), 1)


def text_column(values: np.ndarray, *, codes: bool = False) -> tuple[dict[str, object], bytes]:
    """A text column's header entry and body.

    ``text``: the positions of its missing values as little-endian int32 (``missing`` =
    how many), then the values joined by U+001F. ``sparse`` (more than half missing): the
    positions of the values present (``present`` = how many), then those values joined:
    a column that is empty in most contacts (middle name, spouse, ...; 16 of the 27 link
    columns in the 100,000-contact bench) then decodes without splitting 100,000 empty
    strings only to overwrite them. ``dict`` (``codes``, version 3: a dense column of few
    distinct values, at most ``DICT_SHARE``: company, city, job title, status): int32
    codes (-1 = missing) and the ``distinct`` values joined, decoded by one take that
    shares each value's one object (no split of 100,000 copies, less memory).
    The positions sit in the column's own stream, not in
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
    if codes and _few_distinct(values):
        found, uniques = pd.factorize(values, use_na_sentinel=True)
        if len(uniques) <= DICT_SHARE * len(values):
            words = _SEP.join(u if type(u) is str else str(u) for u in uniques.tolist())  # no separator: checked
            return {"kind": "dict", "distinct": len(uniques)}, found.astype("<i4").tobytes() + words.encode()
    gaps = np.flatnonzero(missing).astype("<i4")
    return {"kind": "text", "missing": int(gaps.size)}, gaps.tobytes() + joined.encode()


def encode(frame: pd.DataFrame, times: Sequence[str] = ()) -> bytes:
    """The frame (text columns, and UTC datetime columns named in ``times``) as a blob."""
    return encode_columns(len(frame), ((name, frame[name]) for name in frame.columns), times)


def time_ns(values: pd.Series | np.ndarray) -> np.ndarray:
    """UTC datetimes as int64 nanoseconds, missing = the smallest int64 (the stored form)."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return values
    stamps = pd.to_datetime(pd.Series(values), utc=True, errors="coerce")
    return stamps.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view(np.int64)


def encode_columns(
    rows: int, columns: Iterable[tuple[str, pd.Series | np.ndarray]], times: Sequence[str] = (),
    *, version: int = FORMAT_VERSION,
) -> bytes:
    """A blob of ``rows`` rows from columns given one at a time: each is encoded and
    compressed before the next is asked for, so a caller that builds them one by one
    (``blobs.compact``) never holds more than one column of values (issue 15: the first
    sync's peak of memory was a whole 100,000-row mirror decoded to be written again).
    A time column may come as its int64 nanoseconds (:func:`time_ns`). ``version`` 2
    (zlib, no codes: what older stores hold) is written only to test the reader."""
    if version not in MAGICS:
        raise ValueError(f"state blob format {version} cannot be written")
    header: dict[str, object] = {"version": version, "rows": rows, "columns": []}
    bodies: list[bytes] = []
    for name, values in columns:
        if len(values) != rows:
            raise ValueError(f"state blob column {name!r} has {len(values)} values, not {rows}")
        if name in times:
            meta, body = {"kind": "time"}, time_ns(values).astype(">i8").tobytes()
        else:
            meta, body = text_column(np.asarray(
                values.to_numpy(dtype=object) if isinstance(values, pd.Series) else values, dtype=object),
                codes=version >= 3)
        del values
        packed = lz4_compress(body) if version >= 3 else zlib.compress(body, LEVEL)
        header["columns"].append(  # type: ignore[union-attr]
            {"name": name, **meta, "bytes": len(packed), **({"raw": len(body)} if version >= 3 else {})})
        bodies.append(packed)
    head = json.dumps(header).encode()
    return MAGICS[version] + len(head).to_bytes(8, "big") + head + b"".join(bodies)


class Reader:
    """One blob's header, parsed once, and its columns decoded one at a time on demand."""

    def __init__(self, blob: bytes) -> None:
        version = next((v for v, magic in MAGICS.items() if blob.startswith(magic)), 1)
        if version > 1:
            raw, at, self._inflate = memoryview(blob), len(MAGICS[version]), True
        else:  # version 1: one zlib stream
            raw, at, self._inflate = memoryview(zlib.decompress(blob)), 0, False
        size = int.from_bytes(raw[at : at + 8], "big")
        header = json.loads(bytes(raw[at + 8 : at + 8 + size]))
        if header.get("version") != version:
            raise ValueError(f"state blob format {header.get('version')} is not {version} (its magic)")
        self.version = version
        self.rows = int(header["rows"])
        at += 8 + size
        self.columns: list[dict] = header["columns"]
        self._where: dict[str, tuple[int, int]] = {}
        for col in self.columns:
            self._where[col["name"]] = (at, at + col["bytes"])
            at += col["bytes"]
        self._raw = raw
        self._meta = {c["name"]: c for c in self.columns}

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    def is_time(self, name: str) -> bool:
        return bool(self._meta[name]["kind"] == "time")

    def _body(self, name: str) -> bytes:
        start, end = self._where[name]
        stored = self._raw[start:end]
        if self.version >= 3:
            return lz4_decompress(stored, int(self._meta[name]["raw"]))
        return zlib.decompress(stored) if self._inflate else bytes(stored)

    def time_ns(self, name: str) -> np.ndarray:
        """A time column as stored: int64 nanoseconds, missing = the smallest int64."""
        return np.frombuffer(self._body(name), dtype=">i8").astype(np.int64)

    def times(self, name: str) -> pd.Series:
        """A time column as UTC datetimes (NaT for missing)."""
        return utc_times(self.time_ns(name))

    def text_into(self, name: str, out: np.ndarray) -> None:
        """A text column's values (None for missing) written into ``out`` (rows long)."""
        col, n = self._meta[name], self.rows
        if not n:
            return
        body = self._body(name)
        if col["kind"] == "json":
            out[:] = json.loads(body)
        elif col["kind"] == "sparse":
            k = 4 * int(col["present"])
            out[:] = None
            if k:
                out[np.frombuffer(body[:k], dtype="<i4")] = body[k:].decode().split(_SEP)
        elif col["kind"] == "dict":
            k = 4 * n
            found = np.frombuffer(body[:k], dtype="<i4")
            words = np.empty(int(col["distinct"]) + 1, dtype=object)  # the last: missing
            if col["distinct"]:
                words[:-1] = body[k:].decode().split(_SEP)
            out[:] = words[found]  # -1 takes the last, None
        elif col["kind"] != "text":
            raise ValueError(f"state blob column {name!r} has an unknown kind {col['kind']!r}")
        else:
            gaps: object = col["missing"]
            if self._inflate:  # version 2: the positions lead the column's own stream
                k = 4 * int(gaps)  # type: ignore[call-overload]
                gaps, body = np.frombuffer(body[:k], dtype="<i4"), body[k:]
            out[:] = body.decode().split(_SEP)
            if len(gaps):  # type: ignore[arg-type]
                out[gaps] = None

    def text(self, name: str) -> np.ndarray:
        out = np.empty(self.rows, dtype=object)
        self.text_into(name, out)
        return out


def utc_times(ns: np.ndarray) -> pd.Series:
    """Stored int64 nanoseconds (missing = the smallest int64) as UTC datetimes, NaT for
    missing (model conventions)."""
    stamps = ns.view("datetime64[ns]").copy()
    stamps[ns == _NAT] = np.datetime64("NaT")
    return pd.Series(stamps).dt.tz_localize("UTC")


def decode(blob: bytes, columns: Sequence[str] | None = None,
           patch: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], None] | None = None) -> pd.DataFrame:
    """The frame a blob holds: text columns as object arrays with None for missing, time
    columns as UTC datetimes (model conventions), in the stored order; only ``columns``
    when given (the others are skipped, not split).

    ``patch(texts, times)``, when given, may change values in place before the frame is
    made: each text column's object array and each time column's int64 nanoseconds, by
    name (``blobs.read`` writes a 1 % delta into them: no second copy of the base)."""
    reader = Reader(blob)
    wanted = [c for c in reader.names if columns is None or c in columns]
    text_names = [c for c in wanted if not reader.is_time(c)]
    table = np.empty((len(text_names), reader.rows), dtype=object)
    for j, name in enumerate(text_names):  # one 2-D block: the frame takes it without a copy
        reader.text_into(name, table[j])
    times = {name: reader.time_ns(name) for name in wanted if reader.is_time(name)}
    if patch is not None:
        patch({name: table[j] for j, name in enumerate(text_names)}, times)
    frame = pd.DataFrame(table.T, columns=text_names, dtype=object, copy=False)
    for name, ns in times.items():  # in place: a reorder of the columns would copy the block
        frame.insert(wanted.index(name), name, utc_times(ns))
    return frame
