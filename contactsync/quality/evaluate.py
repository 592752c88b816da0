"""The vectorised quarantine: runs the R19 check records (``quality.checks``) over a frame.

One evaluator per test, each over whole columns with numpy/pandas (no per-row Python in
the common case), so a cycle of 100,000 contacts is checked in a fraction of a second.
Each failing value becomes one problem row whose reason is the check's ``problem`` text
filled with what was found (the length, the character, the line).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from contactsync.model import EMAIL_FIELDS, FIELD, FIELDS, NAME_FIELDS
from contactsync.quality.checks import RULE, Check

#: One row per problem. ``action_id`` is set for plan problems (None for record problems).
PROBLEM_COLUMNS: tuple[str, ...] = (
    "side", "record_id", "field", "rule", "reason", "value", "action_id",
)
_JOIN = "\ue000"  # never a control character: lets one regex scan a whole column
_PREVIEW = 60
Where = str | np.ndarray  # the side to fix a value in: one for all rows, or one per row


def empty_problems() -> pd.DataFrame:
    """A problems frame with no rows (so concatenation keeps the columns)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in PROBLEM_COLUMNS})


class Collector:
    """Accumulates problems as column lists; builds the frame once at the end."""

    def __init__(
        self, *, side: str | np.ndarray, ids: np.ndarray, action_ids: np.ndarray | None = None
    ) -> None:
        self.side = side
        self.ids = ids
        self.action_ids = action_ids
        self.rows: dict[str, list] = {c: [] for c in PROBLEM_COLUMNS}

    def add(
        self, pos: np.ndarray, field: str | None, reasons: list[str], values: Iterable[object]
    ) -> None:
        if len(pos) == 0:
            return
        r = self.rows
        r["side"] += _pick(self.side, pos)
        r["record_id"] += list(self.ids[pos])
        r["field"] += [field] * len(pos)
        r["rule"] += [RULE] * len(pos)
        r["reason"] += reasons
        r["value"] += [_preview(v) for v in values]
        r["action_id"] += list(self.action_ids[pos]) if self.action_ids is not None else [None] * len(pos)

    def frame(self) -> pd.DataFrame:
        if not self.rows["rule"]:
            return empty_problems()
        return pd.DataFrame({c: pd.Series(self.rows[c], dtype=object) for c in PROBLEM_COLUMNS})


def written_fields(fields: pd.Series) -> dict[str, np.ndarray]:
    """For each canonical field, which rows list it in ``fields``.

    A plan has few distinct ``fields`` strings, so each distinct one is parsed once and
    the rows look theirs up by code: no per-row Python.
    """
    codes, uniques = pd.factorize(pd.Series(fields.to_numpy(dtype=object)), use_na_sentinel=True)
    listed = [{p.strip() for p in str(u).split(",")} for u in np.asarray(uniques, dtype=object)]
    masks: dict[str, np.ndarray] = {}
    for field in FIELDS:
        by_code = np.fromiter((field in s for s in listed), dtype=bool, count=len(listed))
        by_code = np.append(by_code, False)  # code -1 (missing) lists nothing
        masks[field] = by_code[codes]
    return masks


def run_checks(
    out: Collector,
    frame: pd.DataFrame,
    checks: Iterable[Check],
    where: Where,
    rows: dict[str, np.ndarray | None],
    written: dict[str, np.ndarray] | None = None,
) -> None:
    """Every check whose column ``frame`` has; ``rows`` masks by Check.rows ('all': None),
    ``written`` by column for 'written' checks."""
    for check in checks:
        if check.test == "has_name":
            if not any(f in frame.columns for f in NAME_FIELDS + EMAIL_FIELDS):
                continue
        elif check.column not in frame.columns:
            continue
        mask = written.get(check.column) if check.rows == "written" and written else rows.get(check.rows)
        _EVALUATORS[check.test](out, check, frame, mask, where)


# --- helpers ----------------------------------------------------------------------------
def _pick(where: Where, pos: np.ndarray) -> list[str]:
    if isinstance(where, str):
        return [where] * len(pos)
    return list(where[pos])


def _preview(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    short = text[:_PREVIEW]
    shown = "".join(
        ch if unicodedata.category(ch) != "Cc" or ch == "\n" else repr(ch)[1:-1] for ch in short
    ).replace("\n", "\\n")
    return shown + ("…" if len(text) > _PREVIEW else "")


def present(values: pd.Series, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Positions and values (as str) that are set (not NA) and selected by ``rows``.

    On the column's values, not the Series: a check of a cycle's few hundred changed rows
    is mostly pandas' per-call overhead otherwise (issue 15: 171 calls per quarantine)."""
    arr = values.to_numpy(dtype=object)
    mask = ~np.asarray(pd.isna(arr), dtype=bool)
    if rows is not None:
        mask &= rows
    pos = np.flatnonzero(mask)
    vals = arr[pos]
    if len(vals) and infer_dtype(vals, skipna=False) != "string":
        vals = np.array([v if isinstance(v, str) else str(v) for v in vals], dtype=object)
    return pos, vals


def lengths(vals: np.ndarray) -> np.ndarray:
    return np.fromiter(map(len, vals), dtype=np.int64, count=len(vals))


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _report(out: Collector, check: Check, pos: np.ndarray, where: Where, values: Iterable[object],
            found: Iterable[dict[str, object]] | None = None) -> None:
    """Problems at ``pos``, the check's ``problem`` filled with ``where`` and ``found``.
    A record without any name belongs to no single field (field None)."""
    if len(pos) == 0:
        return
    extra = found if found is not None else [{}] * len(pos)
    reasons = [check.problem.format(where=x, **kw)
               for x, kw in zip(_pick(where, pos), extra, strict=True)]
    out.add(pos, None if check.test == "has_name" else check.column, reasons, values)


# --- one evaluator per test ----------------------------------------------------------------
def _length(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    pos, vals = present(frame[check.column], rows)
    n = lengths(vals)
    bad = np.flatnonzero(n > (check.limit or 0))
    _report(out, check, pos[bad], where, vals[bad], [{"n": int(k)} for k in n[bad]])


def _no_control(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    """One regex scan over the whole column joined; matches map back by offset."""
    pos, vals = present(frame[check.column], rows)
    if len(pos) == 0:
        return
    n = lengths(vals)
    joined = _JOIN.join(vals)
    starts = np.cumsum(n + 1) - (n + 1)
    found: dict[int, str] = {}
    for m in _compiled(str(check.pattern)).finditer(joined):
        i = int(np.searchsorted(starts, m.start(), side="right") - 1)
        found.setdefault(i, m.group())
    if not found:
        return
    idx = np.fromiter(found, dtype=np.int64, count=len(found))
    info = [{"code": f"{ord(found[i]):04X}", "char": unicodedata.name(found[i], "control")}
            for i in idx]
    _report(out, check, pos[idx], where, vals[idx], info)


def _match(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    """A value the pattern does not find fails; a blank field value is a missing one."""
    pos, vals = present(frame[check.column], rows)
    search = _compiled(str(check.pattern)).search
    blank_ok = check.column in FIELDS
    bad = np.asarray([i for i, v in enumerate(vals)
                      if search(v) is None and (not blank_ok or v.strip())], dtype=np.int64)
    _report(out, check, pos[bad], where, vals[bad])


def _street_lines(frame: pd.DataFrame, column: str, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos, vals = present(frame[column], rows)
    vals = np.array([v.replace("\r\n", "\n") for v in vals], dtype=object)
    return pos, vals, lengths(vals)


def _max_lines(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    pos, vals, _ = _street_lines(frame, check.column, rows)
    limit = check.limit or 0
    breaks = np.fromiter((v.count("\n") for v in vals), dtype=np.int64, count=len(vals))
    cand = np.flatnonzero(breaks >= limit)  # only a value with enough breaks can have too many
    counts = np.fromiter((len(vals[i].rstrip("\n").split("\n")) for i in cand), dtype=np.int64,
                         count=len(cand))
    at = cand[counts > limit]
    _report(out, check, pos[at], where, vals[at], [{"n": int(k)} for k in counts[counts > limit]])


def _line_length(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    pos, vals, n = _street_lines(frame, check.column, rows)
    limit = check.limit or 0
    columns = FIELD[check.column].crm_columns
    at, info = [], []
    for i in np.flatnonzero(n > limit):  # only a long value can have a long line
        lines = vals[i].rstrip("\n").split("\n")
        k = next((k for k, ln in enumerate(lines) if len(ln) > limit), None)
        if k is not None:
            at.append(i)
            info.append({"k": k + 1, "n": len(lines[k]), "column": columns[min(k, len(columns) - 1)]})
    idx = np.asarray(at, dtype=np.int64)
    _report(out, check, pos[idx], where, vals[idx], info)


def _calendar(vals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(blank, is a calendar date YYYY-MM-DD, its year), vectorised on the code points."""
    n = lengths(vals)
    blank = np.zeros(len(vals), dtype=bool)
    maybe_blank = np.flatnonzero(n != 10)
    blank[maybe_blank] = [not vals[i].strip() for i in maybe_blank]
    is_date = np.zeros(len(vals), dtype=bool)
    year = np.zeros(len(vals), dtype=np.int64)
    ten = np.flatnonzero(n == 10)
    if len(ten):
        cp = vals[ten].astype("U10").view(np.uint32).reshape(-1, 10).astype(np.int64)
        dig = cp[:, [0, 1, 2, 3, 5, 6, 8, 9]] - ord("0")
        shaped = ((dig >= 0) & (dig <= 9)).all(axis=1)
        shaped &= (cp[:, 4] == ord("-")) & (cp[:, 7] == ord("-"))
        yy = dig[:, 0] * 1000 + dig[:, 1] * 100 + dig[:, 2] * 10 + dig[:, 3]
        mm = dig[:, 4] * 10 + dig[:, 5]
        dd = dig[:, 6] * 10 + dig[:, 7]
        leap = (yy % 4 == 0) & ((yy % 100 != 0) | (yy % 400 == 0))
        month_days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
        ok_m = (mm >= 1) & (mm <= 12)
        dim = month_days[np.clip(mm, 0, 12)] + (leap & (mm == 2))
        is_date[ten] = shaped & ok_m & (dd >= 1) & (dd <= dim)
        year[ten] = yy
    return blank, is_date, year


def _date(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    pos, vals = present(frame[check.column], rows)
    blank, is_date, _ = _calendar(vals)
    bad = np.flatnonzero(~blank & ~is_date)
    _report(out, check, pos[bad], where, vals[bad])


def _date_from(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    pos, vals = present(frame[check.column], rows)
    _, is_date, year = _calendar(vals)
    bad = np.flatnonzero(is_date & (year < (check.limit or 0)))  # YYYY caps the top at 9999
    _report(out, check, pos[bad], where, vals[bad])


def _has_name(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    """Rows (of ``rows``) without a non-blank first name, last name or email."""
    missing = np.ones(len(frame), dtype=bool) if rows is None else rows.copy()
    for field in NAME_FIELDS + EMAIL_FIELDS:
        if field not in frame.columns or not missing.any():
            continue
        pos, vals = present(frame[field], missing)
        if len(pos):
            spaces = np.fromiter(map(str.isspace, vals), dtype=bool, count=len(vals))
            missing[pos[(lengths(vals) > 0) & ~spaces]] = False
    bad = np.flatnonzero(missing)
    _report(out, check, bad, where, [None] * len(bad))


def _not_null(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    bad = np.flatnonzero(frame[check.column].isna().to_numpy())
    _report(out, check, bad, where, [None] * len(bad))


def _unique(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    s = frame[check.column]
    bad = np.flatnonzero(s.duplicated(keep=False).to_numpy() & s.notna().to_numpy())
    _report(out, check, bad, where, s.to_numpy(dtype=object)[bad])


def _in_set(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    pos, vals = present(frame[check.column], rows)
    bad = np.flatnonzero(~pd.Series(vals, dtype=object).isin(check.values).to_numpy())
    _report(out, check, pos[bad], where, vals[bad])


def _not_blank(out: Collector, check: Check, frame: pd.DataFrame, rows, where: Where) -> None:
    selected = np.ones(len(frame), dtype=bool) if rows is None else rows
    pos, vals = present(frame[check.column], selected)
    named = np.zeros(len(frame), dtype=bool)
    named[pos[np.array([bool(v.strip()) for v in vals], dtype=bool)]] = True
    bad = np.flatnonzero(selected & ~named)
    _report(out, check, bad, where, [None] * len(bad))


_EVALUATORS: dict[str, Callable[[Collector, Check, pd.DataFrame, np.ndarray | None, Where], None]] = {
    "length": _length, "no_control": _no_control, "match": _match, "max_lines": _max_lines,
    "line_length": _line_length, "date": _date, "date_from": _date_from, "has_name": _has_name,
    "not_null": _not_null, "unique": _unique, "in_set": _in_set, "not_blank": _not_blank,
}
