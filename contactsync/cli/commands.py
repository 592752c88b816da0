"""What the `sync`, `backfill`, `users` and `report` commands do: configuration in, flows run, exit code out.

Kept apart from ``cli.py`` (argument parsing) so the commands can be driven from tests and
from the demo without a subprocess. Prefect is imported only here, inside the functions,
after the environment is prepared: a persistent Prefect home (so only the very first run
pays for the database migrations) and no analytics.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import typer

from contactsync.cli.prefect_server import ApiChoice, use_prefect_api
from contactsync.config import Settings, load_settings
from contactsync.cycle.outcome import CycleOutcome, worst_exit_code
from contactsync.errors import ConfigError, ContactSyncError, show_error
from contactsync.vocab import DIRECTIONS, POLICIES


def prepare_prefect_env() -> ApiChoice:
    """The Prefect API for this command (the configured one, else the local server, started
    once and reused: cli/prefect_server.py), with heartbeats off for its own flow runs."""
    from flows.runtime import command_settings

    choice = use_prefect_api()
    command_settings(choice.url)
    return choice


def _selected_users(settings: Settings, users: Sequence[str]) -> list[str]:
    from contactsync.cycle.users import selected_users

    return [u.crm_user for u in selected_users(settings, users)]


def _check_choice(name: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise ConfigError(f"--{name} must be one of {', '.join(choices)} (got {value!r})")


def _setup(config: Path | None, users: Sequence[str]) -> tuple[list[str], str | None]:
    """Validate the configuration and the users, then prepare Prefect; raises ConfigError.

    Returns the selected users and the configuration path to hand to the flows.
    """
    selected = _selected_users(load_settings(config), users)
    prepare_prefect_env()
    return selected, (str(Path(config).resolve()) if config else None)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[None]:
    """A rich progress bar on long loads, when a person is watching (stderr is a terminal)."""
    from contactsync import progress

    if not enabled or not sys.stderr.isatty():
        with progress.installed(None):
            yield
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def hook(user: str, done: int, total: int) -> None:
            if user not in tasks:
                tasks[user] = bar.add_task(f"Outlook writes for {user}", total=total)
            bar.update(tasks[user], completed=done, total=total)

        with progress.installed(hook):
            yield


def print_outcome(outcome: CycleOutcome, *, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(outcome.json_line()))
        if outcome.exit_code and outcome.message:  # stdout stays the JSON lines; the reason goes to stderr
            typer.echo(f"contact-sync: {outcome.user.strip()}: {outcome.message}", err=True)
        return
    c = outcome.counts
    head = f"{outcome.user.strip()}: {outcome.status}"
    typer.echo(
        f"{head} | Outlook +{c['outlook']['create']} ~{c['outlook']['update']} -{c['outlook']['delete']}"
        f" | CRM +{c['crm']['create']} ~{c['crm']['update']} unlink {c['crm']['unlink']}"
        f" group +{c['crm']['group_add']} -{c['crm']['group_remove']}"
        f" | conflicts {outcome.conflicts} | quarantined {outcome.quarantined} | run {outcome.run_id}"
    )
    if outcome.message:
        typer.echo(f"  {outcome.message}")
    for err in outcome.errors[:20]:
        typer.echo(f"  error: {err}", err=True)
    for prob in outcome.problems[:20]:
        typer.echo(f"  quarantined {prob.get('side')} {prob.get('record_id')}: {prob.get('reason')}", err=True)


def run_sync_command(
    *, config: Path | None, users: Sequence[str], dry_run: bool, force: bool,
    policy: str | None, direction: str | None, json_out: bool,
) -> int:
    """`contact-sync sync`: the fan-out flow over the users; exit code = the worst of theirs."""
    try:
        _check_choice("policy", policy, POLICIES)
        _check_choice("direction", direction, DIRECTIONS)
        selected, config_path = _setup(config, users)
    except ContactSyncError as exc:
        return show_error(exc)
    from flows.sync_all_users import outcomes_of, sync_all_users

    # One flow run for the command: its users run at once, up to sync.parallel_users.
    with progress_bar(not json_out):
        state = sync_all_users(
            users=selected, dry_run=dry_run, force=force, policy=policy,
            direction=direction, config_path=config_path, return_state=True,
        )
    outcomes = outcomes_of(state)
    for outcome in outcomes:
        print_outcome(outcome, json_out=json_out)
    return worst_exit_code(outcomes)


def run_backfill_command(
    *, config: Path | None, users: Sequence[str], since: str | None, relink: bool
) -> int:
    """`contact-sync backfill`: full re-read and repair, then a normal cycle, per user."""
    try:
        if since:
            try:
                date.fromisoformat(since[:10])
            except ValueError:
                raise ConfigError(f"--since must be an ISO date (YYYY-MM-DD), got {since!r}") from None
        selected, config_path = _setup(config, users)
    except ContactSyncError as exc:
        return show_error(exc)
    from flows.backfill import backfill
    from flows.sync_all_users import outcomes_of

    with progress_bar(True):
        state = backfill(users=selected, since=since, relink=relink, config_path=config_path, return_state=True)
    outcomes = outcomes_of(state)
    for o in outcomes:
        print_outcome(o, json_out=False)
    return worst_exit_code(outcomes)


def run_users_command(*, config: Path | None, json_out: bool) -> int:
    """`contact-sync users`: who will sync and, for the others, why not."""
    from contactsync.cycle.users import roster

    try:
        entries = roster(load_settings(config), with_crm=True)
    except ContactSyncError as exc:
        return show_error(exc)
    for e in entries:
        if json_out:
            typer.echo(json.dumps(e.json_line()))
            continue
        verdict = "syncs" if e.syncs else "does not sync: " + "; ".join(e.reasons)
        typer.echo(f"{e.crm_user.strip():<12}  {e.display_name or '-':<24}  {e.mailbox or '-':<32}  "
                   f"{e.source:<6}  {verdict}")
    if not json_out:
        typer.echo(f"{sum(e.syncs for e in entries)} of {len(entries)} user(s) will sync")
    return 0
