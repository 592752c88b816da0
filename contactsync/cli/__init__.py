"""The `contact-sync` command (spec/INTERFACE.md): the outermost shell of the program.

``contactsync.cli`` is the one part of ``contactsync`` that may import ``flows`` (inside
the commands that run them: ``commands.py``, ``demo.py``), and the one place where errors
become messages and exit codes. This module parses the arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from contactsync.errors import ContactSyncError, show_error
from contactsync.vocab import Direction, Policy

app = typer.Typer(
    help="Two-way Infor CRM <-> Outlook contact synchronization (rules R1-R20).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
crm_app = typer.Typer(help="The CRM database.", no_args_is_help=True)
emulator_app = typer.Typer(help="The local Microsoft Graph emulator.", no_args_is_help=True)
app.add_typer(crm_app, name="crm")
app.add_typer(emulator_app, name="emulator")
prefect_app = typer.Typer(
    help="The local Prefect server the commands start when no Prefect API is configured.",
    no_args_is_help=True,
)
app.add_typer(prefect_app, name="prefect")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Configuration file (default: $CONTACT_SYNC_CONFIG, else ./contact-sync.toml).",
    ),
]
UserOpt = Annotated[
    list[str] | None,
    typer.Option("--user", help="CRM user id (USERINFO.USERID); repeatable."),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every configured user (the default).")]


def fail(exc: ContactSyncError) -> typer.Exit:
    """Print an error the way users read it, and return the exit to raise."""
    return typer.Exit(show_error(exc))


@app.command()
def sync(
    config: ConfigOpt = None,
    user: UserOpt = None,
    all_users: AllOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan and report; write nothing (R20).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Pass the mass-change guard (R16).")] = False,
    policy: Annotated[Policy | None, typer.Option("--policy", help="Conflict policy (R9).")] = None,
    direction: Annotated[
        Direction | None, typer.Option("--direction", help="Which way values flow (R10).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per user and line.")] = False,
) -> None:
    """Run one sync cycle per user, as the Prefect flow."""
    from contactsync.cli.commands import run_sync_command

    raise typer.Exit(
        run_sync_command(
            config=config, users=user or [], dry_run=dry_run, force=force,
            policy=policy, direction=direction, json_out=json_out,
        )
    )


@app.command()
def backfill(
    config: ConfigOpt = None,
    user: UserOpt = None,
    all_users: AllOpt = False,
    since: Annotated[str | None, typer.Option("--since", help="ISO date: re-read changes since.")] = None,
    relink: Annotated[bool, typer.Option("--relink", help="Forget links and re-match (R7a, R7).")] = False,
) -> None:
    """Full re-read of both sides, re-match and repair; then a normal cycle."""
    from contactsync.cli.commands import run_backfill_command

    raise typer.Exit(run_backfill_command(config=config, users=user or [], since=since, relink=relink))


@app.command()
def users(
    config: ConfigOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per user and line.")] = False,
) -> None:
    """Who will sync (configured and CRM users) and, for the others, why not."""
    from contactsync.cli.commands import run_users_command

    raise typer.Exit(run_users_command(config=config, json_out=json_out))


@app.command()
def report(
    config: ConfigOpt = None,
    user: UserOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the HTML and JSON report (default: [report] out_dir).")
    ] = None,
    days: Annotated[int | None, typer.Option("--days", help="The period, in days (default: [report] days, 7).")] = None,
) -> None:
    """Write the data-quality report of the last N days (HTML and JSON); print the health table."""
    from contactsync.cli.report_cmds import run_report_command

    raise typer.Exit(run_report_command(config=config, users=user or [], out=out, days=days))


@app.command()
def explain(
    config: ConfigOpt = None,
    user: UserOpt = None,
    email: Annotated[str | None, typer.Option("--email", help="Any of the contact's email addresses.")] = None,
    crm_id: Annotated[str | None, typer.Option("--crm-id", help="CONTACT.CONTACTID.")] = None,
    outlook_id: Annotated[str | None, typer.Option("--outlook-id", help="The Outlook contact's id.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object with every event.")] = False,
) -> None:
    """One contact's history: every write, conflict and quarantine of the kept period."""
    from contactsync.cli.report_cmds import run_explain_command

    raise typer.Exit(run_explain_command(config=config, users=user or [], email=email, crm_id=crm_id,
                                         outlook_id=outlook_id, json_out=json_out))


@crm_app.command("init")
def crm_init(
    url: Annotated[str, typer.Option("--url", help="SQLAlchemy URL of an empty database.")],
    demo: Annotated[bool, typer.Option("--demo", help="Add demo users, accounts, contacts, groups.")] = False,
    schema: Annotated[str, typer.Option("--schema", help="Schema name ('sysdba' on SQL Server).")] = "",
) -> None:
    """Create the Infor CRM tables of CRM_SCHEMA.md (and, with --demo, demo data)."""
    from contactsync.crm.setup import init_database

    try:
        summary = init_database(url, schema=schema or None, demo=demo)
    except ContactSyncError as exc:
        raise fail(exc) from None
    typer.echo(summary)


@emulator_app.command("serve")
def emulator_serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8765,
    db: Annotated[Path | None, typer.Option("--db", help="SQLite file that keeps the mailboxes.")] = None,
) -> None:
    """Run the Microsoft Graph contacts emulator in the foreground until stopped."""
    from contactsync.emulator.server import serve

    serve(host=host, port=port, db_path=db)


@prefect_app.command("status")
def prefect_status() -> None:
    """Whether the local Prefect server runs, where, and its log file (exit 1: not running)."""
    from contactsync.cli.prefect_server import describe

    text, running = describe()
    typer.echo(text)
    raise typer.Exit(0 if running else 1)


@prefect_app.command("stop")
def prefect_stop() -> None:
    """Stop the local Prefect server (the next command starts it again)."""
    import os

    from contactsync.cli.prefect_server import default_home, stop_server

    home = Path(os.environ.get("PREFECT_HOME") or default_home()).expanduser()
    stopped = stop_server(home) if home.is_dir() else None
    typer.echo(f"stopped the local Prefect server (pid {stopped.pid}, {stopped.url})" if stopped
               else "no local Prefect server was running")


@app.command()
def demo(
    dir: Annotated[Path, typer.Option("--dir", help="Folder for the demo's CRM, emulator and report.")] = Path("demo"),
) -> None:
    """The guided demo: two cycles with scripted edits on both sides, explained by rule."""
    from contactsync.cli.demo import run_demo

    raise typer.Exit(run_demo(dir))


def main() -> None:
    """Console-script entry point (``sync``/``backfill`` may run in the warm process: cli/warm.py)."""
    from contactsync.cli.warm import run_warm

    code = run_warm(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    run_app()


def run_app() -> None:
    """The commands, in this process."""
    try:
        app()
    except ContactSyncError as exc:  # anything a command did not turn into an exit itself
        sys.exit(show_error(exc))
