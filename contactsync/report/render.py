"""The report written out: report.html from Jinja2 templates, report.json, a terminal table.

The templates live beside this module (``templates/``) and are rendered with autoescape
on: record values (names with markup, quotes, emoji) are escaped by Jinja2, never by
hand. The page has no script and no external resource, so it reads the same offline, in
a mail attachment, and in the browser test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from contactsync.report import charts
from contactsync.report.facts import DEFAULT_DAYS, SHOWN_PER_USER, collect
from contactsync.report.people import docs_link
from contactsync.report.summary import writes
from contactsync.state import StateStore

LEVEL_WORDS = {"bad": "needs attention", "warn": "check", "ok": "fine"}


def _when(iso: str | None) -> str:
    if not iso:
        return "never"
    return pd.Timestamp(iso).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def _dash(value: Any) -> Any:
    """Missing values as a dash; everything else as it is (escaped by autoescape)."""
    return "—" if value is None or value == "" or (isinstance(value, float) and value != value) else value


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("contactsync.report", "templates"),
        autoescape=True,  # every template, whatever its name ends with
        undefined=jinja2.StrictUndefined,  # a typo in a template fails loudly, not blank
        trim_blocks=False,
    )
    env.filters.update(when=_when, dash=_dash, writes=writes)
    return env


def render_html(data: Mapping[str, Any], *, notes: Sequence[str] = ()) -> str:
    """The report page for :func:`collect`'s data."""
    hours = int(data.get("bucket_hours") or 1)
    user_charts = {u["user"]: charts.user_chart(u["chart"], hours) for u in data["users"] if u["chart"]}
    return environment().get_template("report.html.j2").render(
        data=data, notes=list(notes), level_words=LEVEL_WORDS, shown=SHOWN_PER_USER,
        user_charts=user_charts, fleet_chart=charts.fleet_chart(data["fleet"]["days"]),
    )


def terminal_table(data: Mapping[str, Any], *, limit: int = 20) -> Any:
    """The health rows as a rich Table, worst first (the first ``limit`` users)."""
    from rich.table import Table

    styles = {"bad": "bold red", "warn": "yellow", "ok": "green"}
    table = Table(title=f"contact-sync health, last {data['days']} day(s)", title_justify="left")
    for head, justify in (("health", "left"), ("user", "left"), ("last success", "left"),
                          ("failed", "right"), ("guard", "right"), ("quarantined", "right"),
                          ("conflicts", "right")):
        table.add_column(head, justify=justify, no_wrap=head != "user")  # type: ignore[arg-type]
    for u in list(data["users"])[:limit]:
        h = u["health"]
        name = f"{u['name']} ({u['user']})" if u.get("name") else u["user"]
        table.add_row(LEVEL_WORDS[h["level"]], name, _when(h["last_success"]).removesuffix(" UTC"),
                      str(h["failures_in_a_row"]), str(h["guard_stops_in_a_row"]),
                      str(h["open_quarantine"]), str(h["conflicts"]), style=styles[h["level"]])
    hidden = len(data["users"]) - limit
    if hidden > 0:
        table.caption = f"... and {hidden} more user(s) in the report"
    return table


def write_report(
    store: StateStore, users: Sequence[str], out_dir: Path, *, days: int = DEFAULT_DAYS, runs: int = 20,
    people: Mapping[str, Mapping[str, Any]] | None = None, notes: Sequence[str] = (),
    now: datetime | None = None,
) -> dict[str, Path]:
    """Write report.json and report.html into ``out_dir``; returns {"json": ..., "html": ...}.

    ``people`` (see :func:`contactsync.report.facts.collect`) gives names, mailboxes and
    each user's Data Docs; without a docs link for a user, ``out_dir/gx/<user>/`` is used
    when it exists, and ``out_dir/gx/`` is linked as the fleet's Data Docs.
    """
    data = collect(store, users, days=days, runs=runs, people=people, now=now)
    return write_files(data, Path(out_dir), notes=notes)


def write_files(data: dict[str, Any], out_dir: Path, *, notes: Sequence[str] = ()) -> dict[str, Path]:
    """report.json and report.html of :func:`collect`'s ``data`` (links completed here)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fleet_docs = out_dir / "gx" / "index.html"  # only a site of its own, never one user's
    data["gx_docs"] = "gx/index.html" if fleet_docs.is_file() else None
    for entry in data["users"]:
        if not entry.get("gx_docs"):
            entry["gx_docs"] = docs_link(out_dir, out_dir / "gx" / entry["user"])
    data["notes"] = list(notes)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    json_path.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    html_path.write_text(render_html(data, notes=notes), encoding="utf-8")
    return {"json": json_path, "html": html_path}
