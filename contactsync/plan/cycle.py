"""One sync cycle's plan: frames in, PlanResult out (pure, vectorised, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from contactsync.model import ACCOUNT_COLUMNS, CRM_COLUMNS, FIELDS, OUTLOOK_COLUMNS
from contactsync.plan.create import r4_create_in_outlook, r5_create_in_crm
from contactsync.plan.frames import (
    as_objects,
    concat_actions,
    concat_conflicts,
    concat_snapshots,
    make_actions,
)
from contactsync.plan.guard import r16_guard
from contactsync.plan.lifecycle import link_fates
from contactsync.plan.match import match_free
from contactsync.plan.merge import merge_pairs
from contactsync.plan.schema import (
    LINK_COLUMNS,
    LINK_STATUS_ACTIVE,
    PlanInputs,
    PlanResult,
    PlanSettings,
)


def _with_columns(frame: pd.DataFrame | None, columns: Sequence[str]) -> pd.DataFrame:
    """The frame with every contract column present (missing ones as None)."""
    if frame is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        frame = frame.assign(**{c: None for c in missing})
    return frame.reset_index(drop=True)


def _pair_table(
    pairs: pd.DataFrame, crm: pd.DataFrame, outlook: pd.DataFrame, snapshot: pd.DataFrame | None
) -> pd.DataFrame:
    """Side by side: the pair's CRM values, Outlook values and snapshot (merge.py)."""
    c_pos = pd.Index(crm["crm_id"]).get_indexer(as_objects(pairs["crm_id"]))
    o_pos = pd.Index(outlook["outlook_id"]).get_indexer(as_objects(pairs["outlook_id"]))
    n = len(pairs)
    data: dict[str, object] = {
        "crm_id": as_objects(pairs["crm_id"]),
        "outlook_id": as_objects(pairs["outlook_id"]),
        "link_rule": as_objects(pairs["link_rule"]),
        "read_only": crm["read_only"].to_numpy()[c_pos] if n else np.array([], bool),
        "in_group": crm["in_group"].to_numpy()[c_pos] if n else np.array([], bool),
        "crm_modified": crm["crm_modified"].to_numpy()[c_pos] if n else [],
        "outlook_modified": outlook["outlook_modified"].to_numpy()[o_pos] if n else [],
        "crm_tag": outlook["crm_tag"].to_numpy(dtype=object)[o_pos] if n else [],
    }
    none = np.full(n, None, dtype=object)
    for f in FIELDS:
        data[f"c:{f}"] = crm[f].to_numpy(dtype=object)[c_pos] if n else none
        data[f"o:{f}"] = outlook[f].to_numpy(dtype=object)[o_pos] if n else none
        data[f"s:{f}"] = snapshot[f].to_numpy(dtype=object) if snapshot is not None else none
    return pd.DataFrame(data)


def _link_actions(new_pairs: pd.DataFrame) -> list[pd.DataFrame]:
    """link rows for new matches, group_add for those outside the group (R7)."""
    n = len(new_pairs)
    if n == 0:
        return []
    c = as_objects(new_pairs["crm_id"])
    o = as_objects(new_pairs["outlook_id"])
    rule = as_objects(new_pairs["link_rule"])
    how = pd.Series(rule, dtype="str").map(
        {"R7a": "re-linked by its CRM id tag", "R7": "matched by email",
         "R12": "back in the sync group: re-linked as a new match"}
    )
    reason = (pd.Series(rule, dtype="str") + ": Outlook contact "
              + pd.Series(o, dtype="str") + " and CRM contact " + pd.Series(c, dtype="str")
              + " " + how)
    out = [make_actions("crm", "link", rule, reason.to_numpy(dtype=object), n,
                        crm_id=c, outlook_id=o)]
    outside = ~new_pairs["in_group"].fillna(False).to_numpy(dtype=bool)
    if outside.any():
        m = int(outside.sum())
        reason = ("R7: CRM contact " + pd.Series(c[outside], dtype="str")
                  + " matched Outlook contact " + pd.Series(o[outside], dtype="str")
                  + " from outside the sync group: added to the group")
        out.append(make_actions("crm", "group_add", "R7", reason.to_numpy(dtype=object), m,
                                crm_id=c[outside], outlook_id=o[outside]))
    return out


def plan_cycle(inputs: PlanInputs, settings: PlanSettings) -> PlanResult:
    """Decide what to write where this cycle (rules R4-R17), as data.

    The plan is what a dry run shows (R20) and what the loaders execute in row order.
    """
    crm = _with_columns(inputs.crm, CRM_COLUMNS)
    outlook = _with_columns(inputs.outlook, OUTLOOK_COLUMNS)
    links = _with_columns(inputs.links, LINK_COLUMNS)
    accounts = _with_columns(inputs.accounts, ACCOUNT_COLUMNS)
    candidates = _with_columns(inputs.crm_candidates, CRM_COLUMNS)
    if settings.direction == "crm-to-outlook":
        candidates = candidates.iloc[:0]  # no R5 to protect, no CRM group writes to make
    candidates = candidates[~candidates["crm_id"].isin(crm["crm_id"])]
    crm_all = pd.concat([crm, candidates], ignore_index=True) if len(candidates) else crm

    fate = link_fates(
        links, pd.Index(crm["crm_id"]), pd.Index(outlook["outlook_id"]), inputs.crm_gone,
        settings,
    )
    free_outlook = outlook[~outlook["outlook_id"].isin(fate.reserved_outlook)]
    free_crm = crm_all[~crm_all["crm_id"].isin(fate.reserved_crm)]
    matches = match_free(free_outlook, free_crm)

    relink = fate.relink[["crm_id", "outlook_id"]].assign(link_rule="R12")
    new_pairs = pd.concat([p for p in (relink, matches) if len(p)] or [matches],
                          ignore_index=True)
    linked = fate.merge.assign(link_rule=None)
    table = pd.concat(
        [
            _pair_table(linked, crm_all, outlook, linked),
            _pair_table(new_pairs, crm_all, outlook, None),
        ],
        ignore_index=True,
    )
    merged = merge_pairs(table, settings)

    new_table = table[~table["link_rule"].isna()]
    r4 = r4_create_in_outlook(
        free_crm[free_crm["in_group"].to_numpy(dtype=bool)
                 & ~free_crm["crm_id"].isin(matches["crm_id"]).to_numpy()],
        settings,
    )
    r5 = r5_create_in_crm(
        free_outlook[~free_outlook["outlook_id"].isin(matches["outlook_id"])], accounts,
        settings,
    )
    actions = concat_actions(
        [*fate.actions, *_link_actions(new_table), *merged.actions, *r4.actions, *r5.actions]
    )
    status = as_objects(links["status"])
    synced = int(((status == LINK_STATUS_ACTIVE) | pd.isna(status)).sum())
    guard = r16_guard(synced, fate.outlook_removals, fate.crm_removals, settings)
    return PlanResult(
        actions=actions,
        conflicts=concat_conflicts([merged.conflicts]),
        snapshots=concat_snapshots([merged.snapshots, fate.snapshots, r4.snapshots, r5.snapshots]),
        guard=guard,
    )
