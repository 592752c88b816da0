"""The report for a configuration: who, where their Data Docs are, written where configured.

Shared by `contact-sync report` and the daily ``quality_report`` flow, so both write the
same page into the same folder ([report] out_dir, relative to the configuration file).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contactsync.config import Settings, UserSettings


@dataclass(frozen=True)
class BuiltReport:
    paths: dict[str, Path]  # "html", "json"
    data: dict[str, Any]  # what report.json holds


def build_report(
    settings: Settings, users: Sequence[UserSettings], *, out_dir: Path | None = None,
    days: int | None = None, docs_dir: Callable[[Settings, UserSettings], Path] | None = None,
) -> BuiltReport:
    """Write the report of ``users`` over ``days`` (default [report] days) into
    ``out_dir`` (default [report] out_dir). ``docs_dir`` says where a user's GX Data Docs
    are (the sync writes them); the report links to them where they are."""
    from contactsync.cycle.sides import state_store
    from contactsync.report.facts import collect
    from contactsync.report.people import display_names, people
    from contactsync.report.render import write_files

    out = Path(out_dir) if out_dir is not None else settings.report_dir()
    ids = [u.crm_user for u in users]
    names, note = display_names(settings.crm_url(), settings.crm.schema_name, ids)
    docs: Mapping[str, Path] = {u.crm_user: docs_dir(settings, u) for u in users} if docs_dir else {}
    who = people(ids, mailboxes={u.crm_user: u.mailbox for u in users}, names=names, docs=docs, out_dir=out)
    store = state_store(settings.state_url())
    try:
        data = collect(store, ids, days=days or settings.report.days, people=who)
    finally:
        store.close()
    paths = write_files(data, out, notes=[note] if note else [])
    return BuiltReport(paths=paths, data=data)
