"""The history rows of a cycle's writes (``HistoryStore.record_history``), built per column.

A first sync writes every contact once: 1,000 writes at 2,000 people, 100,000 at scale.
Built one action at a time (a dict each, its fields looked up one by one) they cost
~2 s under load after the last write of a first sync, on its wall (issue 12). Here
the same rows come from a handful of column operations: the fields of every action in
one long frame (action, field), their values looked up per field, the JSON texts and
the email lists joined per action.

Values are written as text: ``None``, NaN and NaT (any value pandas counts as missing)
are no value, anything else its ``str``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

from contactsync.model import EMAIL_FIELDS, FIELDS

WRITE_COLUMNS = ("kind", "side", "op", "rule", "crm_id", "outlook_id", "fields", "before", "after",
                 "winner", "reason", "emails")
_CREATES = ("create", "create_account")


def texts(values: pd.Series) -> pd.Series:
    """Each value as text (object dtype), None where it has none."""
    obj = values.astype(object)
    out = pd.Series(None, index=values.index, dtype=object)
    present = obj.notna().to_numpy()
    out[present] = obj[present].map(str)
    return out


def sources(frame: pd.DataFrame | None, key: str, ids: set[str]) -> pd.DataFrame | None:
    """The rows of ``ids`` (by their ``key`` as text), their field columns: where an
    update's "before" comes from. A key listed twice keeps its first row."""
    if frame is None or frame.empty or key not in frame or not ids:
        return None
    sub = frame[frame[key].astype(str).isin(ids).to_numpy()].drop_duplicates(key)
    sub = sub[[c for c in FIELDS if c in sub]]
    sub.index = frame.loc[sub.index, key].astype(str).to_numpy()
    return sub[~sub.index.duplicated(keep="last")]


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(None, index=frame.index, dtype=object)


def _json_objects(pos: np.ndarray, names: pd.Series, values: pd.Series, n: int) -> list[str]:
    """Per action 0..n-1, ``json.dumps({name: value, ...}, ensure_ascii=False)`` of its
    (name, value) pairs in order (a name listed twice: its first place)."""
    pairs = pd.DataFrame({"pos": pos, "name": names.to_numpy(), "value": values.to_numpy()})
    pairs = pairs.drop_duplicates(["pos", "name"])
    dumped = pairs["value"].map(lambda v: "null" if v is None or isinstance(v, float) else json.dumps(v, ensure_ascii=False))
    text = pairs["name"].map(lambda k: json.dumps(k, ensure_ascii=False)) + ": " + dumped
    joined = text.groupby(pairs["pos"].to_numpy(), sort=True).agg(", ".join)
    out = np.full(n, "{}", dtype=object)
    out[joined.index.to_numpy()] = ("{" + joined + "}").to_numpy()
    return list(out)


def _emails(acts: pd.DataFrame, crm_id: pd.Series, outlook_id: pd.Series,
            known: Mapping[str, tuple[str, ...]]) -> np.ndarray:
    """Per action: " a b " of the addresses its contact is known by (both sides, sorted,
    once each), its own email values among them; None when there are none."""
    n = len(acts)
    pos_parts, addr_parts = [], []
    for ids in (crm_id, outlook_id):
        found = ids.fillna("").map(lambda i: known.get(i, ()))
        exploded = found.explode().dropna()
        pos_parts.append(exploded.index.to_numpy())
        addr_parts.append(exploded.to_numpy())
    for name in EMAIL_FIELDS:
        if name not in acts:
            continue
        own = texts(acts[name])
        own = own[own.notna().to_numpy() & own.ne("").to_numpy()]
        pos_parts.append(own.index.to_numpy())
        addr_parts.append(own.str.strip().str.lower().to_numpy())
    out = np.full(n, None, dtype=object)
    if not any(len(p) for p in pos_parts):
        return out
    found = pd.DataFrame({"pos": np.concatenate(pos_parts).astype(int),
                          "addr": np.concatenate(addr_parts).astype(object)})
    found = found.drop_duplicates().sort_values(["pos", "addr"], kind="stable")
    joined = found.groupby("pos", sort=True)["addr"].agg(" ".join)
    out[joined.index.to_numpy()] = (" " + joined + " ").to_numpy()
    return out


def history_writes(
    applied: pd.DataFrame, new_out: Mapping[str, str],
    sides: tuple[pd.DataFrame | None, pd.DataFrame | None], known: Mapping[str, tuple[str, ...]],
) -> pd.DataFrame:
    """One history row per committed write of ``applied`` (skips left out).

    ``new_out``: the Outlook id each create got (by action id); ``sides``: the CRM and the
    Outlook rows as read (``sources``), for an update's "before"; ``known``: the addresses
    of each contact id. A create's fields are those it gave a value; an update's are
    those planned, each with its value before (its side as read) and after.
    """
    acts = applied[~applied["op"].eq("skip").to_numpy()].reset_index(drop=True)
    n = len(acts)
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in WRITE_COLUMNS})
    crm_id = texts(_column(acts, "crm_id"))
    outlook_id = texts(_column(acts, "outlook_id"))
    missing = (outlook_id.isna() | outlook_id.eq("")).to_numpy()
    if missing.any():
        outlook_id[missing] = _column(acts, "action_id")[missing].map(lambda a: new_out.get(str(a)))
    creates = acts["op"].isin(_CREATES).to_numpy()
    on_outlook = acts["side"].eq("outlook").to_numpy()

    listed = _column(acts, "fields").map(lambda v: str(v or "")).str.split(",")
    long = listed.explode()
    long = long[long.notna().to_numpy() & long.ne("").to_numpy()]
    pos, names = long.index.to_numpy(), long.astype(str).reset_index(drop=True)
    after = pd.Series(None, index=range(len(long)), dtype=object)
    before = pd.Series(None, index=range(len(long)), dtype=object)
    crm_src, out_src = sides
    for name in names.unique():
        at = np.flatnonzero(names.to_numpy() == name)
        rows = pos[at]
        if name in acts:
            after.iloc[at] = texts(acts[name].iloc[rows]).to_numpy()
        for src, ids, side in ((out_src, outlook_id, on_outlook), (crm_src, crm_id, ~on_outlook)):
            mine = at[side[rows] & ~creates[rows]]
            if src is not None and name in src and len(mine):
                found = src[name].reindex(ids.iloc[pos[mine]].fillna("").to_numpy())
                before.iloc[mine] = texts(found.reset_index(drop=True)).to_numpy()
    # A create's fields: only those it gave a value (a new record: what it got).
    keep = ~creates[pos] | (after.notna() & after.ne("")).to_numpy()
    pos, names, after, before = pos[keep], names[keep], after[keep], before[keep]
    fields = np.full(n, "", dtype=object)
    if len(pos):
        joined = names.groupby(pos, sort=True).agg(",".join)
        fields[joined.index.to_numpy()] = joined.to_numpy()
    befores = _json_objects(pos, names, before, n)
    befores = [("{}" if c else b) for b, c in zip(befores, creates, strict=True)]
    frame = pd.DataFrame({
        "kind": "write",
        "side": acts["side"].astype(object).to_numpy(),
        "op": acts["op"].astype(object).to_numpy(),
        "rule": texts(_column(acts, "rule")).to_numpy(),
        "crm_id": crm_id.to_numpy(),
        "outlook_id": outlook_id.to_numpy(),
        "fields": fields,
        "before": befores,
        "after": _json_objects(pos, names, after, n),
        "winner": None,
        "reason": texts(_column(acts, "reason")).to_numpy(),
        "emails": _emails(acts, crm_id, outlook_id, known),
    }, columns=list(WRITE_COLUMNS))
    return frame.astype(object).where(frame.notna(), None)
