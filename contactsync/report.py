"""The data-quality report: what the last cycles did, per user, as JSON and one HTML page.

Everything comes from the state store (runs, conflicts, quarantine), so the report can be
written at any time by ``contact-sync report`` without touching either side. The HTML is
self-contained (inline CSS, no script) and every value is escaped: contact data is user
input. Parameters with secret-looking names are blanked by the store before they are kept.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from contactsync.model import pad_user, unpad_user
from contactsync.state import QUARANTINE_COLUMNS, StateStore

#: The counts of spec/INTERFACE.md --json, always present (zero-filled) in a summary.
COUNT_OPS: dict[str, tuple[str, ...]] = {
    "outlook": ("create", "update", "delete"),
    "crm": ("create", "update", "unlink", "group_add", "group_remove"),
}
CONFLICT_SHOWN = ("crm_id", "outlook_id", "field", "snapshot_value", "crm_value",
                  "outlook_value", "winner", "policy", "rule")


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


def _plain(value: Any) -> Any:
    """A JSON-ready value: timestamps as ISO strings, NaN/NaT as None."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    return [{c: _plain(rec.get(c)) for c in columns} for rec in frame.to_dict("records")]


def _duration(run: dict[str, Any]) -> float | None:
    start, end = run.get("started_at"), run.get("finished_at")
    if start is None or end is None or pd.isna(start) or pd.isna(end):
        return None
    return round((end - start).total_seconds(), 3)


def _by_rule(summary: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Counts per side/op/rule: the summary's ``by_rule``, else counted from its
    ``actions`` list (True = that list was cut, so the counts are partial)."""
    if summary.get("by_rule"):
        return _plain(summary["by_rule"]), False
    actions = summary.get("actions") or []
    counted: dict[tuple[str, str, str | None], int] = {}
    for act in actions:
        key = (str(act.get("side")), str(act.get("op")), act.get("rule"))
        counted[key] = counted.get(key, 0) + 1
    rows = [{"side": k[0], "op": k[1], "rule": k[2], "count": n} for k, n in counted.items()]
    return rows, len(actions) >= 200


def _run_entry(run: dict[str, Any]) -> dict[str, Any]:
    summary = run.get("summary") or {}
    seconds = summary.get("duration_s")
    return {
        "run_id": run["run_id"],
        "started_at": _plain(run["started_at"]),
        "finished_at": _plain(run["finished_at"]),
        "seconds": seconds if isinstance(seconds, int | float) else _duration(run),
        "status": run["status"],
        "dry_run": bool(run["dry_run"]),
        "counts": _plain(summary.get("counts", {})),
        "conflicts": summary.get("conflicts", 0),
        "quarantined": summary.get("quarantined", 0),
        "durations": _plain(summary.get("durations", {})),
    }


def collect(store: StateStore, users: Sequence[str], *, runs: int = 20) -> dict[str, Any]:
    """The report's data (what report.json holds)."""
    out_users = []
    for user in users:
        padded = pad_user(user)
        frame = store.recent_runs(padded, limit=runs)
        run_list = frame.to_dict("records")
        finished = [r for r in run_list if r["status"] != "running"]
        last = (finished or run_list or [None])[0]
        entry: dict[str, Any] = {
            "user": unpad_user(padded),
            "last_run": None,
            "conflicts": [],
            "quarantine": [],
            "trend": [_run_entry(r) for r in run_list],
        }
        if last is not None:
            summary = last.get("summary") or {}
            by_rule, partial = _by_rule(summary)
            entry["last_run"] = {
                **_run_entry(last),
                "by_rule": by_rule,
                "by_rule_partial": partial,
                "params": _plain(last.get("params") or {}),
                "guard": _plain(summary.get("guard")),
                "message": _plain(summary.get("message")),
                "errors": _plain(list(summary.get("errors") or [])[:50]),
            }
            conflicts = store.conflicts(last["run_id"])
            conflicts = conflicts[conflicts["user"] == padded]
            entry["conflicts"] = _records(conflicts, CONFLICT_SHOWN)
            quarantine = store.quarantine(last["run_id"])
            quarantine = quarantine[quarantine["user"] == padded]
            entry["quarantine"] = _records(quarantine, QUARANTINE_COLUMNS)
        out_users.append(entry)
    return {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "users": out_users}


# --- HTML ----------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:78em}
h1{font-size:1.5em}h2{border-bottom:2px solid #ccd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.9em}
th,td{border:1px solid #ccd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef}td.n{text-align:right;font-variant-numeric:tabular-nums}
.none{color:#999}.ok{color:#176b2c}.bad{color:#a4161a;font-weight:600}.muted{color:#666}
"""


def _e(value: Any) -> str:
    """One cell's text, escaped (contact data can hold markup)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<span class="none">—</span>'
    return html.escape(str(value), quote=True).replace("\n", "<br>")


def _when(iso: str | None) -> str | None:
    """An ISO timestamp as people read it in a table (UTC, to the second)."""
    if not iso:
        return None
    return pd.Timestamp(iso).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S UTC")


def _overview(users: Sequence[dict[str, Any]]) -> str:
    headers = ["user", "last cycle", "status"]
    headers += [f"{side} {op}" for side, ops in _COUNT_COLS for op in ops]
    headers += ["conflicts", "quarantined"]
    rows = []
    for entry in users:
        last = entry["last_run"] or {}
        counts = last.get("counts") or {}
        row: list[Any] = [entry["user"], _when(last.get("started_at")), last.get("status")]
        row += [counts.get(side, {}).get(op, 0) for side, ops in _COUNT_COLS for op in ops]
        row += [last.get("conflicts"), last.get("quarantined")]
        rows.append(row)
    return "<h2>Overview</h2>" + _table(headers, rows, numeric=tuple(range(3, len(headers))))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            cls = ' class="n"' if i in numeric else ""
            cells.append(f"<td{cls}>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _status(status: str) -> str:
    cls = "ok" if status in ("ok", "dry-run") else "bad"
    return f'<span class="{cls}">{html.escape(status)}</span>'


def _user_html(entry: dict[str, Any]) -> str:
    parts = [f"<h2>User {_e(entry['user'])}</h2>"]
    last = entry["last_run"]
    if last is None:
        parts.append('<p class="muted">No cycle has run for this user yet.</p>')
        return "\n".join(parts)
    parts.append(
        f"<p>Last cycle <code>{_e(last['run_id'])}</code>: {_status(last['status'])}"
        f"{' (dry run: nothing written, R20)' if last['dry_run'] else ''}, "
        f"started {_e(_when(last['started_at']))}, {_e(last['seconds'])} s; "
        f"{_e(last['conflicts'])} conflict(s), {_e(last['quarantined'])} quarantined.</p>"
    )
    if last.get("message"):
        parts.append(f"<p>{_e(last['message'])}</p>")
    if last.get("guard"):
        parts.append(f"<p class=\"bad\">Mass-change guard (R16): {_e(last['guard'])}</p>")
    if last.get("errors"):
        items = "".join(f"<li>{_e(err)}</li>" for err in last["errors"])
        parts.append(f"<h3>Errors</h3><ul class=\"bad\">{items}</ul>")
    if entry.get("gx_docs"):
        href = html.escape(entry["gx_docs"], quote=True)
        parts.append(f'<p>Validation results of this user: <a href="{href}">Data Docs</a></p>')
    partial = " (counted from the first 200 actions)" if last.get("by_rule_partial") else ""
    parts.append(f"<h3>Actions per side, operation and rule{partial}</h3>")
    by_rule = sorted(last["by_rule"], key=lambda r: (r["side"], r["op"], r["rule"] or ""))
    parts.append(_table(("side", "operation", "rule", "count"),
                        [(r["side"], r["op"], r["rule"], r["count"]) for r in by_rule], numeric=(3,)))
    parts.append("<h3>Conflicts (R9): both sides changed a field since the last sync</h3>")
    rows = []
    for c in entry["conflicts"]:
        rows.append((c["crm_id"], c["outlook_id"], c["field"], c["snapshot_value"],
                     c["crm_value"], c["outlook_value"], c["winner"], c["policy"], c["rule"]))
    parts.append(_table(("CRM id", "Outlook id", "field", "last synced", "CRM value",
                         "Outlook value", "winner", "policy", "rule"), rows))
    parts.append("<h3>Quarantined records (R19): not written, fix the record and they sync</h3>")
    parts.append(_table(("side", "record", "field", "rule", "reason", "value (preview)"),
                        [tuple(q[c] for c in QUARANTINE_COLUMNS) for q in entry["quarantine"]]))
    parts.append(f"<h3>Trend over the last {len(entry['trend'])} cycle(s)</h3>")
    headers = ["started", "status", "dry run"]
    headers += [f"{side} {op}" for side, ops in _COUNT_COLS for op in ops]
    headers += ["conflicts", "quarantined", "seconds"]
    trend_rows = []
    for run in entry["trend"]:
        counts = run["counts"] or {}
        row: list[Any] = [_when(run["started_at"]), run["status"], "yes" if run["dry_run"] else "no"]
        row += [counts.get(side, {}).get(op, 0) for side, ops in _COUNT_COLS for op in ops]
        row += [run["conflicts"], run["quarantined"], run["seconds"]]
        trend_rows.append(row)
    parts.append(_table(headers, trend_rows, numeric=tuple(range(3, len(headers)))))
    return "\n".join(parts)


_COUNT_COLS = tuple(COUNT_OPS.items())


def render_html(data: dict[str, Any], *, gx_link: str | None = None) -> str:
    """The report page for :func:`collect`'s data."""
    users = "\n".join(_user_html(u) for u in data["users"]) or '<p class="muted">No users.</p>'
    overview = _overview(data["users"]) if len(data["users"]) > 1 else ""
    gx = (f'<p>Validation details: <a href="{html.escape(gx_link, quote=True)}">'
          "Great Expectations Data Docs</a></p>") if gx_link else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>contact-sync data-quality report</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>contact-sync: data-quality report</h1>"
        f"<p class=\"muted\">Generated {_e(data['generated_at'])}. Rule ids refer to "
        "SYNC_RULES.md (R9 conflicts, R16 guard, R19 quarantine, R20 dry run).</p>"
        f"{gx}{overview}{users}</body></html>\n"
    )


def _docs_link(out_dir: Path, folder: Path) -> str | None:
    """Relative link to a Data Docs site in ``folder`` (its shallowest index.html)."""
    if not folder.is_dir():
        return None
    pages = sorted(folder.rglob("index.html"), key=lambda p: (len(p.parts), str(p)))
    target = pages[0] if pages else folder
    link = target.relative_to(out_dir).as_posix()
    return link if pages else link + "/"


def write_report(
    store: StateStore, users: Sequence[str], out_dir: Path, *, runs: int = 20
) -> dict[str, Path]:
    """Write report.json and report.html into ``out_dir``; returns {"json": ..., "html": ...}.

    Links to ``gx/`` (Great Expectations Data Docs) when the pipeline put it beside.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = collect(store, users, runs=runs)
    gx_link = _docs_link(out_dir, out_dir / "gx")
    data["gx_docs"] = gx_link
    for entry in data["users"]:  # the pipeline may copy each user's docs to gx/<user>/
        entry["gx_docs"] = _docs_link(out_dir, out_dir / "gx" / entry["user"])
    json_path = out_dir / "report.json"
    html_path = out_dir / "report.html"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    html_path.write_text(render_html(data, gx_link=gx_link), encoding="utf-8")
    return {"json": json_path, "html": html_path}
