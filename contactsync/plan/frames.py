"""Small vectorised helpers every planning module shares: comparison and action rows.

Comparing 24 fields of 100,000 pairs through ``model.normalise`` costs seconds; most
values are byte-identical, so equality is first decided on the raw values and only the
rows that differ raw are normalised (raw-equal implies normalised-equal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from contactsync.model import EMAIL_FIELDS, FIELDS, conform, empty_frame
from contactsync.plan.schema import ACTION_COLUMNS, CONFLICT_COLUMNS, SNAPSHOT_COLUMNS


@lru_cache(maxsize=8)
def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return empty_frame(columns)


def empty(columns: tuple[str, ...]) -> pd.DataFrame:
    """An empty contract frame (cached: building one costs milliseconds; copies are free)."""
    return _empty(columns).copy()


def text(values: np.ndarray | pd.Series) -> np.ndarray:
    """Object array of str for messages and keys: None -> "" (numpy adds them in C)."""
    arr = np.array(values, dtype=object)
    arr[pd.isna(arr)] = ""
    return arr


def as_objects(values: pd.Series | np.ndarray | Sequence[object]) -> np.ndarray:
    """Object array of a contract column: strings with None for missing.

    Conformed object columns (model.conform) are taken as they are, without a scan: a
    stray NaN still compares correctly because every comparison falls back to
    :func:`norm` for values that are not identical.
    """
    if isinstance(values, pd.Series):
        if values.dtype == object:
            return values.to_numpy()
        return np.array(values.to_numpy(dtype=object, na_value=None), dtype=object)
    arr = np.asarray(values, dtype=object)
    if arr.size:
        missing = pd.isna(arr)
        if missing.any():
            arr = arr.copy()
            arr[missing] = None
    return arr


def _norm_text(value: object) -> str | None:
    """One value's comparison text (model.normalise): CRLF -> LF, trimmed, "" -> None."""
    v = (value if type(value) is str else str(value)).replace("\r\n", "\n").strip()
    return v or None


def _norm_email(value: object) -> str | None:
    """One email's match key: trimmed, lower-cased, "" -> None (no line breaks to keep)."""
    v = (value if type(value) is str else str(value)).strip().lower()
    return v or None


def norm(values: np.ndarray, *, email: bool = False) -> np.ndarray:
    """Comparison values (model.normalise semantics) of an object array: None = empty.

    One list comprehension over the present values: str methods called directly cost a
    third of pandas' ``.str`` accessor (which maps a lambda per value on object storage),
    and this is the planning's hottest loop (R7 keys, R8 comparisons).
    """
    arr = np.asarray(values, dtype=object)
    out = np.full(arr.shape, None, dtype=object)
    todo = np.flatnonzero(~pd.isna(arr))
    if todo.size:
        one = _norm_email if email else _norm_text
        out[todo] = [one(v) for v in arr[todo].tolist()]
    return out


def equal_values(a: np.ndarray, b: np.ndarray, *, email: bool = False) -> np.ndarray:
    """Element-wise normalised equality of two raw object arrays (None == empty).

    Identical values (None == None included) are equal without normalising; only the
    rest go through :func:`norm`.
    """
    same = np.array(a == b, dtype=bool)
    todo = np.flatnonzero(~same)
    if todo.size:
        na, nb = norm(a[todo], email=email), norm(b[todo], email=email)
        same[todo] = np.asarray(na == nb, dtype=bool)
    return same


def is_empty(values: np.ndarray) -> np.ndarray:
    """True where a raw value is missing or blank (normalised empty)."""
    missing = pd.isna(values)
    todo = np.flatnonzero(~missing)
    if todo.size:
        missing[todo] = pd.isna(norm(values[todo]))
    return missing


def is_email(field: str) -> bool:
    return field in EMAIL_FIELDS


def join_flags(masks: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Comma-separated names of the True flags per row ("" when none)."""
    out = np.full(n, "", dtype=object)
    for name, mask in masks.items():
        if mask.any():
            out[mask] = out[mask] + (name + ",")
    has = out != ""
    if has.any():
        out[has] = pd.Series(out[has], dtype="str").str[:-1].to_numpy(dtype=object)
    return out


def action_ids(side: str, op: str, key: np.ndarray, outlook_id: np.ndarray) -> np.ndarray:
    """Deterministic ids (R18): the same action planned twice gets the same id."""
    return f"{side}:{op}:" + text(key) + ":" + text(outlook_id)


def make_actions(
    side: str,
    op: str,
    rule: str | np.ndarray,
    reason: str | np.ndarray,
    n: int,
    *,
    crm_id: np.ndarray | None = None,
    outlook_id: np.ndarray | None = None,
    new_key: np.ndarray | None = None,
    account_id: np.ndarray | None = None,
    account_key: np.ndarray | None = None,
    account_name: np.ndarray | None = None,
    fields: str | np.ndarray = "",
    values: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """``n`` action rows of one side and operation, as ACTION_COLUMNS."""
    if n == 0:
        return empty(ACTION_COLUMNS)
    none = np.full(n, None, dtype=object)

    def col(v: object) -> np.ndarray:
        if v is None:
            return none
        if isinstance(v, str):
            return np.full(n, v, dtype=object)
        if isinstance(v, np.ndarray) and v.dtype == object:
            return v  # planning's own arrays: already None for missing
        return as_objects(v)

    crm, olk, new = col(crm_id), col(outlook_id), col(new_key)
    acct_key = col(account_key)
    key = np.where(pd.isna(crm), np.where(pd.isna(new), acct_key, new), crm)
    data: dict[str, np.ndarray] = {
        "action_id": action_ids(side, op, key, olk),
        "side": col(side),
        "op": col(op),
        "rule": col(rule),
        "reason": col(reason),
        "crm_id": crm,
        "outlook_id": olk,
        "new_key": new,
        "account_id": col(account_id),
        "account_key": acct_key,
        "account_name": col(account_name),
        "fields": col(fields),
    }
    for f in FIELDS:
        data[f] = col(values.get(f)) if values is not None and f in values else none
    return pd.DataFrame(data, columns=list(ACTION_COLUMNS), dtype=object)


#: Order in which the loaders must apply operations (accounts before the contacts that
#: refer to them, links before updates, deletes and unlinks last).
OP_ORDER = {
    "crm:create_account": 0,
    "crm:create": 1,
    "crm:link": 2,
    "crm:group_add": 3,
    "crm:update": 4,
    "outlook:create": 5,
    "outlook:update": 6,
    "outlook:delete": 7,
    "crm:group_remove": 8,
    "crm:unlink": 9,
    "crm:skip": 10,
    "outlook:skip": 11,
}


def concat_actions(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """All action rows in execution order (OP_ORDER), dtypes as the contract says.

    Every part holds one side and operation (make_actions), so ordering the parts is
    ordering the rows; the sort is stable, so rows keep their order within a part.
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty(ACTION_COLUMNS)
    keys = [OP_ORDER.get(f"{p['side'].iat[0]}:{p['op'].iat[0]}", 99) for p in parts]
    order = sorted(range(len(parts)), key=lambda i: (keys[i], i))
    return pd.concat([parts[i] for i in order], ignore_index=True)


def concat_conflicts(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty(CONFLICT_COLUMNS)
    return conform(pd.concat(parts, ignore_index=True), CONFLICT_COLUMNS)


def concat_snapshots(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty(SNAPSHOT_COLUMNS)
    return pd.concat(parts, ignore_index=True).reindex(columns=list(SNAPSHOT_COLUMNS))
