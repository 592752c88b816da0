"""The Outlook mirror: the folder's contacts as last read, and Graph's delta token.

A cycle applies the folder's delta to this mirror instead of listing the folder, so a
quiet cycle costs one Graph request. The token and the rows it describes move together
in one transaction: a crash leaves both at the previous cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from contactsync.model import OUTLOOK_COLUMNS, conform
from contactsync.state.base import Store
from contactsync.state.rows import bulk_insert, chunks, iso_series, now_iso, read_frame, tuples
from contactsync.state.schema import delta_table, outlook_table

_OUTLOOK_TIMES = ("outlook_created", "outlook_modified")


class MirrorStore(Store):
    """The ``outlook_contacts`` and ``outlook_delta`` tables, per user and folder."""

    def load_delta_link(self, user: str, folder_id: str) -> str | None:
        """The folder's last delta link alone (None = never synced): a quiet cycle that
        finds nothing new behind it never needs the mirror (contactsync.cycle.settled)."""
        with self.engine.connect() as conn:
            return conn.execute(self._delta_link(user, folder_id)).scalar()

    @staticmethod
    def _delta_link(user: str, folder_id: str) -> sa.Select[Any]:
        d = delta_table
        return sa.select(d.c.delta_link).where(d.c.crm_user == user, d.c.folder_id == folder_id)

    def load_outlook(self, user: str, folder_id: str) -> tuple[str | None, pd.DataFrame]:
        """The folder's last delta link (None = never synced) and its contacts snapshot."""
        t = outlook_table
        with self.engine.connect() as conn:
            link = conn.execute(self._delta_link(user, folder_id)).scalar()
            found = read_frame(conn.execute(
                sa.select(*[t.c[c] for c in OUTLOOK_COLUMNS])
                .where(t.c.crm_user == user, t.c.folder_id == folder_id)
            ), plain=True)
        for col in _OUTLOOK_TIMES:
            if not found.empty:
                found[col] = pd.to_datetime(found[col], utc=True, format="ISO8601")
        return link, conform(found, OUTLOOK_COLUMNS)

    def save_outlook(
        self,
        user: str,
        folder_id: str,
        delta_link: str | None,
        *,
        frame: pd.DataFrame | None = None,
        changed: pd.DataFrame | None = None,
        removed_ids: Sequence[str] = (),
        full: bool = False,
    ) -> None:
        """Advance the folder's snapshot and delta token together, in one transaction.

        ``full=True``: ``frame`` replaces every row (a full read). Otherwise ``changed`` is
        upserted and ``removed_ids`` deleted. The token never moves without the rows it
        describes (a crash leaves both at the previous cycle).
        """
        t, d = outlook_table, delta_table
        upserts = frame if full else changed
        rows: list[tuple[Any, ...]] = []
        ids: list[str] = []
        if upserts is not None and not upserts.empty:
            data = upserts.reindex(columns=list(OUTLOOK_COLUMNS)).copy()
            if data["outlook_id"].isna().any():
                raise ValueError("save_outlook: every contact row needs its outlook_id")
            for col in _OUTLOOK_TIMES:
                data[col] = iso_series(data[col])
            data = data.drop_duplicates("outlook_id", keep="last")
            rows = tuples(data, OUTLOOK_COLUMNS, user, folder_id)
            ids = data["outlook_id"].astype(str).tolist()
        where = (t.c.crm_user == user, t.c.folder_id == folder_id)
        with self._write() as conn:
            if full:
                conn.execute(sa.delete(t).where(*where))
            else:
                for chunk in chunks(ids + [str(i) for i in removed_ids]):
                    conn.execute(sa.delete(t).where(*where, t.c.outlook_id.in_(chunk)))
            bulk_insert(conn, t, ("crm_user", "folder_id", *OUTLOOK_COLUMNS), rows)
            dwhere = (d.c.crm_user == user, d.c.folder_id == folder_id)
            done = conn.execute(
                sa.update(d).where(*dwhere).values(delta_link=delta_link, updated_at=now_iso())
            ).rowcount
            if not done:
                conn.execute(d.insert().values(
                    crm_user=user, folder_id=folder_id, delta_link=delta_link,
                    updated_at=now_iso(),
                ))
