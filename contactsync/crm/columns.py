"""A plan row's values as the CRM columns they are written to (spec/FIELD_MAP.md, through
the field registry), each checked against its column: a value that does not fit is
refused with the record and the column named, never truncated (R19, the last line of
defence behind the pipeline's quarantine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from contactsync import model
from contactsync.crm.extract import ADDRESS_FIELD_COLUMNS, CONTACT_FIELD_COLUMNS, STREET_COLUMNS
from contactsync.errors import RecordError

CONTACT_COLUMN_LIMITS = {col: model.CRM_LENGTHS[f] for f, col in CONTACT_FIELD_COLUMNS.items()
                          if f in model.CRM_LENGTHS}
ACCOUNT_NAME_LENGTH = model.CRM_LENGTHS["company"]  # ACCOUNT.ACCOUNT and CONTACT.ACCOUNT


class ValueTooLong(RecordError):
    """A value does not fit its CRM column; it is reported, never truncated (R19)."""

    def __init__(self, message: str, *, record_id: str | None = None) -> None:
        super().__init__(message, record_id=record_id, rule="R19",
                         hint="shorten or correct the value on the side it comes from")


def value_or_none(value: Any) -> Any:
    """None for NA/NaN/empty strings; the value otherwise (written exactly as held)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, str) and value.strip() == "":
        return None
    return value


def listed_fields(row: dict[str, Any]) -> list[str]:
    raw = value_or_none(row.get("fields")) or ""
    return [f.strip() for f in str(raw).split(",") if f.strip()]


def record_name(row: dict[str, Any]) -> str:
    """How a message names the record: its CONTACTID, else its Outlook id / plan key."""
    for key in ("crm_id", "new_key", "outlook_id", "account_key", "action_id"):
        v = value_or_none(row.get(key))
        if v is not None:
            return str(v).rstrip()
    return "?"


def check_length(table: str, column: str, value: str | None, limit: int, record: str) -> None:
    if value is not None and len(value) > limit:
        raise ValueTooLong(
            f"{table}.{column} of {record} is {len(value)} characters; the CRM column holds "
            f"{limit} (R19: not written, never truncated)", record_id=record,
        )


def parse_birthday(value: str | None, record: str) -> datetime | None:
    """Canonical 'YYYY-MM-DD' as the datetime the CRM stores (midnight)."""
    if value is None:
        return None
    try:
        return datetime.strptime(str(value).strip()[:10], "%Y-%m-%d")
    except ValueError as exc:
        raise ValueTooLong(f"CONTACT.BIRTHDAY of {record}: {value!r} is not a date YYYY-MM-DD (R19)",
                           record_id=record) from exc


def split_street(street: str | None, record: str) -> dict[str, str | None]:
    """ADDRESS1..4 from the canonical street; more than 4 lines or a long line fails (R19)."""
    lines: list[str | None] = []
    if street is not None:
        lines = list(str(street).replace("\r\n", "\n").split("\n"))
        while lines and not lines[-1].strip():
            lines.pop()
    if len(lines) > model.STREET_MAX_LINES:
        raise ValueTooLong(
            f"ADDRESS street of {record} has {len(lines)} lines; the CRM holds "
            f"{model.STREET_MAX_LINES} ({model.FIELD['street'].crm_name}) (R19: not written)", record_id=record,
        )
    out: dict[str, str | None] = {}
    for i, col in enumerate(STREET_COLUMNS):
        # Lines are kept as they are (a blank middle line stays blank, not NULL), so the
        # street reads back exactly as written.
        line = (lines[i] or None) if i < len(lines) else None
        check_length("ADDRESS", col, line, model.STREET_LINE_LENGTH, record)
        out[col] = line
    return out


def contact_columns(row: dict[str, Any], fields: Sequence[str], record: str) -> dict[str, Any]:
    """CONTACT column values of ``fields`` (company excluded: R6), length-checked."""
    out: dict[str, Any] = {}
    for f in fields:
        col = CONTACT_FIELD_COLUMNS.get(f)
        if col is None:
            continue
        value = value_or_none(row.get(f))
        if f == "birthday":
            out[col] = parse_birthday(value, record)
            continue
        value = None if value is None else str(value)
        check_length("CONTACT", col, value, CONTACT_COLUMN_LIMITS[col], record)
        out[col] = value
    if "LASTNAME" in out:
        out["LASTNAME_UC"] = None if out["LASTNAME"] is None else out["LASTNAME"].upper()[:CONTACT_COLUMN_LIMITS["LASTNAME"]]
    return out


def address_columns(row: dict[str, Any], fields: Sequence[str], record: str) -> dict[str, Any]:
    """ADDRESS column values of the address ``fields``, length-checked."""
    out: dict[str, Any] = {}
    if "street" in fields:
        out.update(split_street(value_or_none(row.get("street")), record))
    for f, col in ADDRESS_FIELD_COLUMNS.items():
        if f in fields:
            value = value_or_none(row.get(f))
            value = None if value is None else str(value)
            check_length("ADDRESS", col, value, model.CRM_LENGTHS[f], record)
            out[col] = value
    return out
