"""`contact-sync report` and `contact-sync explain`: read the state store, write nothing else.

Neither needs Prefect: they read what the cycles recorded, so they answer in about a
second and work while the sync itself is failing (which may be why they are asked).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from contactsync.config import Settings, load_settings
from contactsync.errors import ConfigError, ContactSyncError, SideUnreachable


def _fail(exc: ContactSyncError) -> int:
    typer.echo(f"contact-sync: {exc.describe()}", err=True)
    return exc.exit_code


def _users(settings: Settings, users: Sequence[str]) -> list[Any]:
    """The users named, else every user who syncs (``[users_from_crm]`` included).

    When the CRM cannot be read for its users, the configured ones are still reported:
    these commands must work while the sync fails (a warning says who may be missing)."""
    from contactsync.cycle.users import selected_users

    try:
        return selected_users(settings, users)
    except SideUnreachable as exc:
        if users or not settings.users:
            raise
        typer.echo(f"contact-sync: warning: {exc.describe()}; only the configured [[users]] are shown", err=True)
        return list(settings.users)


def run_report_command(*, config: Path | None, users: Sequence[str], out: Path | None, days: int | None) -> int:
    """Write the report ([report] out_dir unless --out) and print the health table."""
    from rich.console import Console

    from contactsync.report.build import build_report
    from contactsync.report.render import terminal_table

    try:
        if days is not None and days < 1:
            raise ConfigError(f"--days must be at least 1 (got {days})")
        settings = load_settings(config)
        selected = _users(settings, users)
        from contactsync.cycle.run import data_docs_dir  # where the sync puts each user's docs

        built = build_report(settings, selected, out_dir=out, days=days, docs_dir=data_docs_dir)
    except ContactSyncError as exc:
        return _fail(exc)
    import sys

    # A pipe or a log gets the table at 120 columns instead of rich's 80.
    Console(width=None if sys.stdout.isatty() else 120).print(terminal_table(built.data))
    for kind, path in built.paths.items():
        typer.echo(f"{kind}: {path}")
    return 0


def _value(v: Any) -> str:
    return "(empty)" if v is None or v == "" else repr(v)


def describe(row: dict[str, Any]) -> str:
    """One history row as the line `explain` prints."""
    when = str(row["at"])[:19].replace("T", " ") + " UTC"
    ids = f"CRM {row['crm_id'].strip() if row['crm_id'] else '-'} / Outlook {row['outlook_id'] or '-'}"
    if row["kind"] == "conflict":
        after = row["after"]
        return (f"{when}  {row['rule']} conflict on {row['fields']} ({ids}): CRM {_value(after.get('crm'))} vs "
                f"Outlook {_value(after.get('outlook'))}, last synced {_value(row['before'].get('last synced'))} "
                f"-> {row['winner']} wins ({row['reason']})")
    if row["kind"] == "quarantine":
        return (f"{when}  {row['rule']} quarantined on the {row['side']} side ({ids}), field {row['fields'] or '-'}: "
                f"{row['reason']} (value {_value(row['after'].get('value'))})")
    changes = "; ".join(f"{f}: {_value(row['before'].get(f))} -> {_value(row['after'].get(f))}"
                        for f in (row["fields"] or "").split(",") if f)
    return (f"{when}  {row['rule']} {row['side']} {row['op']} ({ids})"
            + (f" {changes}" if changes else "") + (f" - {row['reason']}" if row["reason"] else ""))


def _ever_linked(store: Any, users: Sequence[str], *, email: str | None, crm_id: str | None,
                 outlook_id: str | None) -> bool:
    """The contact is (or was, as a stopped link) a synced pair, though no history is kept."""
    import pandas as pd

    from contactsync.model import EMAIL_FIELDS, email_key

    wanted = None if email is None else email_key(pd.Series([email], dtype=object)).iat[0]
    for user in users:
        links = store.load_links(user)
        if links.empty:
            continue
        if crm_id is not None and links["crm_id"].astype(str).str.strip().eq(crm_id.strip()).any():
            return True
        if outlook_id is not None and links["outlook_id"].eq(outlook_id).any():
            return True
        if email is not None:
            for col in EMAIL_FIELDS:
                if wanted is not None and email_key(links[col]).eq(wanted).any():
                    return True
    return False


def run_explain_command(
    *, config: Path | None, users: Sequence[str], email: str | None, crm_id: str | None,
    outlook_id: str | None, json_out: bool,
) -> int:
    """One contact's history; exit 2 when no such contact was ever synced."""
    from contactsync.cycle.sides import state_store

    given = [(k, v) for k, v in (("--email", email), ("--crm-id", crm_id), ("--outlook-id", outlook_id)) if v]
    try:
        if len(given) != 1:
            raise ConfigError("explain needs exactly one of --email, --crm-id, --outlook-id",
                              hint="e.g. contact-sync explain --email lee@example.com")
        settings = load_settings(config)
        selected = [u.crm_user for u in _users(settings, users)]
        store = state_store(settings.state_url())
    except ContactSyncError as exc:
        return _fail(exc)
    key, value = given[0]
    try:
        rows = store.contact_history(selected, email=email, crm_id=crm_id, outlook_id=outlook_id)
        linked = rows.empty and _ever_linked(store, selected, email=email, crm_id=crm_id, outlook_id=outlook_id)
    finally:
        store.close()
    keep = settings.report.history_days
    if rows.empty and not linked:
        typer.echo(f"contact-sync: no contact with {key} {value} was ever synced for user(s) "
                   f"{', '.join(u.strip() for u in selected)} (history is kept {keep} days)", err=True)
        return 2
    events = [] if rows.empty else rows.to_dict("records")
    if json_out:
        typer.echo(json.dumps({"query": {key.lstrip("-"): value}, "kept_days": keep, "events": [
            {**{k: v for k, v in e.items() if k != "user"}, "user": str(e["user"]).strip()} for e in events]},
            ensure_ascii=False, default=str))
        return 0
    if not events:
        typer.echo(f"{key} {value}: a synced contact with no change recorded in the last {keep} days")
        return 0
    for user in dict.fromkeys(e["user"] for e in events):
        mine = [e for e in events if e["user"] == user]
        typer.echo(f"{key} {value}, user {str(user).strip()}: {len(mine)} event(s) in the last {keep} days")
        for e in mine:
            typer.echo("  " + describe(e))
    return 0
