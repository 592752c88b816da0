"""The run summary a cycle keeps in the state store, and JSON-ready values for the report.

The cycle writes :func:`run_summary`'s shape with ``StateStore.finish_run``; the report
reads it back. Kept apart from the rendering so the cycle imports no template engine.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

#: The counts of spec/INTERFACE.md --json, always present (zero-filled) in a summary.
COUNT_OPS: dict[str, tuple[str, ...]] = {
    "outlook": ("create", "update", "delete"),
    "crm": ("create", "update", "unlink", "group_add", "group_remove"),
}


def run_summary(
    by_rule: pd.DataFrame | None,
    *,
    conflicts: int = 0,
    quarantined: int = 0,
    durations: dict[str, float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The summary dict to give ``StateStore.finish_run``, in the shape the report reads.

    ``by_rule`` is ``PlanResult.summary()`` (side, op, rule, count) of the actions that
    were applied (or planned, for a dry run). ``extra`` keys (e.g. ``guard``) are kept.
    """
    counts: dict[str, dict[str, int]] = {side: dict.fromkeys(ops, 0) for side, ops in COUNT_OPS.items()}
    rows: list[dict[str, Any]] = []
    if by_rule is not None and not by_rule.empty:
        for rec in by_rule.to_dict("records"):
            side, op, n = str(rec["side"]), str(rec["op"]), int(rec["count"])
            counts.setdefault(side, {})
            counts[side][op] = counts[side].get(op, 0) + n
            rule = rec.get("rule")
            rows.append({"side": side, "op": op,
                         "rule": None if rule is None or rule != rule else str(rule), "count": n})
    return {"counts": counts, "by_rule": rows, "conflicts": int(conflicts),
            "quarantined": int(quarantined), "durations": dict(durations or {}), **extra}


def plain(value: Any) -> Any:
    """A JSON-ready value: timestamps as ISO strings, NaN/NaT as None."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def by_rule(summary: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Counts per side/op/rule: the summary's ``by_rule``, else counted from its
    ``actions`` list (True = that list was cut at 200, so the counts are partial)."""
    if summary.get("by_rule"):
        return plain(summary["by_rule"]), False
    actions = summary.get("actions") or []
    counted: dict[tuple[str, str, str | None], int] = {}
    for act in actions:
        key = (str(act.get("side")), str(act.get("op")), act.get("rule"))
        counted[key] = counted.get(key, 0) + 1
    rows = [{"side": k[0], "op": k[1], "rule": k[2], "count": n} for k, n in counted.items()]
    return rows, len(actions) >= 200


def writes(counts: dict[str, dict[str, int]] | None, side: str) -> int:
    """The writes of one side in a summary's ``counts`` (every operation but none)."""
    return int(sum((counts or {}).get(side, {}).values()))
