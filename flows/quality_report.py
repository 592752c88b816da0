"""The daily data-quality report: each user's health, the period's conflicts and quarantine.

It writes into the configured report folder ([report] out_dir, relative to the
configuration file: never the worker's working directory, which is the code checkout),
and its Prefect artifact holds the report's summary itself, since the UI cannot open a
file on the worker.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from contactsync.config import load_settings
from contactsync.cycle.users import selected_users


@flow(name="quality_report")
def quality_report(
    out_dir: str | None = None, users: list[str] | None = None, config_path: str | None = None,
    days: int | None = None,
) -> dict[str, str]:
    """Write report.html / report.json into ``out_dir`` (default: [report] out_dir) over
    the last ``days`` (default: [report] days) and publish the summary as an artifact."""
    from pathlib import Path

    from contactsync.report.build import build_report
    from contactsync.report.markdown import summary_markdown
    from flows.sync_contacts import data_docs_dir

    settings = load_settings(config_path)
    selected = selected_users(settings, users or [])  # [users_from_crm]'s users too
    built = build_report(settings, selected, out_dir=Path(out_dir) if out_dir else None, days=days,
                         docs_dir=data_docs_dir)
    html = str(built.paths["html"].resolve())
    create_markdown_artifact(
        markdown=summary_markdown(built.data, html_path=html), key="quality-report",
        description="contact-sync: which users need attention, and why")
    return {k: str(v) for k, v in built.paths.items()}
