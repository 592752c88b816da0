"""One sync cycle's plan: frames in, PlanResult out (pure, vectorised, no I/O)."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

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
    text,
)
from contactsync.plan.guard import r16_guard
from contactsync.plan.lifecycle import link_fates
from contactsync.plan.match import match_free
from contactsync.plan.merge import merge_pairs, quiet_links
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


def _utc_naive(values: pd.Series) -> np.ndarray:
    """datetime64 values in UTC (cheap to index and compare, unlike Timestamp objects)."""
    return pd.to_datetime(values, utc=True).dt.tz_convert(None).to_numpy()


def _pair_table(
    pairs: pd.DataFrame, crm: pd.DataFrame, outlook: pd.DataFrame
) -> dict[str, np.ndarray]:
    """Side by side per pair: CRM values, Outlook values, snapshot (merge.py's input).

    ``pairs`` holds crm_id, outlook_id, link_rule, the snapshot in FIELDS columns and the
    pair's rows in ``crm`` / ``outlook`` (crm_pos, outlook_pos: found once, where the
    pair was classified or matched).
    """
    c_pos = pairs["crm_pos"].to_numpy(dtype=np.int64)
    o_pos = pairs["outlook_pos"].to_numpy(dtype=np.int64)
    table: dict[str, np.ndarray] = {
        "crm_id": as_objects(pairs["crm_id"]),
        "outlook_id": as_objects(pairs["outlook_id"]),
        "link_rule": as_objects(pairs["link_rule"]),
        "read_only": crm["read_only"].to_numpy(dtype=bool)[c_pos],
        "in_group": crm["in_group"].to_numpy(dtype=bool)[c_pos],
        "crm_modified": _utc_naive(crm["crm_modified"])[c_pos],
        "outlook_modified": _utc_naive(outlook["outlook_modified"])[o_pos],
        "crm_tag": as_objects(outlook["crm_tag"])[o_pos],
    }
    for f in FIELDS:
        table[f"c:{f}"] = as_objects(crm[f])[c_pos]
        table[f"o:{f}"] = as_objects(outlook[f])[o_pos]
        table[f"s:{f}"] = as_objects(pairs[f])
    return table


def _link_actions(table: dict[str, np.ndarray]) -> list[pd.DataFrame]:
    """link rows for new matches, group_add for those outside the group (R7)."""
    new = ~pd.isna(table["link_rule"])
    n = int(new.sum())
    if n == 0:
        return []
    c = table["crm_id"][new]
    o = table["outlook_id"][new]
    rule = table["link_rule"][new]
    how = text(pd.Series(rule).map(
        {"R7a": "re-linked by its CRM id tag", "R7": "matched by email",
         "R12": "back in the sync group: re-linked as a new match"}
    ))
    reason = (text(rule) + ": Outlook contact "
              + text(o) + " and CRM contact " + text(c)
              + " " + how)
    out = [make_actions("crm", "link", rule, reason, n,
                        crm_id=c, outlook_id=o)]
    outside = ~table["in_group"][new]
    if outside.any():
        m = int(outside.sum())
        reason = ("R7: CRM contact " + text(c[outside])
                  + " matched Outlook contact " + text(o[outside])
                  + " from outside the sync group: added to the group")
        out.append(make_actions("crm", "group_add", "R7", reason, m,
                                crm_id=c[outside], outlook_id=o[outside]))
    return out


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while planning, back as it was after.

    A first sync's plan allocates about a million objects (reasons, ids, keys), which
    sets off a full collection that walks every tracked object of the process (Prefect,
    GX, the cycle's frames): 0.1-0.15 s of a 1 s plan at 100,000 contacts (issue 15),
    while the plan itself makes no reference cycle to collect. Only an enabled collector
    is paused and re-enabled, so a caller that turned it off keeps it off; two threads
    planning at once leave it enabled once the first one is done, as before.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def plan_cycle(inputs: PlanInputs, settings: PlanSettings) -> PlanResult:
    """Decide what to write where this cycle (rules R4-R17), as data.

    The plan is what a dry run shows (R20) and what the loaders execute in row order.
    """
    with _collector_paused():
        return _plan(inputs, settings)


def plan_every_pair(inputs: PlanInputs, settings: PlanSettings) -> PlanResult:
    """The plan with every linked pair merged field by field, quiet or not: what
    :func:`plan_cycle` must equal (tests/plan's property test), at the cost of a merge
    of every pair."""
    with _collector_paused():
        return _plan(inputs, settings, limit=False)


def _plan(inputs: PlanInputs, settings: PlanSettings, *, limit: bool = True) -> PlanResult:
    crm = _with_columns(inputs.crm, CRM_COLUMNS)
    outlook = _with_columns(inputs.outlook, OUTLOOK_COLUMNS)
    links = _with_columns(inputs.links, LINK_COLUMNS)
    accounts = _with_columns(inputs.accounts, ACCOUNT_COLUMNS)
    candidates = _with_columns(inputs.crm_candidates, CRM_COLUMNS)
    if settings.direction == "crm-to-outlook":
        candidates = candidates.iloc[:0]  # no R5 to protect, no CRM group writes to make
    if len(candidates):  # (an index of every CRM id costs 25 ms: not for no candidate)
        candidates = candidates[~candidates["crm_id"].isin(crm["crm_id"])]
    crm_all = pd.concat([crm, candidates], ignore_index=True) if len(candidates) else crm

    found = inputs.link_rows  # (found for the look-ups already: not hashed twice)
    rows = (found.crm_rows, found.outlook_rows) if found is not None and found.fits(inputs.crm, inputs.outlook, inputs.links) else None
    fate = link_fates(
        links, as_objects(crm["crm_id"]), as_objects(outlook["outlook_id"]), inputs.crm_gone,
        settings, rows,
    )
    # Free = in no link (rows of crm_all / outlook, by position: the frames have a
    # RangeIndex); candidates outside the group are checked by id (link_fates sees the
    # group only).
    free_o_rows = ~fate.reserved_outlook_rows
    free_c_rows = np.ones(len(crm_all), dtype=bool)
    free_c_rows[: len(crm)] = ~fate.reserved_crm_rows
    if len(candidates) and len(fate.reserved_crm):
        free_c_rows[len(crm):] = ~candidates["crm_id"].isin(fate.reserved_crm).to_numpy()
    free_outlook = outlook if free_o_rows.all() else outlook[free_o_rows]
    free_crm = crm_all if free_c_rows.all() else crm_all[free_c_rows]
    matches = match_free(free_outlook, free_crm)

    # R12 re-links and R7/R7a matches are new matches: merged against an empty snapshot
    relink = fate.relink[["crm_id", "outlook_id"]].assign(
        link_rule="R12", crm_pos=fate.relink_pos[0], outlook_pos=fate.relink_pos[1])
    no_snapshot = dict.fromkeys(FIELDS)  # None, not NaN: NaN would count as a value
    new_pairs = [p.assign(**no_snapshot) for p in (relink, matches)]
    c_pos, o_pos = fate.merge_pos
    linked = fate.merge
    if limit:  # R8: only the linked pairs that changed on a side are merged field by field
        busy = ~quiet_links(linked, crm_all, outlook, c_pos, o_pos, settings)
        linked, c_pos, o_pos = linked[busy], c_pos[busy], o_pos[busy]
    linked = linked.assign(link_rule=None, crm_pos=c_pos, outlook_pos=o_pos)
    for_merge = [linked, *new_pairs]
    pairs = pd.concat([p for p in for_merge if len(p)] or for_merge[:1], ignore_index=True)
    table = _pair_table(pairs, crm_all, outlook)
    merged = merge_pairs(table, settings)

    unmatched_c = free_c_rows & crm_all["in_group"].to_numpy(dtype=bool)
    unmatched_c[matches["crm_pos"].to_numpy(dtype=np.int64)] = False
    r4 = r4_create_in_outlook(crm_all[unmatched_c], settings)
    unmatched_o = free_o_rows.copy()
    unmatched_o[matches["outlook_pos"].to_numpy(dtype=np.int64)] = False
    r5 = r5_create_in_crm(outlook[unmatched_o], accounts, settings)
    actions = concat_actions(
        [*fate.actions, *_link_actions(table), *merged.actions, *r4.actions, *r5.actions]
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
