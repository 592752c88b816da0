"""Tiny frame builders for planning tests: one dict per record, the rest defaulted."""

from __future__ import annotations

from typing import Any

import pandas as pd

from contactsync.model import ACCOUNT_COLUMNS, CRM_COLUMNS, FIELDS, OUTLOOK_COLUMNS, conform
from contactsync.plan import LINK_COLUMNS, PlanInputs, PlanResult, PlanSettings, plan_cycle

T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def ts(minutes: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def crm(crm_id: str, *, in_group: bool = True, read_only: bool = False,
        modified: int = 0, created: int = 0, **fields: Any) -> dict[str, Any]:
    return {"crm_id": crm_id, "in_group": in_group, "read_only": read_only,
            "crm_modified": ts(modified), "crm_created": ts(created), **fields}


def olk(outlook_id: str, *, tag: str | None = None, modified: int = 0, created: int = 0,
        **fields: Any) -> dict[str, Any]:
    return {"outlook_id": outlook_id, "crm_tag": tag, "outlook_modified": ts(modified),
            "outlook_created": ts(created), **fields}


def link(crm_id: str, outlook_id: str, *, status: str = "active", **snapshot: Any) -> dict:
    return {"crm_id": crm_id, "outlook_id": outlook_id, "status": status, **snapshot}


def account(account_id: str, name: str, created: int = 0) -> dict[str, Any]:
    return {"account_id": account_id, "account_name": name, "account_created": ts(created)}


def frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    return conform(pd.DataFrame(rows, columns=list(columns)) if rows else pd.DataFrame(
        columns=list(columns)), columns)


def linked(crm_id: str, outlook_id: str, **values: Any) -> tuple[dict, dict, dict]:
    """A pair in sync: both sides and the snapshot hold ``values``; Outlook is tagged."""
    return (crm(crm_id, **values), olk(outlook_id, tag=crm_id, **values),
            link(crm_id, outlook_id, **values))


def plan_inputs(
    crm_rows: list[dict] = (),  # type: ignore[assignment]
    outlook_rows: list[dict] = (),  # type: ignore[assignment]
    link_rows: list[dict] = (),  # type: ignore[assignment]
    *,
    candidates: list[dict] = (),  # type: ignore[assignment]
    gone: dict[str, bool] | None = None,
    accounts: list[dict] = (),  # type: ignore[assignment]
) -> PlanInputs:
    return PlanInputs(
        crm=frame(list(crm_rows), CRM_COLUMNS),
        outlook=frame(list(outlook_rows), OUTLOOK_COLUMNS),
        links=frame(list(link_rows), LINK_COLUMNS),
        crm_candidates=frame([{**c, "in_group": False} for c in candidates], CRM_COLUMNS),
        crm_gone=pd.DataFrame({"crm_id": list((gone or {}).keys()),
                               "exists": list((gone or {}).values())}),
        accounts=frame(list(accounts), ACCOUNT_COLUMNS),
    )


def plan(*rows: list[dict], **options: Any) -> PlanResult:
    """plan_cycle over :func:`plan_inputs` (``candidates``, ``gone``, ``accounts``); any
    other keyword is a PlanSettings switch."""
    lookups = {k: options.pop(k) for k in ("candidates", "gone", "accounts") if k in options}
    return plan_cycle(plan_inputs(*rows, **lookups), PlanSettings(**options))


def rows(result: PlanResult, side: str | None = None, op: str | None = None) -> pd.DataFrame:
    a = result.actions
    if side:
        a = a[a["side"] == side]
    if op:
        a = a[a["op"] == op]
    return a.reset_index(drop=True)


def ops(result: PlanResult) -> list[tuple[str, str, str]]:
    """(side, op, rule) of every action, in plan order."""
    a = result.actions
    return list(zip(a["side"], a["op"], a["rule"], strict=True))


def fields_of(action: pd.Series) -> dict[str, Any]:
    """The field values an action writes."""
    names = [f for f in str(action["fields"]).split(",") if f]
    assert set(names) <= set(FIELDS)
    return {f: action[f] for f in names}


def filled(action: pd.Series) -> dict[str, Any]:
    """The non-empty values a create writes (a create lists every synced field)."""
    return {f: v for f, v in fields_of(action).items() if v is not None}
