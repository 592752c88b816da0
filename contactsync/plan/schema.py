"""The contract of the planning engine: what goes in, what comes out.

Planning is pure (DESIGN.md): frames in, frames out, no I/O. The loaders execute the
action frame, the state store keeps the snapshot frame, the reports count the actions and
list the conflicts. Everything here is data so that a dry run can show it (R20), the
journal can store it (R18) and the report can count it.

Inputs (all frames conform to ``contactsync.model`` columns):

- ``crm``: the user's sync-group members (``model.CRM_COLUMNS``, ``in_group`` True),
  visible only (R1).
- ``crm_candidates``: visible CRM contacts *outside* the group whose email matches an
  unlinked Outlook contact (R7: a match outside the group is linked and added to the
  group); same columns, ``in_group`` False. Built by the CRM side from
  :func:`contactsync.plan.lookups.candidate_emails`.
- ``outlook``: the sync folder's contacts (``model.OUTLOOK_COLUMNS``).
- ``links``: the link table with the per-field snapshot of the last synced values
  (``LINK_COLUMNS``): ``status`` is ``active`` or ``stopped`` (R12 keep-copy).
- ``crm_gone``: for linked CRM ids absent from ``crm``: ``crm_id`` and ``exists`` (False
  = the CONTACT row was deleted, R13; True = left the group or no longer visible, R12).
  Existence is all that is read of such a row (R1).
- ``accounts``: visible accounts whose name equals a company name of a new Outlook
  contact (``model.ACCOUNT_COLUMNS``), for R5b.
- ``link_rows`` (optional): the links' rows in ``crm`` and ``outlook``
  (:class:`LinkRows`, found by ``lookups.link_rows``), found once for the look-ups and the plan.

Output: :class:`PlanResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from contactsync.model import FIELDS
from contactsync.vocab import SIDES as SIDES  # re-exported: the action frame's sides
from contactsync.vocab import Direction, Policy, TagLinks

# --- links / snapshots -----------------------------------------------------------------
LINK_STATUS_ACTIVE = "active"
LINK_STATUS_STOPPED = "stopped"
#: The link table as planning sees it: one row per pair, the snapshot in FIELDS columns.
LINK_COLUMNS: tuple[str, ...] = ("crm_id", "outlook_id", "status") + FIELDS

# --- the action frame ------------------------------------------------------------------
#: Operations per side. ``link``/``unlink`` are state operations counted on the CRM side
#: (spec/INTERFACE.md --json counts: crm unlink). ``skip`` writes nothing and says why.
OPERATIONS: dict[str, tuple[str, ...]] = {
    "outlook": ("create", "update", "delete", "skip"),
    "crm": (
        "create_account",
        "create",
        "update",
        "link",
        "unlink",
        "group_add",
        "group_remove",
        "skip",
    ),
}
#: Columns of the action frame, one row per action:
#: - action_id: deterministic from (side, op, ids/keys) so the journal can recognise a
#:   re-planned action after a crash (R18);
#: - side, op, rule ("R5c", "R8", ...), reason (human sentence naming the record and rule);
#: - crm_id / outlook_id: the existing records the action touches (None when not yet made);
#: - new_key: for a CRM create, ``"new:" + outlook_id``; the loader allocates the CONTACTID
#:   and every later row of the same pair refers to it through new_key;
#: - account_id: existing account of a CRM create (R5b); account_key: ``"acct:" + name`` of
#:   a ``create_account`` row that CRM creates refer to (R5a/R5c); account_name: its name;
#: - fields: the canonical names this action writes, comma-separated ("" = none);
#: - one column per canonical field: the value to write (meaningful only for ``fields``).
#:
#: What each operation means for the loaders (decided by the planning engine):
#: - outlook ``create`` (R4): a new contact in the sync folder with all synced field
#:   values; the link to crm_id is stored once it exists (snapshot row, outlook_id None).
#: - outlook ``create``/``update``: the loader also writes the CrmContactId extended
#:   property = crm_id (or the CONTACTID allocated for new_key), so R7a can re-link. An
#:   ``update`` whose ``fields`` is "" writes only that tag (a new link, R5/R7/R7a).
#: - crm ``create`` (R5): insert CONTACT (+ADDRESS) from the field values, attach it to
#:   account_id (R5b) or to the account made by the ``create_account`` row with the same
#:   account_key (R5a/R5c), add it to the sync group, and link it to outlook_id.
#: - crm ``link`` (R7/R7a, R12 re-link): store the pair as active; ``group_add`` (R7)
#:   follows when the CRM contact was outside the group.
#: - crm ``unlink``: forget the pair, except when the snapshots frame has a row with
#:   status 'stopped' for it (R12 keep-copy): then keep the link as stopped.
#: - ``skip``: writes nothing; ``reason`` says why (R1 read-only, R10a).
#: No operation ever deletes a CRM row (R15).
ACTION_META: tuple[str, ...] = (
    "action_id",
    "side",
    "op",
    "rule",
    "reason",
    "crm_id",
    "outlook_id",
    "new_key",
    "account_id",
    "account_key",
    "account_name",
    "fields",
)
ACTION_COLUMNS: tuple[str, ...] = ACTION_META + FIELDS

#: Conflicts (R9): every field changed on both sides to different values.
CONFLICT_COLUMNS: tuple[str, ...] = (
    "crm_id",
    "outlook_id",
    "field",
    "snapshot_value",
    "crm_value",
    "outlook_value",
    "winner",  # "crm" | "outlook"
    "policy",  # latest | crm | outlook (or the field's one-way direction)
    "rule",  # "R9"
)

#: The snapshot to store once a pair's actions are applied: the merged values
#: (what both sides hold after the cycle). new_key identifies pairs whose CRM id is made
#: by this cycle; outlook_id is None for pairs whose Outlook contact this cycle creates.
#: ``status`` (added by the planning engine) is the link status to store: ``active`` for
#: pairs new or changed this cycle, ``stopped`` for a pair unlinked by R12 whose Outlook
#: copy is kept (``keep_outlook_copy``, or direction ``outlook-to-crm`` which never
#: deletes in Outlook): the pipeline keeps that link row with status 'stopped' (its
#: values = the last snapshot) instead of deleting it on the ``unlink`` action. Pairs
#: that end are only announced by their ``unlink`` action row; they have no snapshot row.
SNAPSHOT_COLUMNS: tuple[str, ...] = ("crm_id", "outlook_id", "new_key", "status") + FIELDS

# Policy (R9), Direction (R10) and TagLinks (R7a: ``with-write`` = with the POST that
# creates the contact or with the pair's next Outlook write, and at once only where R7
# could not find the pair again or a wrong tag must be replaced; ``at-link`` = every new
# link writes it at once) are contactsync.vocab's.


@dataclass(frozen=True)
class PlanSettings:
    """The rule switches planning needs (a projection of config.SyncSettings)."""

    conflict_policy: Policy = "latest"  # R9
    direction: Direction = "two-way"  # R10
    field_direction: dict[str, Direction] = field(default_factory=dict)  # R10 per field
    create_in_crm: bool = True  # R10a
    keep_outlook_copy: bool = False  # R12
    mass_change_share: float = 0.2  # R16
    mass_change_min: int = 10  # R16
    tag_links: TagLinks = "with-write"  # R7a
    fields: tuple[str, ...] = FIELDS  # the synced fields (the map is configuration)


@dataclass(frozen=True, eq=False)
class LinkRows:
    """The row of each link's CRM contact in ``crm`` and of its Outlook contact in
    ``outlook`` (-1: not in that frame), for the very frames it was found in.

    The Outlook frame is in the mirror's order and the links in CRM id order, so finding
    the Outlook rows hashes every Outlook id: ~0.1 s at 100,000 (issue 15), which the
    unlinked contacts' look-ups (R7, R5b) and the plan's link fates (R11-R14) both need.
    Found once, before the look-ups, and handed to the plan in ``PlanInputs``; the frames
    are kept (by reference, compared by identity) so that rows found for other frames
    are never used (:meth:`fits`).
    """

    crm_rows: np.ndarray
    outlook_rows: np.ndarray
    crm: pd.DataFrame
    outlook: pd.DataFrame
    links: pd.DataFrame

    def fits(self, crm: pd.DataFrame | None, outlook: pd.DataFrame | None, links: pd.DataFrame | None) -> bool:
        """Whether these rows were found for exactly these frames (the same objects)."""
        return crm is self.crm and outlook is self.outlook and links is self.links

    def linked_outlook(self) -> np.ndarray | None:
        """Per row of ``outlook``: whether a link names it (``frames.member`` of its id in
        the links' ids), or None where that cannot be read off the rows (a row with no id:
        ``member`` matches a missing id to a link's missing one, the rows never do)."""
        ids = self.outlook["outlook_id"].to_numpy(dtype=object)
        if pd.isna(ids).any():
            return None
        out = np.zeros(len(ids), dtype=bool)
        out[self.outlook_rows[self.outlook_rows >= 0]] = True
        return out


@dataclass(frozen=True)
class PlanInputs:
    crm: pd.DataFrame
    outlook: pd.DataFrame
    links: pd.DataFrame
    crm_candidates: pd.DataFrame | None = None
    crm_gone: pd.DataFrame | None = None
    accounts: pd.DataFrame | None = None
    #: where each link's records are in ``crm`` and ``outlook``, when the caller found
    #: them already for its look-ups (``lookups.link_rows`` of these very frames, as the
    #: cycle's gather_inputs does); None, or rows of other frames: the plan finds them
    link_rows: LinkRows | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class GuardVerdict:
    """R16: the share of the synced set each side would lose, and whether that stops us."""

    stopped: bool
    synced: int  # active links before the cycle
    outlook_removals: int  # Outlook deletes
    crm_removals: int  # CRM unlinks (group removals included in the same pairs)
    reason: str


@dataclass(frozen=True)
class PlanResult:
    actions: pd.DataFrame  # ACTION_COLUMNS
    conflicts: pd.DataFrame  # CONFLICT_COLUMNS
    snapshots: pd.DataFrame  # SNAPSHOT_COLUMNS
    guard: GuardVerdict

    def summary(self) -> pd.DataFrame:
        """Counts per side, operation and rule (for the report and --json)."""
        if self.actions.empty:
            return pd.DataFrame({"side": [], "op": [], "rule": [], "count": []})
        return (
            self.actions.groupby(["side", "op", "rule"], dropna=False)
            .size()
            .rename("count")
            .reset_index()
        )
