"""Small vectorised helpers every planning module shares: comparison and action rows.

Comparing 24 fields of 100,000 pairs through ``model.normalise`` costs seconds; most
values are byte-identical, so equality is first decided on the raw values and only the
rows that differ raw are normalised (raw-equal implies normalised-equal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from contactsync.model import EMAIL_FIELDS, FIELDS, conform, empty_frame
from contactsync.plan.schema import ACTION_COLUMNS, CONFLICT_COLUMNS, SNAPSHOT_COLUMNS


def empty(columns: tuple[str, ...]) -> pd.DataFrame:
    """An empty contract frame (``model.empty_frame``: built once, copied)."""
    return empty_frame(columns)


def text(values: np.ndarray | pd.Series) -> np.ndarray:
    """Object array of str for messages and keys: None -> "" (numpy adds them in C)."""
    arr = np.array(values, dtype=object)
    arr[pd.isna(arr)] = ""
    return arr


def filled(n: int, value: object) -> np.ndarray:
    """An object array of ``n`` references to one ``value``. ``np.full(n, "text",
    dtype=object)`` goes through a fixed-width string array and makes a new str per
    element: a first sync's plan held 300,000 copies of its constant texts, 36 MB."""
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


def either(mask: np.ndarray, yes: object, no: object) -> np.ndarray:
    """``np.where(mask, yes, no)`` of two constants as an object array of two shared
    objects (see :func:`filled`)."""
    out = filled(len(mask), no)
    out[mask] = yes
    return out


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


def positions(ids: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Where each of ``targets`` is in ``ids`` (-1: absent), as ``pd.Index(ids).get_indexer``
    (which also raises for ids that are not unique).

    A cycle's links are stored in CRM id order and the CRM group is read in that order,
    so the two id columns are usually the same array: one comparison of the columns
    (about 3 ms at 100,000) says so without hashing. Otherwise the object Index: one hash
    of ``ids`` (its uniqueness comes from the same table) and one probe per target, 42-48
    ms at 100,000 against 64 ms for Arrow's ``index_in`` measured beside it (pyarrow is
    not a dependency: issue 15 goal 3).
    """
    n = len(ids)
    if n == 0 or len(targets) == 0:
        return np.full(len(targets), -1, dtype=np.intp)
    if n == len(targets) and bool(np.asarray(ids == targets, dtype=bool).all()):
        found = np.arange(n, dtype=np.intp)
    else:
        found = pd.Index(ids, dtype=object).get_indexer(targets)
    found[pd.isna(targets)] = -1  # a missing id is found nowhere (as the Index says)
    return found


def member(values: np.ndarray, among: np.ndarray) -> np.ndarray:
    """``pd.Series(values).isin(among)`` as a bool array, with :func:`positions`' shortcut
    (the same column: all True) before pandas' hash of ``among``."""
    n = len(values)
    if n == len(among) and n and bool(np.asarray(values == among, dtype=bool).all()):
        return np.ones(n, dtype=bool)
    if n == 0 or len(among) == 0:
        return np.zeros(n, dtype=bool)
    return pd.Series(values, dtype=object).isin(among).to_numpy()


def _as_text(values: list[object]) -> list[str]:
    """The values as str (a contract column holds str; anything else is shown as str)."""
    return [v if type(v) is str else str(v) for v in values]


#: From this many values on, :func:`norm` first looks for repeats (factorize is a tenth
#: of the cost of normalising a value).
REPEATED_MIN = 5_000


def norm(values: np.ndarray, *, email: bool = False) -> np.ndarray:
    """Comparison values (model.normalise semantics) of an object array: None = empty.

    Trimmed, CRLF -> LF, emails lower-cased (an email holds no line break worth keeping:
    one pass less for the match keys), "" -> None. One list comprehension of str methods
    over the present values: a third of pandas' ``.str`` accessor, which maps a lambda
    per value on object storage, and this is the planning's hottest loop (R7 keys, R8).
    """
    arr = np.asarray(values, dtype=object)
    if not email and arr.size >= REPEATED_MIN:
        # company, names, titles, cities repeat: normalise each distinct value once
        codes, uniques = pd.factorize(arr)
        if len(uniques) * 2 <= arr.size:
            kept = np.append(norm(np.asarray(uniques, dtype=object)), None)
            return kept[codes]  # code -1 (missing) takes the None appended last
    out = np.full(arr.shape, None, dtype=object)
    todo = np.flatnonzero(~pd.isna(arr))
    if todo.size == 0:
        return out
    present = arr[todo].tolist()
    try:
        done = ([v.strip().lower() for v in present] if email
                else [v.replace("\r\n", "\n").strip() for v in present])
    except AttributeError:  # a value that is not a str
        present = _as_text(present)
        done = ([v.strip().lower() for v in present] if email
                else [v.replace("\r\n", "\n").strip() for v in present])
    kept = np.array(done, dtype=object)
    kept[kept == ""] = None
    out[todo] = kept
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
    """True where a raw value is missing or blank (normalised empty, text or email).

    The lengths of the stripped values through ``map`` (no Python frame per value: a third
    of a comprehension's cost, issue 15); a value that is not a str takes the slow way.
    """
    missing = np.asarray(pd.isna(values), dtype=bool)
    todo = np.flatnonzero(~missing)
    if todo.size:
        present = np.asarray(values, dtype=object)[todo].tolist()
        try:
            missing[todo] = np.fromiter(map(len, map(str.strip, present)), dtype=np.int64, count=len(present)) == 0
        except TypeError:  # a value that is not a str
            missing[todo] = [not (v if type(v) is str else str(v)).strip() for v in present]
    return missing


def is_email(field: str) -> bool:
    return field in EMAIL_FIELDS


def join_flags(masks: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Comma-separated names of the True flags per row ("" when none)."""
    out = filled(n, "")
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


@dataclass(frozen=True)
class ActionRows:
    """``n`` action rows of one side and operation, as one array per ACTION_COLUMNS
    column: every rule module makes several, and :func:`concat_actions` turns them into
    the one action frame at once (a DataFrame per part and ``pd.concat`` copied the
    100,000-row first sync's actions twice)."""

    side: str
    op: str
    n: int
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return self.n


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
) -> ActionRows:
    """``n`` action rows of one side and operation (ACTION_COLUMNS, as arrays)."""
    if n == 0:
        return ActionRows(side, op, 0, {})

    def col(v: object) -> np.ndarray | None:
        """None (= all missing, filled when the frame is made), or an object array."""
        if v is None:
            return None
        if isinstance(v, str):
            return filled(n, v)
        if isinstance(v, np.ndarray) and v.dtype == object:
            return v  # planning's own arrays: already None for missing
        return as_objects(v)

    crm, olk, new = col(crm_id), col(outlook_id), col(new_key)
    acct_key = col(account_key)
    key = next((k for k in (crm, new, acct_key) if k is not None), np.full(n, None, dtype=object))
    if crm is not None and (new is not None or acct_key is not None):
        key = np.where(pd.isna(crm), np.where(pd.isna(new), acct_key, new), crm)
    elif new is not None and acct_key is not None:
        key = np.where(pd.isna(new), acct_key, new)
    data: dict[str, np.ndarray | None] = {
        "action_id": action_ids(side, op, key, olk if olk is not None else np.full(n, None, dtype=object)),
        "side": None,  # constant per part: filled by concat_actions
        "op": None,
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
    for f, v in (values or {}).items():
        if f in FIELDS:
            data[f] = col(v)
    return ActionRows(side, op, n, {k: v for k, v in data.items() if v is not None})


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


def concat_actions(parts: Sequence[ActionRows]) -> pd.DataFrame:
    """All action rows in execution order (OP_ORDER), dtypes as the contract says.

    Every part holds one side and operation (make_actions), so ordering the parts is
    ordering the rows; the sort is stable, so rows keep their order within a part. The
    frame is one 2-D object array filled part by part, column by column: one copy of
    each value's reference, where per-part frames and ``pd.concat`` made two.
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty(ACTION_COLUMNS)
    order = sorted(range(len(parts)), key=lambda i: (OP_ORDER.get(f"{parts[i].side}:{parts[i].op}", 99), i))
    total = sum(p.n for p in parts)
    block = np.full((len(ACTION_COLUMNS), total), None, dtype=object)
    side, op = ACTION_COLUMNS.index("side"), ACTION_COLUMNS.index("op")
    start = 0
    for part in (parts[i] for i in order):
        stop = start + part.n
        block[side, start:stop] = part.side
        block[op, start:stop] = part.op
        for j, column in enumerate(ACTION_COLUMNS):
            values = part.columns.get(column)
            if values is not None:
                block[j, start:stop] = values
        start = stop
    return pd.DataFrame(block.T, columns=list(ACTION_COLUMNS), dtype=object, copy=False)


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
