"""Matching unlinked records (R7a by tag, then R7 by email), one-to-one.

Both functions take only *free* records: not linked, not part of a stopped pair (R12).
They return the new pairs as a frame ``crm_id, outlook_id, link_rule``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from contactsync.model import EMAIL_FIELDS
from contactsync.plan.frames import as_objects, norm

PAIR_COLUMNS = ["crm_id", "outlook_id", "link_rule"]


def _oldest_first(outlook: pd.DataFrame) -> pd.DataFrame:
    """R7: 'the first found' = oldest createdDateTime, then id."""
    return outlook.sort_values(
        ["outlook_created", "outlook_id"], na_position="last", kind="stable"
    )


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in PAIR_COLUMNS})


def r7a_tag_relinks(outlook: pd.DataFrame, crm: pd.DataFrame) -> pd.DataFrame:
    """R7a: an Outlook contact tagged with a visible, free CRM id is linked to it first.

    Several Outlook contacts with the same tag (a copied contact): the oldest wins, the
    others go on to email matching like any untagged contact.
    """
    if outlook.empty or crm.empty:
        return _empty_pairs()
    tags = norm(as_objects(outlook["crm_tag"]))
    hit = pd.Index(crm["crm_id"]).get_indexer(tags) >= 0
    hit &= ~pd.isna(tags)
    if not hit.any():
        return _empty_pairs()
    tagged = outlook.loc[hit, ["outlook_id", "outlook_created"]].assign(crm_id=tags[hit])
    tagged = _oldest_first(tagged).drop_duplicates("crm_id", keep="first")
    return pd.DataFrame(
        {
            "crm_id": tagged["crm_id"].to_numpy(dtype=object),
            "outlook_id": tagged["outlook_id"].to_numpy(dtype=object),
            "link_rule": "R7a",
        }
    )


def _email_long(frame: pd.DataFrame, id_col: str) -> pd.DataFrame:
    """One row per (record, distinct email key) over the three email fields."""
    n = len(frame)
    ids = np.tile(frame[id_col].to_numpy(dtype=object), len(EMAIL_FIELDS))
    keys = np.concatenate(
        [as_objects(frame[f]) for f in EMAIL_FIELDS] if n else [np.array([], dtype=object)]
    )
    keys = norm(keys, email=True)
    keep = ~pd.isna(keys)
    return pd.DataFrame({id_col: ids[keep], "email": keys[keep]}).drop_duplicates()


def r7_email_matches(outlook: pd.DataFrame, crm: pd.DataFrame) -> pd.DataFrame:
    """R7: match free Outlook contacts and free CRM contacts by any of the three emails.

    - Several CRM contacts share the email(s) of one Outlook contact: keep those whose
      first and last names equal the Outlook names exactly (trimmed, case-sensitive);
      exactly one left is the match, otherwise none (R4/R5 then create).
    - Several Outlook contacts end up on the same CRM contact: the oldest (created,
      then id) gets it; the others stay unmatched. Links are one-to-one.
    """
    if outlook.empty or crm.empty:
        return _empty_pairs()
    o_long = _email_long(outlook, "outlook_id")
    c_long = _email_long(crm, "crm_id")
    cand = o_long.merge(c_long, on="email", how="inner")[["outlook_id", "crm_id"]]
    cand = cand.drop_duplicates()
    if cand.empty:
        return _empty_pairs()
    per_outlook = cand.groupby("outlook_id", sort=False)["crm_id"].transform("size")
    single = cand[per_outlook.to_numpy() == 1]
    several = cand[per_outlook.to_numpy() > 1]
    if len(several):
        o_pos = pd.Index(outlook["outlook_id"]).get_indexer(several["outlook_id"])
        c_pos = pd.Index(crm["crm_id"]).get_indexer(several["crm_id"])
        same = np.ones(len(several), dtype=bool)
        for f in ("first_name", "last_name"):
            o_names = norm(as_objects(outlook[f])[o_pos])
            c_names = norm(as_objects(crm[f])[c_pos])
            same &= np.asarray(o_names == c_names, dtype=bool) | (
                pd.isna(o_names) & pd.isna(c_names)
            )
        named = several[same]
        left = named.groupby("outlook_id", sort=False)["crm_id"].transform("size")
        several = named[left.to_numpy() == 1]
    chosen = pd.concat([single, several], ignore_index=True)
    created = outlook.set_index("outlook_id")["outlook_created"]
    chosen = chosen.assign(outlook_created=created.reindex(chosen["outlook_id"]).to_numpy())
    chosen = _oldest_first(chosen).drop_duplicates("crm_id", keep="first")
    return pd.DataFrame(
        {
            "crm_id": chosen["crm_id"].to_numpy(dtype=object),
            "outlook_id": chosen["outlook_id"].to_numpy(dtype=object),
            "link_rule": "R7",
        }
    )


def match_free(outlook: pd.DataFrame, crm: pd.DataFrame) -> pd.DataFrame:
    """R7a first, then R7 on what is left: the new pairs of this cycle."""
    by_tag = r7a_tag_relinks(outlook, crm)
    if len(by_tag):
        outlook = outlook[~outlook["outlook_id"].isin(by_tag["outlook_id"])]
        crm = crm[~crm["crm_id"].isin(by_tag["crm_id"])]
    by_email = r7_email_matches(outlook, crm)
    parts = [p for p in (by_tag, by_email) if len(p)]
    if not parts:
        return _empty_pairs()
    return pd.concat(parts, ignore_index=True)
