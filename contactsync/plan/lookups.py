"""What the CRM side must read before planning, derived from the Outlook side.

The CRM extract reads the sync group; these lists say which *other* visible rows the
plan may need: CRM contacts outside the group that an unlinked Outlook contact could
match by email (R7), and accounts whose name a new contact's company could equal (R5b).
Both are supersets (they ignore matching, which needs the CRM rows themselves).

Where each link's records are in the cycle's frames (``schema.LinkRows``) is found here
too, once for both the look-ups and the plan (``PlanInputs.link_rows``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from contactsync.model import EMAIL_FIELDS
from contactsync.plan.frames import as_objects, member, norm, positions
from contactsync.plan.schema import LinkRows


def link_rows(crm: pd.DataFrame, outlook: pd.DataFrame, links: pd.DataFrame) -> LinkRows:
    """Where each of ``links`` is in ``crm`` and ``outlook`` (:class:`LinkRows`)."""
    if len(links):
        c_at = positions(as_objects(crm["crm_id"]), as_objects(links["crm_id"]))
        o_at = positions(as_objects(outlook["outlook_id"]), as_objects(links["outlook_id"]))
    else:  # a first sync: no hash table of every id (15 ms a side at 100,000) for no link
        c_at = o_at = np.zeros(0, dtype=np.intp)
    return LinkRows(c_at, o_at, crm, outlook, links)


def _unlinked(outlook: pd.DataFrame, links: pd.DataFrame, rows: LinkRows | None = None) -> pd.DataFrame:
    """Outlook contacts in no link at all (stopped pairs are never matched, R12)."""
    if not len(links) or outlook.empty:
        return outlook
    linked = None if rows is None or rows.outlook is not outlook or rows.links is not links else rows.linked_outlook()
    if linked is None:
        linked = member(as_objects(outlook["outlook_id"]), as_objects(links["outlook_id"]))
    return outlook if not linked.any() else outlook[~linked]


def candidate_emails(outlook: pd.DataFrame, links: pd.DataFrame) -> list[str]:
    """Lower-cased, trimmed emails of unlinked, non-stopped Outlook contacts (R7), sorted."""
    return _emails(_unlinked(outlook, links))


def candidate_company_names(outlook: pd.DataFrame, links: pd.DataFrame) -> list[str]:
    """Company names (trimmed, case kept) of unlinked Outlook contacts, for R5b, sorted."""
    return _company_names(_unlinked(outlook, links))


def candidate_lookups(
    outlook: pd.DataFrame, links: pd.DataFrame, rows: LinkRows | None = None
) -> tuple[list[str], list[str]]:
    """Both lists at once (:func:`candidate_emails`, :func:`candidate_company_names`):
    the unlinked contacts are found once, not once per list (from ``rows`` when given,
    :func:`link_rows` of these frames)."""
    free = _unlinked(outlook, links, rows)
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
