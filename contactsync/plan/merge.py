"""Per-field merge of pairs present on both sides (R8, R9, R10, R6, R1, R7 merge).

A *pair table* (a dict of equally long arrays) has one entry per pair: ``crm_id``, ``outlook_id``, ``link_rule`` (None for
a pair linked before this cycle; "R7"/"R7a"/"R12" for a new match), ``read_only``,
``in_group``, ``crm_modified``, ``outlook_modified``, ``crm_tag`` and, per field,
``c:<field>`` (CRM value), ``o:<field>`` (Outlook value), ``s:<field>`` (snapshot).

A new match is merged as a three-way merge against an *empty* snapshot: a field empty on
one side counts as unchanged there, so the other side's value is copied (R7: "a field
empty on one side takes the other side's value"); two different values are a conflict
settled by R9; equal values need nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from contactsync.model import CRM_TO_OUTLOOK_ONLY, FIELDS
from contactsync.plan.frames import (
    as_objects,
    either,
    equal_values,
    filled,
    is_email,
    is_empty,
    join_flags,
    make_actions,
    norm,
    text,
)
from contactsync.plan.schema import LINK_STATUS_ACTIVE, PlanSettings

NO_SYNC = "none"


def field_direction(field: str, settings: PlanSettings) -> str:
    """R10 per field (the field's own setting wins over the sync's), R6 for company.

    ``company`` flows CRM -> Outlook once linked (R6), whatever the settings, except when
    the sync writes nothing in Outlook (outlook-to-crm): then it flows nowhere.
    """
    if field in CRM_TO_OUTLOOK_ONLY:
        return NO_SYNC if settings.direction == "outlook-to-crm" else "crm-to-outlook"
    return settings.field_direction.get(field, settings.direction)


def crm_wins_conflicts(pairs: Mapping[str, np.ndarray], settings: PlanSettings) -> np.ndarray:
    """R9: per pair, does CRM win a conflict? ``latest``: newer modification time wins.

    CRM time is already the newest of contact, address and account (crm.extract). A tie,
    or no Outlook time, goes to CRM; no CRM time (but an Outlook one) goes to Outlook.
    """
    n = len(pairs["crm_id"])
    if settings.conflict_policy == "crm":
        return np.ones(n, dtype=bool)
    if settings.conflict_policy == "outlook":
        return np.zeros(n, dtype=bool)
    c, o = pairs["crm_modified"], pairs["outlook_modified"]
    return (c >= o) | np.isnat(o)


@dataclass
class MergeResult:
    actions: list[pd.DataFrame]
    conflicts: pd.DataFrame
    snapshots: pd.DataFrame


def _rule_of_updates(
    new_rule: np.ndarray,
    conflict_written: np.ndarray,
    two_way_written: np.ndarray,
    one_way_written: np.ndarray,
) -> np.ndarray:
    """One rule per update row: the link rule of a new match, else R9 > R8 > R10 > R6."""
    rule = either(one_way_written, "R10", "R6")
    rule[two_way_written] = "R8"
    rule[conflict_written] = "R9"
    has_new = ~pd.isna(new_rule)
    rule[has_new] = either(new_rule[has_new] == "R7a", "R7a", "R7")
    return rule


def quiet_links(
    snapshots: pd.DataFrame, crm: pd.DataFrame, outlook: pd.DataFrame,
    crm_pos: np.ndarray, outlook_pos: np.ndarray, settings: PlanSettings,
) -> np.ndarray:
    """Linked pairs that cannot produce an action: every compared value byte-identical on
    both sides and in the snapshot (R8: nothing changed on either side), and the Outlook
    copy carries its tag (R7a). The usual case of a cycle, decided here so that the merge
    proper (and the per-pair table it reads) sees only the pairs that changed.

    ``snapshots``: the pairs' links (FIELDS columns); ``crm_pos`` / ``outlook_pos``: their
    rows in ``crm`` / ``outlook``. One raw comparison per field and side, on the frames'
    own columns: when the links are in the CRM frame's order (the usual case, see
    ``frames.positions``), the CRM column is compared as it is, without a gather. A
    per-row hash of the compared fields is no cheaper test: hashing the 24 text columns of
    100,000 rows once (``pd.util.hash_array``) costs 2.0 s of CPU, the 48 comparisons
    0.13 s (issue 15; ``bench/README.md``).

    What those comparisons cost is memory, not Python (issue 15): each one reads every
    value's object, and the Outlook frame is in the mirror's order, not the links', so its
    values are read in a random order (a cache miss each). Hence: a field that no row holds
    on either side nor in the snapshot (``None`` throughout: ``list.count`` tests identity)
    is not compared at all; an Outlook column is gathered and compared a block of rows at a
    time (:func:`_same_at`), so the values a gather reads are still cached when compared;
    and the R7a test reads the snapshot's email (equal to Outlook's on every pair still
    quiet) for the pairs still quiet only.
    """
    n = len(snapshots)
    quiet = np.ones(n, dtype=bool)
    if n == 0:
        return quiet
    c_rows = None if _in_order(crm_pos, len(crm)) else crm_pos
    o_rows = None if _in_order(outlook_pos, len(outlook)) else outlook_pos
    for f in settings.fields:
        s = as_objects(snapshots[f])
        c, o = as_objects(crm[f]), as_objects(outlook[f])
        if _all_none(s) and _all_none(c) and _all_none(o):
            continue  # None == None for every pair
        quiet &= _same_at(c, c_rows, s)
        quiet &= _same_at(o, o_rows, s)
    todo = np.flatnonzero(quiet)
    if todo.size == 0:
        return quiet
    # (on a quiet pair Outlook's email1 is the snapshot's: read in the links' order)
    email1 = as_objects((snapshots if "email1" in settings.fields else outlook)["email1"])
    e_rows = None if "email1" in settings.fields else o_rows
    tags = as_objects(outlook["crm_tag"])
    crm_id = as_objects(snapshots["crm_id"])[todo]
    at = todo if o_rows is None else o_rows[todo]
    quiet[todo] = ~tag_needed(crm_id, tags[at], email1[todo if e_rows is None else e_rows[todo]], settings)
    return quiet


#: Rows per gather-and-compare block of :func:`_same_at`: small enough that the objects a
#: block's gather reads are still in the cache when the comparison reads them again.
SAME_BLOCK = 4096


def _same_at(values: np.ndarray, rows: np.ndarray | None, expected: np.ndarray) -> np.ndarray:
    """``values[rows] == expected`` as a bool array (``rows`` None: ``values`` as they are)."""
    if rows is None:
        return np.asarray(values == expected, dtype=bool)
    out = np.empty(len(rows), dtype=bool)
    for start in range(0, len(rows), SAME_BLOCK):
        stop = start + SAME_BLOCK
        out[start:stop] = values[rows[start:stop]] == expected[start:stop]
    return out


def _all_none(values: np.ndarray) -> bool:
    """Every value is None (by identity: a NaN is not None, as in the raw comparisons).
    A few values are looked at first: a column holding anything is usually told at once."""
    if len(values) == 0:
        return True
    if any(v is not None for v in values[:: max(1, len(values) // 16)].tolist()):
        return False
    return values.tolist().count(None) == len(values)


def _in_order(pos: np.ndarray, rows: int) -> bool:
    """Whether ``pos`` is 0, 1, ..., rows - 1: the column itself, no gather needed."""
    return len(pos) == rows and (rows == 0 or (pos[0] == 0 and bool((np.diff(pos) == 1).all())))


def tag_needed(
    crm_id: np.ndarray, crm_tag: np.ndarray, email1: np.ndarray, settings: PlanSettings
) -> np.ndarray:
    """R7a: the pairs whose Outlook contact gets its CrmContactId tag now, even with no field to write.

    ``at-link`` tags every pair whose tag is missing. ``with-write`` leaves the tag to the
    pair's next Outlook write (every Outlook write carries it) and writes it at once only
    where a lost state store could not be recovered by email matching (R7): the contact
    has no email address (``email1`` is empty once emails are compacted), or it carries
    another contact's tag (a copied contact), which R7a would follow to the wrong record.
    """
    n = len(crm_id)
    if settings.direction == "outlook-to-crm" or n == 0:
        return np.zeros(n, dtype=bool)
    # the tag is written exactly as the CRM id: a raw comparison says whether it is there
    # (a CRM contact still to be created, crm_id None, has no tag yet)
    missing = ~np.asarray(crm_tag == crm_id, dtype=bool) | pd.isna(crm_id)
    if settings.tag_links == "at-link":
        return missing
    todo = np.flatnonzero(missing)
    if todo.size:
        wrong = ~is_empty(crm_tag[todo])
        no_email = is_empty(email1[todo])
        missing[todo] = wrong | no_email
    return missing


def _decide(
    c: np.ndarray,
    o: np.ndarray,
    s: np.ndarray,
    crm_wins: np.ndarray,
    direction: str,
    email: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One field of pairs whose two raw values differ: write to Outlook, write to CRM,
    conflict. Two-way is R8's three-way merge (R9 settles conflicts); a one-way field
    copies its source whenever the normalised values differ (R10, R6)."""
    nc, no = norm(c, email=email), norm(o, email=email)
    differ = ~np.asarray(nc == no, dtype=bool)
    none = np.zeros(len(c), dtype=bool)
    if direction == "crm-to-outlook":
        return differ, none, none
    if direction == "outlook-to-crm":
        return none, differ, none
    ns = norm(s, email=email)  # also turns a stray NaN into None (= empty)
    c_changed = ~np.asarray(nc == ns, dtype=bool)
    o_changed = ~np.asarray(no == ns, dtype=bool)
    conflict = c_changed & o_changed & differ
    w_out = (c_changed & ~o_changed) | (conflict & crm_wins)
    w_crm = (o_changed & ~c_changed) | (conflict & ~crm_wins)
    return w_out, w_crm, conflict


def _updates(
    side: str,
    rows: np.ndarray,
    rule: np.ndarray,
    written: np.ndarray,
    fields: np.ndarray,
    crm_id: np.ndarray,
    outlook_id: np.ndarray,
    masks: Mapping[str, np.ndarray],
    values: Mapping[str, np.ndarray],
) -> pd.DataFrame:
    """The update actions of ``side`` for pair positions ``rows``: each field flagged in
    ``masks`` carries its value from ``values``, the reason names both records."""
    if side == "outlook":
        source, target = "CRM contact " + text(crm_id[rows]), "Outlook contact " + text(outlook_id[rows])
    else:
        source, target = "Outlook contact " + text(outlook_id[rows]), "CRM contact " + text(crm_id[rows])
    reason = rule + ": write " + written + " of " + source + " to " + target
    return make_actions(
        side, "update", rule, reason, rows.size,
        crm_id=crm_id[rows], outlook_id=outlook_id[rows], fields=fields[rows],
        values={f: np.where(m[rows], values[f][rows], None) for f, m in masks.items() if m.any()},
    )


def merge_pairs(pairs: Mapping[str, np.ndarray], settings: PlanSettings) -> MergeResult:
    """Plan the field writes of the pairs given, field by field (the cycle gives the new
    matches and the linked pairs :func:`quiet_links` did not find quiet)."""
    crm_id = pairs["crm_id"]
    n = len(crm_id)
    outlook_id = pairs["outlook_id"]
    new_rule = pairs["link_rule"]
    is_new = ~pd.isna(new_rule)
    read_only = pairs["read_only"]
    crm_wins = crm_wins_conflicts(pairs, settings)
    outlook_writable = settings.direction != "outlook-to-crm"

    to_outlook: dict[str, np.ndarray] = {}
    to_crm: dict[str, np.ndarray] = {}
    skipped: dict[str, np.ndarray] = {}
    out_values: dict[str, np.ndarray] = {}
    crm_values: dict[str, np.ndarray] = {}
    merged: dict[str, np.ndarray] = {}
    changed_snapshot = np.zeros(n, dtype=bool)
    any_conflict_o = np.zeros(n, dtype=bool)
    any_conflict_c = np.zeros(n, dtype=bool)
    any_two_way_o = np.zeros(n, dtype=bool)
    any_two_way_c = np.zeros(n, dtype=bool)
    any_one_way_o = np.zeros(n, dtype=bool)
    any_one_way_c = np.zeros(n, dtype=bool)
    conflict_parts: list[pd.DataFrame] = []

    for f in FIELDS:
        s = pairs[f"s:{f}"]
        if f not in settings.fields:
            merged[f] = s
            continue
        c = pairs[f"c:{f}"]
        o = pairs[f"o:{f}"]
        email = is_email(f)
        direction = field_direction(f, settings)
        w_out = np.zeros(n, dtype=bool)
        w_crm = np.zeros(n, dtype=bool)
        conflict = np.zeros(n, dtype=bool)
        # Identical raw values need no write in any mode: only the others are normalised.
        idx = np.flatnonzero(~np.asarray(c == o, dtype=bool))
        if idx.size and direction != NO_SYNC:
            sub_out, sub_crm, sub_conflict = _decide(
                c[idx], o[idx], s[idx], crm_wins[idx], direction, email
            )
            w_out[idx], w_crm[idx], conflict[idx] = sub_out, sub_crm, sub_conflict
        if conflict.any():
            ci = np.flatnonzero(conflict)
            conflict_parts.append(
                pd.DataFrame(
                    {
                        "crm_id": crm_id[ci],
                        "outlook_id": outlook_id[ci],
                        "field": f,
                        "snapshot_value": s[ci],
                        "crm_value": c[ci],
                        "outlook_value": o[ci],
                        "winner": np.where(crm_wins[ci], "crm", "outlook"),
                        "policy": settings.conflict_policy,
                        "rule": "R9",
                    }
                )
            )
        if direction == "two-way":
            any_conflict_o |= conflict & w_out
            any_conflict_c |= conflict & w_crm
            any_two_way_o |= w_out & ~conflict
            any_two_way_c |= w_crm & ~conflict
        elif direction == "crm-to-outlook" and f not in CRM_TO_OUTLOOK_ONLY:
            any_one_way_o |= w_out
        elif direction == "outlook-to-crm":
            any_one_way_c |= w_crm
        if not outlook_writable:
            w_out[:] = False
        blocked = w_crm & read_only  # R1: read-only rows never get a CRM write
        w_crm &= ~read_only
        value = c.copy()
        value[w_crm] = o[w_crm]
        merged[f] = value
        to_outlook[f], to_crm[f], skipped[f] = w_out, w_crm, blocked
        out_values[f], crm_values[f] = c, o
        check = np.flatnonzero(~np.asarray(value == s, dtype=bool) & ~is_new)
        if check.size:
            changed_snapshot[check] |= ~equal_values(value[check], s[check], email=email)

    actions: list[pd.DataFrame] = []
    # Outlook updates (each carries the tag), and tag-only ones where R7a needs it now.
    o_fields = join_flags(to_outlook, n)
    needs_tag = tag_needed(crm_id, pairs["crm_tag"], merged["email1"], settings)
    o_rows = np.flatnonzero((o_fields != "") | needs_tag)
    if o_rows.size:
        rule = _rule_of_updates(
            new_rule[o_rows],
            any_conflict_o[o_rows],
            any_two_way_o[o_rows],
            any_one_way_o[o_rows],
        )
        only_tag = o_fields[o_rows] == ""
        rule[only_tag & pd.isna(new_rule[o_rows])] = "R7a"
        written = o_fields[o_rows].copy()
        written[written == ""] = "the CRM id tag"
        actions.append(_updates("outlook", o_rows, rule, written, o_fields, crm_id, outlook_id, to_outlook, out_values))
    c_fields = join_flags(to_crm, n)
    c_rows = np.flatnonzero(c_fields != "")
    if c_rows.size:
        rule = _rule_of_updates(
            new_rule[c_rows],
            any_conflict_c[c_rows],
            any_two_way_c[c_rows],
            any_one_way_c[c_rows],
        )
        actions.append(_updates("crm", c_rows, rule, c_fields[c_rows], c_fields, crm_id, outlook_id, to_crm, crm_values))
    s_fields = join_flags(skipped, n)
    s_rows = np.flatnonzero(s_fields != "")
    if s_rows.size:
        reason = (
            "R1: CRM contact " + text(crm_id[s_rows])
            + " is read-only for the user; Outlook changes of "
            + s_fields[s_rows]
            + " (Outlook contact " + text(outlook_id[s_rows])
            + ") are not written"
        )
        actions.append(
            make_actions(
                "crm", "skip", "R1", reason, s_rows.size,
                crm_id=crm_id[s_rows], outlook_id=outlook_id[s_rows],
            )
        )

    snap_rows = np.flatnonzero(changed_snapshot | is_new)
    snap = {
        "crm_id": crm_id[snap_rows],
        "outlook_id": outlook_id[snap_rows],
        "new_key": np.full(snap_rows.size, None, dtype=object),
        "status": filled(snap_rows.size, LINK_STATUS_ACTIVE),
    }
    for f in FIELDS:
        snap[f] = merged[f][snap_rows]
    conflicts = (
        pd.concat(conflict_parts, ignore_index=True) if conflict_parts else pd.DataFrame()
    )
    return MergeResult(actions, conflicts, pd.DataFrame(snap))
