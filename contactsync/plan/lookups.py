"""What the CRM side must read before planning, derived from the Outlook side.

The CRM extract reads the sync group; these lists say which *other* visible rows the
plan may need: CRM contacts outside the group that an unlinked Outlook contact could
match by email (R7), and accounts whose name a new contact's company could equal (R5b).
Both are supersets (they ignore matching, which needs the CRM rows themselves).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from contactsync.model import EMAIL_FIELDS
from contactsync.plan.frames import as_objects, norm


def _unlinked(outlook: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """Outlook contacts in no link at all (stopped pairs are never matched, R12)."""
    linked = pd.Index(as_objects(links["outlook_id"])) if len(links) else pd.Index([])
    return outlook[~outlook["outlook_id"].isin(linked)]


def candidate_emails(outlook: pd.DataFrame, links: pd.DataFrame) -> list[str]:
    """Lower-cased, trimmed emails of unlinked, non-stopped Outlook contacts (R7), sorted."""
    free = _unlinked(outlook, links)
    if free.empty:
        return []
    keys = norm(np.concatenate([as_objects(free[f]) for f in EMAIL_FIELDS]), email=True)
    return sorted(set(keys[~pd.isna(keys)].tolist()))


def candidate_company_names(outlook: pd.DataFrame, links: pd.DataFrame) -> list[str]:
    """Company names (trimmed, case kept) of unlinked Outlook contacts, for R5b, sorted."""
    free = _unlinked(outlook, links)
    if free.empty:
        return []
    names = norm(as_objects(free["company"]))
    return sorted(set(names[~pd.isna(names)].tolist()))
