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
from contactsync.plan.frames import as_objects, member, norm


def _unlinked(outlook: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """Outlook contacts in no link at all (stopped pairs are never matched, R12)."""
    if not len(links) or outlook.empty:
        return outlook
    linked = member(as_objects(outlook["outlook_id"]), as_objects(links["outlook_id"]))
    return outlook if not linked.any() else outlook[~linked]


def candidate_emails(outlook: pd.DataFrame, links: pd.DataFrame) -> list[str]:
    """Lower-cased, trimmed emails of unlinked, non-stopped Outlook contacts (R7), sorted."""
    return _emails(_unlinked(outlook, links))


def candidate_company_names(outlook: pd.DataFrame, links: pd.DataFrame) -> list[str]:
    """Company names (trimmed, case kept) of unlinked Outlook contacts, for R5b, sorted."""
    return _company_names(_unlinked(outlook, links))


def candidate_lookups(outlook: pd.DataFrame, links: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Both lists at once (:func:`candidate_emails`, :func:`candidate_company_names`):
    the unlinked contacts are found once, not once per list."""
    free = _unlinked(outlook, links)
    return _emails(free), _company_names(free)


def _emails(free: pd.DataFrame) -> list[str]:
    if free.empty:
        return []
    keys = norm(np.concatenate([as_objects(free[f]) for f in EMAIL_FIELDS]), email=True)
    return sorted(set(keys[~pd.isna(keys)].tolist()))


def _company_names(free: pd.DataFrame) -> list[str]:
    if free.empty:
        return []
    names = norm(as_objects(free["company"]))
    return sorted(set(names[~pd.isna(names)].tolist()))
