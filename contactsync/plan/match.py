"""Matching unlinked records (R7a by tag, then R7 by email), one-to-one.

Both functions take only *free* records: not linked, not part of a stopped pair (R12).
They return the new pairs as a frame ``crm_id, outlook_id, link_rule, crm_pos,
outlook_pos``: the positions are the records' index labels in the frames given (the
cycle's frames have a RangeIndex, so a subset's labels are positions in the whole).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from contactsync.model import EMAIL_FIELDS
from contactsync.plan.frames import as_objects, norm

PAIR_COLUMNS = ["crm_id", "outlook_id", "link_rule", "crm_pos", "outlook_pos"]


def _oldest_first(outlook: pd.DataFrame) -> pd.DataFrame:
    """R7: 'the first found' = oldest createdDateTime, then id."""
    return outlook.sort_values(
        ["outlook_created", "outlook_id"], na_position="last", kind="stable"
    )


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=np.int64 if c.endswith("_pos") else object)
                         for c in PAIR_COLUMNS})


def r7a_tag_relinks(outlook: pd.DataFrame, crm: pd.DataFrame) -> pd.DataFrame:
    """R7a: an Outlook contact tagged with a visible, free CRM id is linked to it first.

    Several Outlook contacts with the same tag (a copied contact): the oldest wins, the
    others go on to email matching like any untagged contact.
    """
    if outlook.empty or crm.empty:
        return _empty_pairs()
    tags = norm(as_objects(outlook["crm_tag"]))
    tagged = ~pd.isna(tags)
    if not tagged.any():  # a first sync: no tags yet, and no index of every CRM id to build
        return _empty_pairs()
    at = pd.Index(crm["crm_id"]).get_indexer(tags)
    hit = (at >= 0) & tagged
    if not hit.any():
        return _empty_pairs()
    tagged = outlook.loc[hit, ["outlook_id", "outlook_created"]].assign(
        crm_id=tags[hit], crm_pos=crm.index.to_numpy()[at[hit]], outlook_pos=outlook.index[hit])
    tagged = _oldest_first(tagged).drop_duplicates("crm_id", keep="first")
    return pd.DataFrame(
        {
            "crm_id": tagged["crm_id"].to_numpy(dtype=object),
            "outlook_id": tagged["outlook_id"].to_numpy(dtype=object),
            "link_rule": "R7a",
            "crm_pos": tagged["crm_pos"].to_numpy(dtype=np.int64),
            "outlook_pos": tagged["outlook_pos"].to_numpy(dtype=np.int64),
        }
    )


def _email_long(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(record position, email key) per present email over the three email fields."""
    n = len(frame)
    columns = [as_objects(frame[f]) for f in EMAIL_FIELDS]
    # email2/email3 are mostly empty (emails are compacted to the front): skip empty ones
    used = [k for k, c in enumerate(columns) if k == 0 or not pd.isna(c).all()]
    pos = np.tile(np.arange(n), len(used))
    keys = norm(np.concatenate([columns[k] for k in used]), email=True)
    keep = ~pd.isna(keys)
    return pos[keep], keys[keep]


def _same_email(outlook: pd.DataFrame, crm: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(Outlook position, CRM position) of every pair sharing an email key, once per
    shared key: an equi-join on integer codes (one factorize over both sides, the CRM
    side sorted once), cheaper than a DataFrame merge on the strings."""
    o_pos, o_key = _email_long(outlook)
    c_pos, c_key = _email_long(crm)
    if o_key.size == 0 or c_key.size == 0:
        return o_pos[:0], c_pos[:0]
    codes, _ = pd.factorize(np.concatenate([o_key, c_key]))
    o_code, c_code = codes[: o_key.size], codes[o_key.size:]
    order = np.argsort(c_code, kind="stable")
    sorted_codes = c_code[order]
    lo = np.searchsorted(sorted_codes, o_code, "left")
    count = np.searchsorted(sorted_codes, o_code, "right") - lo
    total = int(count.sum())
    o_rows = np.repeat(np.arange(o_code.size), count)
    # position k of the output: lo of its Outlook row plus its rank among that row's hits
    first_out = np.cumsum(count) - count
    rank = np.arange(total) - np.repeat(first_out, count)
    c_rows = order[np.repeat(lo, count) + rank]
    return o_pos[o_rows], c_pos[c_rows]


def _first_found(outlook: pd.DataFrame, o_pos: np.ndarray, c_pos: np.ndarray) -> np.ndarray:
    """Mask over candidate pairs keeping, per CRM record, the oldest Outlook contact."""
    keep = np.ones(len(o_pos), dtype=bool)
    contested = np.bincount(c_pos, minlength=c_pos.max() + 1)[c_pos] > 1
    if contested.any():
        idx = np.flatnonzero(contested)
        sub = pd.DataFrame({
            "i": idx,
            "crm": c_pos[idx],
            "outlook_created": outlook["outlook_created"].to_numpy()[o_pos[idx]],
            "outlook_id": as_objects(outlook["outlook_id"])[o_pos[idx]],
        })
        winners = _oldest_first(sub).drop_duplicates("crm", keep="first")["i"].to_numpy()
        keep[idx] = False
        keep[winners] = True
    return keep


def r7_email_matches(outlook: pd.DataFrame, crm: pd.DataFrame) -> pd.DataFrame:
    """R7: match free Outlook contacts and free CRM contacts by any of the three emails.

    - Several CRM contacts share the email(s) of one Outlook contact: keep those whose
      first and last names equal the Outlook names exactly (trimmed, case-sensitive);
      exactly one left is the match, otherwise none (R4/R5 then create).
    - Several Outlook contacts end up on the same CRM contact: the oldest (created,
      then id) gets it; the others stay unmatched. Links are one-to-one.
    Works on row positions (integers), which join and count much faster than ids.
    """
    if outlook.empty or crm.empty:
        return _empty_pairs()
    cand_o, cand_c = _same_email(outlook, crm)
    if cand_o.size == 0:
        return _empty_pairs()
    pair = cand_o.astype(np.int64) * len(crm) + cand_c
    pair = np.unique(pair)  # one row per (Outlook, CRM) pair, whatever the shared emails
    o_pos, c_pos = pair // len(crm), pair % len(crm)
    per_outlook = np.bincount(o_pos, minlength=len(outlook))[o_pos]
    several = np.flatnonzero(per_outlook > 1)
    keep = per_outlook == 1
    if several.size:
        same = np.ones(several.size, dtype=bool)
        for f in ("first_name", "last_name"):
            o_names = norm(as_objects(outlook[f])[o_pos[several]])
            c_names = norm(as_objects(crm[f])[c_pos[several]])
            same &= np.asarray(o_names == c_names, dtype=bool)
        named = several[same]
        left = np.bincount(o_pos[named], minlength=len(outlook))[o_pos[named]]
        keep[named[left == 1]] = True
    o_pos, c_pos = o_pos[keep], c_pos[keep]
    if o_pos.size:
        first = _first_found(outlook, o_pos, c_pos)
        o_pos, c_pos = o_pos[first], c_pos[first]
    return pd.DataFrame(
        {
            "crm_id": as_objects(crm["crm_id"])[c_pos],
            "outlook_id": as_objects(outlook["outlook_id"])[o_pos],
            "link_rule": "R7",
            "crm_pos": crm.index.to_numpy()[c_pos].astype(np.int64),
            "outlook_pos": outlook.index.to_numpy()[o_pos].astype(np.int64),
        }
    )


def match_free(outlook: pd.DataFrame, crm: pd.DataFrame) -> pd.DataFrame:
    """R7a first, then R7 on what is left: the new pairs of this cycle."""
    by_tag = r7a_tag_relinks(outlook, crm)
    if len(by_tag):
        outlook = outlook[~outlook.index.isin(by_tag["outlook_pos"])]
        crm = crm[~crm.index.isin(by_tag["crm_pos"])]
    by_email = r7_email_matches(outlook, crm)
    parts = [p for p in (by_tag, by_email) if len(p)]
    if not parts:
        return _empty_pairs()
    return pd.concat(parts, ignore_index=True)
