"""The CRM's raw column values as canonical values (``contactsync.model``), vectorised.

Shared by the two ways a read is built (``extract`` from the driver's rows, ``arrow_frame``
from an Arrow table), so that both give the same times, texts and streets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def to_utc(values: pd.Series | np.ndarray) -> pd.Series:
    """Naive database datetimes (UTC by the CRM's convention) as tz-aware UTC.

    ``cache=False``: pandas' cache of distinct values costs more than it saves here (a
    100,000-value column with NULLs: 70 ms cached against 9 ms, issue 15 goal 2); each
    value is parsed the same way either way."""
    return pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce", cache=False)


def strings(values: pd.Series) -> pd.Series:
    """A text column as ``model.conform`` leaves it (object, None for missing): what the
    DBAPI drivers give already (SQLite, psycopg, pyodbc return None for NULL, never NaN),
    so no scan of 75,000 values per column (~0.3 s a read) is made to find none."""
    return values if values.dtype == object else values.astype(object).where(values.notna(), None)


#: The canonical text fields whose values repeat across a group: the account and what comes
#: with it (its id, name, site, switchboard), the job and where people are. The driver
#: gives one str per row; these get one per distinct value, as the Arrow read's
#: dictionary gives them (``arrow_frame.objects``). The names, the emails and the ids
#: are left alone: nearly all distinct, their hashing would cost ~6 ms a column for none.
REPEATING_TEXT: tuple[str, ...] = (
    "account_id", "company", "web_address", "work_phone", "job_title", "department",
    "categories", "city", "state", "postal_code", "country",
)


def shared(values: pd.Series) -> pd.Series:
    """``values`` with every equal str one object (None stays None): a 100,000-row group's
    company, city or job title as a few objects, not 100,000 (issue 15 goal 3: ~65 bytes
    each, with the CRM read at 75,000 members holding 20 MB less; 1-4 ms a column).

    Left as it is when more than half its values are distinct (too little to gain), and
    when a value is not a str: hashing would make 1, 1.0 and True one value."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object))
    if len(uniques) == 0 or 2 * len(uniques) > len(values) or not all(type(u) is str for u in uniques.tolist()):
        return values
    table = np.empty(len(uniques) + 1, dtype=object)  # the last slot: None (code -1)
    table[:-1] = uniques
    table[-1] = None
    return pd.Series(table.take(codes), index=values.index, dtype=object)


def street_from_lines(lines: pd.DataFrame) -> pd.Series:
    """ADDRESS1..4 joined with "\n", trailing empty lines dropped (None if all empty)."""
    street = street_of([lines[c].to_numpy(dtype=object) for c in lines.columns])
    return pd.Series(street, index=lines.index, dtype=object)


def street_of(lines: Sequence[np.ndarray]) -> np.ndarray:
    """The street of each row from its address lines (object arrays, missing = ""):
    the lines joined with "\n", then trailing whitespace stripped by Python's rules
    (``str.rstrip``, as ``model.PY_TEXT`` pins them), "" as None.

    Most addresses have one line: only the rows with a second, third or fourth line are
    joined (the cost grows with them, not with the group), and the strip is one pass of
    ``str.rstrip`` over the values, not pandas' ``.str`` machinery (0.55 s a 100,000-row
    read under the profiler, issue 15 goal 2)."""
    missing = [np.asarray(pd.isna(line), dtype=bool) for line in lines]
    street = np.where(missing[0], "", lines[0])
    if len(lines) > 1:
        more = np.flatnonzero(~np.logical_and.reduce(missing[1:]))
        for i in more.tolist():
            street[i] = "\n".join("" if gone[i] else _text(line[i]) for line, gone in zip(lines, missing, strict=True))
    out = np.empty(len(street), dtype=object)
    out[:] = [(v if type(v) is str else _text(v)).rstrip() or None for v in street.tolist()]
    return out


def _text(value: object) -> str:
    """A line that the driver did not give as text (a number typed into it), as text."""
    return value if isinstance(value, str) else str(value)


def newest(times: list[pd.Series]) -> pd.Series:
    """Row by row the newest of ``times`` (missing ones skipped; all missing: NaT), as
    ``DataFrame.max(axis=1)`` gives it, in one numpy pass when the units agree (NaT is
    int64's least value, so it never wins over a time)."""
    if len({t.dtype for t in times}) != 1 or not isinstance(times[0].dtype, pd.DatetimeTZDtype):
        return pd.concat(times, axis=1).max(axis=1)
    naive = [t.dt.tz_convert(None).to_numpy() for t in times]
    newest = np.maximum.reduce([n.view(np.int64) for n in naive]).view(naive[0].dtype)
    return pd.Series(newest).dt.tz_localize("UTC")


def flag(values: pd.Series) -> pd.Series:
    """A 0/1 column from SQL (None: 0) as bool."""
    return values.fillna(0).astype(int) == 1


def dates(values: pd.Series) -> pd.Series:
    """Birthdays as canonical 'YYYY-MM-DD' text (None when missing): only the rows that
    have one are parsed (most contacts have none)."""
    out = np.full(len(values), None, dtype=object)
    present = values.notna().to_numpy()
    if present.any():
        parsed = to_utc(values[present])
        out[present] = parsed.dt.strftime("%Y-%m-%d").astype(object).where(parsed.notna(), None).to_numpy()
    return pd.Series(out, dtype=object)
