"""Settled cycles: a quiet cycle that stops after the CRM read and one delta request (R17).

Planning is a pure function of its inputs. When the previous cycle of a user planned
nothing at all (no action, conflict, quarantined record or snapshot to record), had every
Outlook contact of the folder linked and every linked CRM contact in the group, then its
inputs were only the CRM group, the Outlook mirror and the links; none of the lookups
outside the group (R5b accounts, R7 candidates, R12/R13 gone contacts) had anything to
look up. If now the CRM group reads back identical (same fingerprint: every value, time,
read-only flag), the folder's delta is empty (the mirror is unchanged) and the links were
not written since (no other run came in between), this cycle's plan is that same empty
plan, so reading the mirror and the links and planning can be skipped. That makes a
quiet cycle cost the CRM read, the folder lookup and one delta request, whatever the size
of the address book.

The fingerprint also covers the rule switches, the user, the group and folder names and
the source of the planning and quarantine code, so a change of configuration or of the
rules themselves always plans in full.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contactsync.plan.schema import PlanInputs, PlanResult, PlanSettings
from contactsync.state.columnar import text_column

#: The summary key of a settled run (its fingerprint).
SUMMARY_KEY = "settled"


@cache
def _rules_source() -> bytes:
    """The planning and quarantine code itself: new rules never reuse an old verdict."""
    root = Path(__file__).resolve().parent.parent
    files = [*sorted((root / "plan").glob("*.py")), *sorted((root / "quality").glob("*.py")),
             root / "model.py", root / "vocab.py"]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).digest()


def fingerprint(crm: pd.DataFrame, settings: PlanSettings, *, user: str, group: str, folder: str) -> str:
    """A digest of everything a settled cycle's plan depended on, apart from the mirror
    and the links (which a settled cycle proves unchanged in other ways).

    Row order does not matter (the rows are taken in crm_id order); every column of the
    CRM frame counts, modification times (R9) and read-only flags (R1) included.
    """
    digest = hashlib.sha256()
    digest.update(_rules_source())
    digest.update(repr((user, group, folder, settings)).encode())
    digest.update(",".join(map(str, crm.columns)).encode())
    if len(crm):
        ids = crm.get("crm_id")
        if ids is not None and bool(ids.notna().all()) and ids.is_unique:
            _digest_columns(digest, crm, np.argsort(ids.to_numpy(dtype=object), kind="stable"))
        else:  # no key to order the rows by: the rows' own hashes, sorted (~10x the cost)
            rows = pd.util.hash_pandas_object(crm, index=False).to_numpy(dtype=np.uint64)
            digest.update(b"rows" + np.sort(rows).tobytes())
    return digest.hexdigest()


def _digest_columns(digest: Any, crm: pd.DataFrame, order: np.ndarray) -> None:
    """Each column in crm_id order, encoded as the state store encodes a column
    (``state.columnar``: text joined by one separator after the positions of the missing
    values, JSON when a value holds the separator; times as int64 nanoseconds), each
    behind its length: a few C calls per column. Hashing every cell on its own
    (``hash_pandas_object``) took ~1 s of every 100,000-contact cycle that looks for a
    settled verdict (issue 15 goal 2)."""
    for name in crm.columns:
        column = crm[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype) or column.dtype.kind == "M":
            stamps = pd.to_datetime(column, utc=True).dt.tz_convert(None)
            body = b"time" + stamps.to_numpy(dtype="datetime64[ns]").view(np.int64)[order].tobytes()
        elif column.dtype.kind in "biuf":  # flags and numbers: their dtype and bytes
            body = column.dtype.str.encode() + np.ascontiguousarray(column.to_numpy()[order]).tobytes()
        else:
            meta, text = text_column(np.asarray(column.to_numpy(dtype=object)[order], dtype=object))
            body = repr(sorted(meta.items())).encode() + text
        digest.update(len(body).to_bytes(8, "big") + body)


def is_settled(inputs: PlanInputs, planned: PlanResult, problems: pd.DataFrame) -> bool:
    """Whether a cycle's plan was empty in every respect and needed no lookup (see module)."""
    if len(planned.actions) or len(planned.conflicts) or len(planned.snapshots) or len(problems):
        return False
    links = inputs.links
    every_contact_linked = inputs.outlook["outlook_id"].isin(links["outlook_id"]).all()
    every_link_in_group = links["crm_id"].isin(inputs.crm["crm_id"]).all()
    return bool(every_contact_linked and every_link_in_group)


def previous_fingerprint(previous: dict | None) -> str | None:
    """The fingerprint of the user's previous run if that run settled, else None."""
    if not previous or previous.get("status") != "ok":
        return None
    value = (previous.get("summary") or {}).get(SUMMARY_KEY)
    return value if isinstance(value, str) else None
