"""The daily data-quality report: the last cycles' counts, conflicts, quarantine, trends."""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_link_artifact

from contactsync.config import load_settings
from contactsync.cycle.sides import state_store


@flow(name="quality_report")
def quality_report(
    out_dir: str = "report", users: list[str] | None = None, config_path: str | None = None
) -> dict[str, str]:
    """Write report.html / report.json (and the GX Data Docs) into ``out_dir``."""
    from contactsync.report import write_report
    from flows.sync_contacts import data_docs_dir

    settings = load_settings(config_path)
    selected = [settings.user(u) for u in users] if users else list(settings.users)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for user in selected:
        docs = data_docs_dir(settings, user)
        if docs.is_dir():
            shutil.copytree(docs, out / "gx" / user.crm_user.strip(), dirs_exist_ok=True)
    paths = write_report(state_store(settings.state_url()), [u.crm_user for u in selected], out)
    html = paths.get("html")
    if html:
        create_link_artifact(link=Path(html).resolve().as_uri(), link_text="data-quality report", key="quality-report")
    return {k: str(v) for k, v in paths.items()}
