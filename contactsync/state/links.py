"""Links and snapshots: which CRM contact is which Outlook contact, and the values both
had when last synced (the base of R8's three-way merge).

One-to-one per user (R7): a save that links an Outlook id to another CRM id moves it.
Snapshots advance only after the writes they record have committed (dlt's rule).
Kept as a columnar base and the rows changed since (contactsync.state.blobs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from contactsync.model import conform
from contactsync.plan.schema import LINK_COLUMNS, LINK_STATUS_ACTIVE
from contactsync.state import blobs
from contactsync.state.base import Store
from contactsync.vocab import LINK_STATUSES

_STATUSES = LINK_STATUSES


class LinkStore(Store):
    """The ``links`` table: one row per pair, with its snapshot."""

    def load_links(self, user: str) -> pd.DataFrame:
        """The user's link table with its snapshots (plan.schema.LINK_COLUMNS)."""
        with self.engine.connect() as conn:
            return blobs.read(conn, blobs.LINKS, user)

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
        with self._write() as conn:
            pending = blobs.delta_rows(conn, blobs.LINKS, user) + len(data)
            if (pending > blobs.compact_limit(blobs.base_rows(conn, blobs.LINKS, user))
                    or self._moves_an_outlook_contact(conn, user, data)):
                delta = conform(data.reindex(columns=list(LINK_COLUMNS)), LINK_COLUMNS)
                delta = delta.take(np.argsort(delta["crm_id"].to_numpy(dtype=object), kind="stable"))
                blobs.compact(conn, blobs.LINKS, user, "", [(delta.reset_index(drop=True), ())])
                return len(data)
            blobs.add_rows(conn, blobs.LINKS, user, "", data)
        return len(data)

    @staticmethod
    def _moves_an_outlook_contact(conn: Connection, user: str, data: pd.DataFrame) -> bool:
        """Does a row link an Outlook contact that another CRM id holds (R7's move)? Such
        a save is folded into the base at once: a delta row hiding the old holder would
        let it reappear once the row itself is replaced."""
        new = data.dropna(subset=["outlook_id"])
        if new.empty:
            return False
        held = [blobs.read_base(conn, blobs.LINKS, user, columns=("crm_id", "outlook_id")),
                blobs.read_delta(conn, blobs.LINKS, user, columns=("crm_id", "outlook_id"))[0]]
        new_oids = new["outlook_id"].astype(str)
        for pairs in held:
            if pairs is None or pairs.empty:
                continue
            # only the held rows of the Outlook ids saved now: a scan, no index of 100,000
            hit = pairs[pairs["outlook_id"].isin(new_oids).to_numpy()]
            if hit.empty:
                continue
            holder = hit.drop_duplicates("outlook_id").set_index("outlook_id")["crm_id"]
            found = holder.reindex(new_oids).to_numpy(dtype=object)
            if bool((~pd.isna(found) & (found != new["crm_id"].astype(str).to_numpy(dtype=object))).any()):
                return True
        return False

    def remove_links(self, user: str, crm_ids: Sequence[str]) -> int:
        """Forget pairs (R11, R12, R13 unlink); returns how many existed. The rows leave
        by a compaction: a tombstone could not stand in for a delta row that hides a base
        row whose Outlook contact moved to it (R7)."""
        return self._rewrite(user, crm_ids, lambda links, hit: links[~hit])

    def set_status(self, user: str, crm_ids: Sequence[str], status: str) -> int:
        """Mark pairs active or stopped (R12 keep-copy); returns how many rows changed."""
        if status not in _STATUSES:
            raise ValueError(f"link status must be 'active' or 'stopped', got {status!r}")

        def mark(links: pd.DataFrame, hit: np.ndarray) -> pd.DataFrame:
            links = links.copy()
            links.loc[hit, "status"] = status
            return links

        return self._rewrite(user, crm_ids, mark)

    def _rewrite(
        self, user: str, crm_ids: Sequence[str],
        change: Callable[[pd.DataFrame, np.ndarray], pd.DataFrame],
    ) -> int:
        """Apply ``change`` to the rows of ``crm_ids`` in one compaction; how many matched."""
        ids = {str(c) for c in crm_ids}
        if not ids:
            return 0
        with self._write() as conn:
            current = blobs.read(conn, blobs.LINKS, user)
            hit = current["crm_id"].isin(ids).to_numpy()
            if hit.any():
                blobs.write_base(conn, blobs.LINKS, user, "", change(current, hit))
        return int(hit.sum())
