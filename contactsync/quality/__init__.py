"""Record validation and quarantine (R19): which records must not be written, and why.

- ``checks``: the R19 checks as data (one record per check of a column), from which both
  the quarantine here and the Great Expectations suites (``expectations/``) are built;
- ``evaluate``: the vectorised evaluators, one per test;
- this module: the entry points a cycle calls, and the quarantine of whole pairs.

Plain pandas/numpy, so the domain library never imports GX (DESIGN.md layer rule) and a
cycle of 100,000 contacts is checked in a fraction of a second. Problems are a frame of
``PROBLEM_COLUMNS``; the reason names the field, the limit and what to do, in the words
of the side the value comes from.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from contactsync.model import CRM_ID
from contactsync.quality.checks import (
    ACCOUNT_NAME_LENGTH,
    BIRTHDAY_MAX,
    BIRTHDAY_MIN,
    BIRTHDAY_RANGE_PATTERN,
    CONTROL_PATTERN,
    CRM_COLUMN_NAMES,
    CRM_ID_LENGTH,
    CRM_ID_PATTERN,
    EMAIL_PATTERN,
    RULE,
    STREET_CONTROL_PATTERN,
    Check,
    plan_checks,
    record_checks,
)
from contactsync.quality.evaluate import (
    PROBLEM_COLUMNS,
    Collector,
    empty_problems,
    run_checks,
    written_fields,
)
from contactsync.quality.quarantine import quarantine_actions, quarantine_ids

__all__ = [
    "ACCOUNT_NAME_LENGTH", "BIRTHDAY_MAX", "BIRTHDAY_MIN", "BIRTHDAY_RANGE_PATTERN",
    "CONTROL_PATTERN", "CRM_COLUMN_NAMES", "CRM_ID_LENGTH", "CRM_ID_PATTERN", "EMAIL_PATTERN",
    "PROBLEM_COLUMNS", "RULE", "STREET_CONTROL_PATTERN", "Check", "empty_problems",
    "plan_checks", "plan_problems", "quarantine_actions", "quarantine_ids", "record_checks",
    "record_problems", "written_fields",
]


def record_problems(frame: pd.DataFrame, *, side: str, id_column: str) -> pd.DataFrame:
    """Problems of an extracted side frame (CRM or Outlook), one row per field at fault.

    Only the canonical fields present in ``frame`` are checked, so a projection works.
    ``side`` ("crm" or "outlook") is the system the values come from: the reason tells
    the user to fix them there.
    """
    where = "Outlook" if side == "outlook" else "the CRM"
    out = Collector(side=side, ids=_coalesce(frame, (id_column,)))
    checks = record_checks(id_column, crm_format=id_column == CRM_ID or side == "crm")
    run_checks(out, frame, checks, where, {})
    return out.frame()


def plan_problems(actions: pd.DataFrame) -> pd.DataFrame:
    """Problems of the plan: the values each action writes, its ids and keys.

    A field is checked only where the action writes it (listed in ``fields``); a create
    must also carry a name or an email. The record id of a problem is the pair's
    ``crm_id``, else its ``new_key``, else its ``outlook_id``, else its ``account_key``;
    ``action_id`` says which action, so :func:`quarantine_actions` can drop the pair.
    """
    if actions.empty:
        return empty_problems()
    sides = actions["side"].to_numpy(dtype=object)
    out = Collector(
        side=sides,
        ids=_coalesce(actions, ("crm_id", "new_key", "outlook_id", "account_key", "action_id")),
        action_ids=actions["action_id"].to_numpy(dtype=object),
    )
    # values written to the CRM come from Outlook and vice versa
    where = np.where(sides == "crm", "Outlook", "the CRM")
    op = actions["op"].to_numpy(dtype=object)
    rows = {"creates": op == "create", "create_account": op == "create_account"}
    run_checks(out, actions, plan_checks(), where, rows, written_fields(actions["fields"]))
    return out.frame()


def _coalesce(frame: pd.DataFrame, columns: Iterable[str]) -> np.ndarray:
    """Per row, the first of ``columns`` that is set (None when none is)."""
    out = np.full(len(frame), None, dtype=object)
    for col in columns:
        if col not in frame.columns:
            continue
        s = frame[col].astype(object)
        v = s.where(s.notna(), None).to_numpy(dtype=object)
        fill = (out == None) & (v != None)  # noqa: E711 (element-wise)
        out[fill] = v[fill]
    return out
