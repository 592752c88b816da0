"""The report's summary as Markdown, for the Prefect artifact of the daily quality-report.

The artifact is read in the Prefect UI, where the worker's files are out of reach: the
summary itself (verdict, the users who need attention and why) is what it shows; the
HTML's path on the worker is given for whoever can reach it. Record values are escaped
for Markdown and HTML alike (a display name may hold markup).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")
LEVEL_WORDS = {"bad": "needs attention", "warn": "check", "ok": "fine"}


def md(value: Any) -> str:
    """One value as inert Markdown text on one line."""
    text = html.escape("" if value is None else str(value), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _when(iso: str | None) -> str:
    return "never" if not iso else iso[:16].replace("T", " ") + " UTC"


def summary_markdown(data: Mapping[str, Any], *, html_path: str | None = None, limit: int = 25) -> str:
    """Verdict, fleet numbers of the period, and the health rows of the users who need
    attention (worst first, at most ``limit``)."""
    fleet = data["fleet"]
    days = fleet["days"]
    cycles = sum(d["cycles"] for d in days)
    failed = sum(d["failed"] for d in days)
    guard = sum(d["guard_stopped"] for d in days)
    writes = sum(d["outlook_writes"] + d["crm_writes"] for d in days)
    attention = [u for u in data["users"] if u["health"]["level"] != "ok"]
    lines = [f"# contact-sync data-quality report, last {data['days']} day(s)", ""]
    if attention:
        lines.append(f"**{len(attention)} of {fleet['users']} user(s) need attention**: "
                     f"{fleet['bad']} not syncing, {fleet['warn']} with records held back (R19); {fleet['ok']} fine.")
    else:
        lines.append(f"**All {fleet['users']} user(s) are fine.**")
    lines += ["", f"{cycles} cycle(s) in the period: {failed} failed, {guard} stopped by the guard (R16); "
              f"{writes} write(s) to both sides.", ""]
    if attention:
        lines += ["| health | user | mailbox | last success | failed in a row | guard stops | quarantined | conflicts | why |",
                  "|---|---|---|---|---:|---:|---:|---:|---|"]
        for u in attention[:limit]:
            h = u["health"]
            name = f"{u['name']} ({u['user']})" if u.get("name") else u["user"]
            lines.append(
                f"| {LEVEL_WORDS[h['level']]} | {md(name)} | {md(u.get('mailbox') or '-')} | {md(_when(h['last_success']))} "
                f"| {h['failures_in_a_row']} | {h['guard_stops_in_a_row']} | {h['open_quarantine']} "
                f"| {h['conflicts']} | {md('; '.join(h['reasons']))} |")
        if len(attention) > limit:
            lines.append(f"\n... and {len(attention) - limit} more in the report.")
    conflicts = sum(u["health"]["conflicts"] for u in data["users"])
    lines += ["", f"Conflicts resolved in the period (R9): {conflicts}. "
              "Ask `contact-sync explain --crm-id ID --user USER` for one contact's history."]
    if html_path:
        path = " ".join(str(html_path).replace("`", "").split())  # a code span shows it verbatim
        lines += ["", f"Full report (HTML and JSON) on the worker: `{path}`"]
    return "\n".join(lines) + "\n"
