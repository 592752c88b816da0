"""The canonical CRM frame built from an Arrow table of the contact read (crm/arrow_read.py).

The frame is exactly the one the SQLAlchemy path builds (``extract.CrmReader._canonical``;
tests/crm/test_arrow_read.py holds them equal): text as object columns with None, times
as UTC, flags as bool (``model.conform``). What changes is how it is made:
- the times are parsed, the newest of the three modification times taken (R9) and the
  birthday formatted in Arrow, not per value in Python;
- the street's four lines are joined and trimmed in Arrow;
- each text column becomes Python strings once per distinct value (Arrow's dictionary
  encoding, then a take): a city, a company or a state repeated over 100,000 rows is one
  object, not 100,000 (issue 15 goal 3: the CRM frame's memory).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contactsync import model
from contactsync.crm.values import to_utc

#: Every character Python's ``str.rstrip()`` removes (``str.isspace``), so the street is
#: trimmed in Arrow exactly as ``values.street_from_lines`` trims it in pandas.
PY_WHITESPACE = "".join(chr(c) for c in (
    *range(0x09, 0x0E), *range(0x1C, 0x21), 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
    0x2028, 0x2029, 0x202F, 0x205F, 0x3000))
_UTC = pa.timestamp("us", tz="UTC")


def texts(col: pa.ChunkedArray | pa.Array) -> pd.Series:
    """:func:`objects` as an object Series (pandas 3 would infer its ``str`` dtype)."""
    return pd.Series(objects(col), dtype=object)


def objects(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A text column as an object array of str with None, one object per distinct value."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if pa.types.is_null(arr.type) or arr.null_count == n:
        return np.full(n, None, dtype=object)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return np.array(arr.to_pylist() + [None], dtype=object)[:-1]  # as the DBAPI gives them
    enc = arr.dictionary_encode()
    values = np.empty(len(enc.dictionary) + 1, dtype=object)  # the last slot: None
    values[:-1] = enc.dictionary.to_numpy(zero_copy_only=False)
    return values.take(enc.indices.fill_null(len(values) - 1).to_numpy())


def frame_of_objects(table: pa.Table) -> pd.DataFrame:
    """A table as a frame of object columns with None (what ``rows.read_frame`` gives)."""
    return pd.DataFrame({name: texts(table.column(name)) for name in table.column_names},
                        columns=table.column_names)


def utc_times(col: pa.ChunkedArray) -> pa.Array | None:
    """Database times as UTC (naive ones are UTC by the CRM's convention), or None when a
    value is not ISO 8601 (the caller then parses the column as pandas does)."""
    arr = col.combine_chunks()
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), _UTC)
    if pa.types.is_timestamp(arr.type):  # PostgreSQL's timestamp: naive is read as UTC
        return arr.cast(pa.timestamp("us", tz=arr.type.tz)).cast(_UTC)
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        return None
    for target in (pa.timestamp("us"), _UTC):  # naive texts (SQLite's), else with offsets
        try:
            return arr.cast(target).cast(_UTC)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


def _times(table: pa.Table, name: str) -> pa.Array:
    parsed = utc_times(table.column(name))
    if parsed is not None:
        return parsed
    fallback = to_utc(texts(table.column(name)))
    return pa.array(fallback.astype("datetime64[us, UTC]"), type=_UTC)


def _flag(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks()
    if pa.types.is_null(arr.type):
        return np.zeros(len(arr), dtype=bool)
    return pc.equal(pc.fill_null(arr.cast(pa.int64()), 0), 1).to_numpy(zero_copy_only=False)


def _text(col: pa.ChunkedArray) -> pa.Array:
    arr = col.combine_chunks()
    return pa.nulls(len(arr), pa.string()) if pa.types.is_null(arr.type) else arr.cast(pa.string())


def street(table: pa.Table, columns: list[str]) -> pd.Series:
    """ADDRESS1..4 joined with "\\n", trailing blank lines and blanks dropped, None if empty
    (``values.street_from_lines``)."""
    lines = [pc.fill_null(_text(table.column(c)), "") for c in columns]
    joined = pc.binary_join_element_wise(*lines, "\n") if len(lines) > 1 else lines[0]
    trimmed = pc.utf8_rtrim(joined, characters=PY_WHITESPACE)
    return texts(pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed))


def _series_of_times(arr: pa.Array) -> pd.Series:
    if arr.null_count == len(arr):  # pandas gives a column of NaT its own unit: the same here
        return to_utc(pd.Series([None] * len(arr), dtype=object))
    return pd.Series(arr.to_pandas(), dtype="datetime64[us, UTC]")


def canonical(table: pa.Table, street_columns: list[str]) -> pd.DataFrame:
    """The contact read's table (``CrmReader._contact_select``'s columns) as the canonical
    CRM frame (``model.CRM_COLUMNS``)."""
    if table.num_rows == 0:
        return model.empty_frame(model.CRM_COLUMNS)
    mods = [_times(table, c) for c in ("_c_mod", "_ad_mod", "_a_mod")]
    birthday = _times(table, "_birthday")
    made: dict[str, pd.Series] = {
        "crm_created": _series_of_times(_times(table, "crm_created")),
        # R9: the newest of CONTACT's, ADDRESS's and ACCOUNT's MODIFYDATE
        "crm_modified": _series_of_times(pc.max_element_wise(  # (no kernel for tz-aware)
            *(m.cast(pa.timestamp("us")) for m in mods), skip_nulls=True).cast(_UTC)),
        "read_only": pd.Series(_flag(table.column("_ro"))),  # R1: every grant 'R'
        "in_group": pd.Series(_flag(table.column("in_group"))),
        "birthday": texts(pc.strftime(birthday, format="%Y-%m-%d")),
        "street": street(table, street_columns),
    }
    columns = {c: made[c] if c in made else texts(table.column(c)) for c in model.CRM_COLUMNS}
    return pd.DataFrame(columns, columns=list(model.CRM_COLUMNS))
