"""The CRM's raw column values as canonical values (``contactsync.model``), vectorised.

Shared by the two ways a read is built (``extract`` from the driver's rows, ``arrow_frame``
from an Arrow table), so that both give the same times, texts and streets.
"""

from __future__ import annotations

import pandas as pd

from contactsync import model


def to_utc(values: pd.Series) -> pd.Series:
    """Naive database datetimes (UTC by the CRM's convention) as tz-aware UTC."""
    return pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")


def strings(values: pd.Series) -> pd.Series:
    """A text column as ``model.conform`` leaves it (object, None for missing): what the
    DBAPI drivers give already (SQLite, psycopg, pyodbc return None for NULL, never NaN),
    so no scan of 75,000 values per column (~0.3 s a read) is made to find none."""
    return values if values.dtype == object else values.astype(object).where(values.notna(), None)


def street_from_lines(lines: pd.DataFrame) -> pd.Series:
    """ADDRESS1..4 joined with "\n", trailing empty lines dropped (None if all empty).

    Most addresses have one line: only the rows with a second, third or fourth line are
    joined (the cost grows with them, not with the group)."""
    cols = list(lines.columns)
    first = lines[cols[0]].astype(object)
    street = first.where(first.notna(), "")
    more = lines[cols[1:]].notna().to_numpy().any(axis=1) if len(cols) > 1 else None
    if more is not None and more.any():
        sub = lines.loc[more]
        filled = [sub[c].astype(object).where(sub[c].notna(), "").astype(model.PY_TEXT) for c in cols]
        joined = filled[0]
        for col in filled[1:]:
            joined = joined + "\n" + col
        street = street.copy()
        street.loc[more] = joined.astype(object)
    street = street.astype(model.PY_TEXT).str.rstrip().astype(object)  # trailing blank lines (and blanks) go
    return street.where(street != "", None)
