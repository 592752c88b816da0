"""Who the report is about: display names from the CRM, Data Docs links per user.

An admin knows "Lee Park", not ``UDEMOA000001``: the name is USERINFO.USERNAME, read in
one query. The report must still be written when the CRM cannot be reached (that may be
why a user fails), so a read error leaves the names out and says so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import sqlalchemy as sa

from contactsync.model import pad_user


def display_names(crm_url: str, schema: str | None, users: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """USERINFO.USERNAME per padded user id, and the reason when they could not be read."""
    from contactsync.crm.schema import crm_tables, make_engine

    padded = [pad_user(u) for u in users]
    if not padded:
        return {}, None
    ui = crm_tables(schema or None).userinfo
    try:
        engine = make_engine(crm_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(ui.c.USERID, ui.c.USERNAME).where(ui.c.USERID.in_(padded)))
                names = {pad_user(uid): (name or "").strip() for uid, name in rows if (name or "").strip()}
        finally:
            engine.dispose()
    except sa.exc.SQLAlchemyError as exc:
        return {}, f"display names not shown: the CRM could not be read ({type(exc).__name__})"
    return names, None


def docs_link(out_dir: Path, folder: Path) -> str | None:
    """A link from the report to a Data Docs site in ``folder`` (its shallowest index.html):
    relative when both are on one drive, so the report folder can be moved with its docs."""
    if not folder.is_dir():
        return None
    pages = sorted(folder.rglob("index.html"), key=lambda p: (len(p.parts), str(p)))
    target = pages[0] if pages else folder
    try:
        link = Path(os.path.relpath(target.resolve(), Path(out_dir).resolve())).as_posix()
    except ValueError:  # another drive (Windows): an absolute file link
        return target.resolve().as_uri()
    return link if pages else link + "/"


def people(
    users: Sequence[str], *, mailboxes: Mapping[str, str], names: Mapping[str, str],
    docs: Mapping[str, Path], out_dir: Path,
) -> dict[str, dict[str, str | None]]:
    """Per padded user id: ``name``, ``mailbox`` and ``gx_docs`` (link or None)."""
    out: dict[str, dict[str, str | None]] = {}
    for user in users:
        p = pad_user(user)
        folder = docs.get(p)
        out[p] = {"name": names.get(p), "mailbox": mailboxes.get(p),
                  "gx_docs": docs_link(out_dir, folder) if folder is not None else None}
    return out
