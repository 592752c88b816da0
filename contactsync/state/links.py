"""Links and snapshots: which CRM contact is which Outlook contact, and the values both
had when last synced (the base of R8's three-way merge).

One-to-one per user (R7): a save that links an Outlook id to another CRM id moves it.
Snapshots advance only after the writes they record have committed (dlt's rule).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa

from contactsync.model import conform
from contactsync.plan.schema import LINK_COLUMNS, LINK_STATUS_ACTIVE
from contactsync.state.base import Store
from contactsync.state.rows import CHUNK, bulk_insert, chunks, now_iso, read_frame, tuples
from contactsync.state.schema import links_table
from contactsync.vocab import LINK_STATUSES

_STATUSES = LINK_STATUSES


class LinkStore(Store):
    """The ``links`` table: one row per pair, with its snapshot."""

    def load_links(self, user: str) -> pd.DataFrame:
        """The user's link table with its snapshots (plan.schema.LINK_COLUMNS)."""
        cols = [links_table.c[c] for c in LINK_COLUMNS]
        with self.engine.connect() as conn:
            found = read_frame(conn.execute(sa.select(*cols).where(links_table.c.crm_user == user)), plain=True)
        return conform(found, LINK_COLUMNS)

    def save_pairs(self, user: str, snapshots: pd.DataFrame) -> int:
        """Upsert the snapshots of applied pairs in one transaction (returns rows written).

        Keyed by crm_id; an outlook_id now linked to a different crm_id moves with the new
        row (links are one-to-one, R7). ``status`` defaults to 'active'. Call it only after
        the writes the snapshot records have committed (STYLE.md, dlt).
        """
        if snapshots.empty:
            return 0
        data = snapshots.copy()
        if "status" not in data.columns:
            data["status"] = LINK_STATUS_ACTIVE
        data["status"] = data["status"].where(data["status"].notna(), LINK_STATUS_ACTIVE)
        bad = set(data["status"]) - set(_STATUSES)
        if bad:
            raise ValueError(f"link status must be 'active' or 'stopped', got {sorted(bad)}")
        if data["crm_id"].isna().any():
            raise ValueError(
                "save_pairs needs a crm_id on every row: resolve new_key to the allocated "
                "CONTACTID before saving the snapshot"
            )
        data = data.drop_duplicates("crm_id", keep="last")
        rows = tuples(data, LINK_COLUMNS, user, now_iso())
        crm_ids = data["crm_id"].astype(str).tolist()
        outlook_ids = data["outlook_id"].dropna().astype(str).tolist()
        t = links_table
        with self._write() as conn:
            if len(rows) > 5 * CHUNK:  # big save: delete only keys that exist (one scan)
                have = conn.execute(
                    sa.select(t.c.crm_id, t.c.outlook_id).where(t.c.crm_user == user)
                ).all()
                have_crm = {r[0] for r in have}
                have_out = {r[1] for r in have if r[1] is not None}
                crm_ids = [c for c in crm_ids if c in have_crm]
                outlook_ids = [o for o in outlook_ids if o in have_out]
            for chunk in chunks(crm_ids):
                conn.execute(sa.delete(t).where(t.c.crm_user == user, t.c.crm_id.in_(chunk)))
            for chunk in chunks(outlook_ids):
                conn.execute(sa.delete(t).where(t.c.crm_user == user, t.c.outlook_id.in_(chunk)))
            bulk_insert(conn, t, ("crm_user", "updated_at", *LINK_COLUMNS), rows)
        return len(rows)

    def remove_links(self, user: str, crm_ids: Sequence[str]) -> int:
        """Forget pairs (R11, R12, R13 unlink); returns how many existed."""
        t = links_table
        n = 0
        with self._write() as conn:
            for chunk in chunks(crm_ids):
                n += conn.execute(
                    sa.delete(t).where(t.c.crm_user == user, t.c.crm_id.in_(chunk))
                ).rowcount
        return n

    def set_status(self, user: str, crm_ids: Sequence[str], status: str) -> int:
        """Mark pairs active or stopped (R12 keep-copy); returns how many rows changed."""
        if status not in _STATUSES:
            raise ValueError(f"link status must be 'active' or 'stopped', got {status!r}")
        t = links_table
        n = 0
        stamp = now_iso()
        with self._write() as conn:
            for chunk in chunks(crm_ids):
                n += conn.execute(
                    sa.update(t)
                    .where(t.c.crm_user == user, t.c.crm_id.in_(chunk))
                    .values(status=status, updated_at=stamp)
                ).rowcount
        return n
