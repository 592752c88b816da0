"""Where each row of a merged base and delta goes, from their key columns alone (the
state store's merge, ``state/blobs.py``): plain numpy over the sorted keys, so the same
order serves a merge of frames and a merge one column at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def merge_order(
    base_keys: np.ndarray, base_unique: np.ndarray | None, delta_keys: np.ndarray,
    delta_unique: np.ndarray | None, removed: Sequence[str],
) -> np.ndarray | None:
    """The merged rows as positions in [base rows; delta rows], in key order (both in key
    order); None when the delta changes nothing. Found from the key columns alone, so the
    same order serves a merge of frames (``blobs.merged``) and one column at a time
    (``blobs.compact``, ``blobs.read``). One binary search of the delta's keys in the base's
    serves every part: no hash of the base's keys (ids of 48 characters, 100,000 of them)."""
    if not len(delta_keys) and not len(removed):
        return None
    n, d = len(base_keys), len(delta_keys)
    at = np.searchsorted(base_keys, delta_keys) if n and d else np.zeros(d, dtype=np.int64)
    hit = (at < n) & (base_keys[np.minimum(at, n - 1)] == delta_keys) if n and d else np.zeros(d, dtype=bool)
    holders = holders_of(base_unique, delta_unique)
    replaced = rows_replaced_in_place(n, at, hit, holders, removed)
    if replaced is not None:
        return replaced
    gone = np.zeros(n, dtype=bool)
    gone[at[hit]] = True
    if len(removed) and n:
        out = np.sort(np.asarray(removed, dtype=object))
        where = np.minimum(np.searchsorted(base_keys, out), n - 1)
        gone[where[base_keys[where] == out]] = True
    gone[holders] = True  # R7: a base row whose Outlook contact a delta row takes goes
    kept = np.flatnonzero(~gone)
    at = at - np.concatenate([[0], np.cumsum(gone)])[at]  # the kept row each delta row goes before
    before = np.zeros(len(kept) + 1, dtype=np.int64)
    np.add.at(before, at, 1)
    final = np.concatenate([np.arange(len(kept)) + np.cumsum(before)[:-1], at + np.arange(d)])
    order = np.empty(len(final), dtype=np.int64)
    order[final] = np.concatenate([kept, n + np.arange(d)])
    return order


def holders_of(base_unique: np.ndarray | None, delta_unique: np.ndarray | None) -> np.ndarray:
    """The base rows holding an Outlook contact a delta row holds (links, R7)."""
    if base_unique is None or delta_unique is None:
        return np.array([], dtype=np.int64)
    moved = delta_unique[~pd.isna(delta_unique)]
    if not moved.size:
        return np.array([], dtype=np.int64)
    return np.flatnonzero(pd.Series(base_unique, dtype=object).isin(moved).to_numpy())


def rows_replaced_in_place(
    n: int, at: np.ndarray, hit: np.ndarray, holders: np.ndarray, removed: Sequence[str],
) -> np.ndarray | None:
    """The usual cycle's case: every delta row replaces the base row of its key (1 %
    edits), none is new, none removed, no Outlook contact moves to another CRM id (R7):
    the base's order with those rows swapped, no search over the kept rows. None = not
    this case."""
    if len(removed) or not len(at) or not bool(hit.all()) or not bool(np.isin(holders, at).all()):
        return None
    order = np.arange(n)
    order[at] = n + np.arange(len(at))
    return order
