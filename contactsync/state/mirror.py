"""The Outlook mirror: the folder's contacts as last read, and Graph's delta token.

A cycle applies the folder's delta to this mirror instead of listing the folder, so a
quiet cycle costs one Graph request. The token and the rows it describes move together
in one transaction: a crash leaves both at the previous cycle. The rows are kept as a
columnar base and the rows changed since (contactsync.state.blobs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from contactsync.model import OUTLOOK_COLUMNS, conform
from contactsync.state import blobs
from contactsync.state.base import Store
from contactsync.state.rows import now_iso
from contactsync.state.schema import delta_table


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
        with self.engine.connect() as conn:
            link = conn.execute(self._delta_link(user, folder_id)).scalar()
            return link, blobs.read(conn, blobs.MIRROR, user, folder_id)

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
        upserts = frame if full else changed
        data = None
        if upserts is not None and not upserts.empty:
            data = upserts.reindex(columns=list(OUTLOOK_COLUMNS)).copy()
            if data["outlook_id"].isna().any():
                raise ValueError("save_outlook: every contact row needs its outlook_id")
            data = data.drop_duplicates("outlook_id", keep="last")
        removed = [str(i) for i in removed_ids]
        kind = blobs.MIRROR
        with self._write() as conn:
            pending = (blobs.delta_rows(conn, kind, user, folder_id) + len(removed)
                       + (0 if data is None else len(data)))
            if full or pending > blobs.compact_limit(blobs.base_rows(conn, kind, user, folder_id)):
                new = conform(data, OUTLOOK_COLUMNS) if data is not None else conform(
                    pd.DataFrame(), OUTLOOK_COLUMNS)
                if len(new) > 1:
                    new = new.take(np.argsort(new["outlook_id"].to_numpy(dtype=object), kind="stable"))
                new = new.reset_index(drop=True)
                if full:
                    blobs.write_base(conn, kind, user, folder_id, new)
                else:  # column by column: the whole mirror is never decoded here (issue 15)
                    blobs.compact(conn, kind, user, folder_id, [(new, removed)])
            else:  # one segment of the delta: the contacts removed, then the rows changed
                blobs.add_rows(conn, kind, user, folder_id, data, removed)
            self._save_mirror_token(conn, user, folder_id, delta_link)

    @staticmethod
    def _save_mirror_token(conn: Connection, user: str, folder_id: str, delta_link: str | None) -> None:
        d = delta_table
        dwhere = (d.c.crm_user == user, d.c.folder_id == folder_id)
        done = conn.execute(
            sa.update(d).where(*dwhere).values(delta_link=delta_link, updated_at=now_iso())
        ).rowcount
        if not done:
            conn.execute(d.insert().values(
                crm_user=user, folder_id=folder_id, delta_link=delta_link, updated_at=now_iso(),
            ))
