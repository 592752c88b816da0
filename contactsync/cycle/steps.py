"""The steps of one sync cycle (DESIGN.md "One cycle, as data"), each a plain function.

Prefect tasks wrap these one to one (``tasks/``); the flow composes them. Keeping them
here, free of Prefect, means the whole cycle can be driven and tested without an
orchestrator, and that the tasks stay thin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pandas as pd

from contactsync import model
from contactsync.cycle.memory import RELEASE_MIN_ROWS, release
from contactsync.cycle.outcome import empty_counts
from contactsync.plan import candidate_lookups
from contactsync.plan.frames import as_objects, member
from contactsync.plan.lookups import link_rows
from contactsync.plan.schema import PlanInputs, PlanResult, PlanSettings

if TYPE_CHECKING:
    from contactsync.cycle.sides import Sides
    from contactsync.outlook.extract import OutlookExtract


@dataclass
class CrmSide:
    group_id: str | None
    frame: pd.DataFrame


@dataclass
class OutlookSide:
    folder_id: str | None
    extract: OutlookExtract | None
    #: the folder's delta was empty and the caller said that settles the cycle
    #: (contactsync.cycle.settled): the mirror was not even read
    settled: bool = False

    @property
    def frame(self) -> pd.DataFrame:
        if self.extract is None:
            return model.empty_frame(model.OUTLOOK_COLUMNS)
        return self.extract.frame


def extract_crm(sides: Sides, *, create_group: bool) -> CrmSide:
    """R1/R2: the user's visible sync-group members; the group is made when missing."""
    name = sides.settings.sync.group_name
    frame, group_id = sides.reader.read_group(name)  # one CRM read when the group has members
    if group_id is None and create_group:
        group_id = sides.writer.ensure_group(name)
    if group_id is None:
        return CrmSide(None, model.empty_frame(model.CRM_COLUMNS))
    side = CrmSide(group_id, model.compact_emails(frame))
    del frame
    release(len(side.frame), collect=False)  # the driver's rows and the raw frame: freed, given back (cycle.memory)
    return side


def extract_outlook(
    sides: Sides, *, create_folder: bool, full: bool = False,
    settled_if_quiet: bool | Callable[[], bool] = False,
) -> OutlookSide:
    """R3: the sync folder's contacts, as the stored mirror with the folder's delta applied.

    The mirror and delta token are saved at once (unless this is a dry run): they are a
    cache of what Outlook holds, not of what was synced, so saving them before the writes
    loses nothing if the cycle is cut (the link snapshots still say what was last synced).
    ``settled_if_quiet``: the previous cycle settled and the CRM reads back the same
    (contactsync.cycle.settled), so an empty delta ends the extract without the mirror;
    a callable is asked only when the delta is empty (the CRM comparison costs ~0.1 s).
    """
    from contactsync.outlook.extract import apply_changes, ensure_folder, read_changes

    name = sides.settings.sync.folder_name
    folder_id = ensure_folder(sides.graph, name) if create_folder else _find_folder(sides, name)
    if folder_id is None:
        return OutlookSide(None, None)
    user = sides.user_id
    delta_link = None if full else sides.store.load_delta_link(user, folder_id)
    if delta_link and not delta_link.startswith(sides.settings.outlook.graph_url):
        # Delta links are absolute: one from another endpoint (graph_url changed) cannot
        # be followed; read the folder in full once instead.
        delta_link = None
    changes = read_changes(sides.graph, folder_id, delta_link=delta_link)
    if changes.quiet and (settled_if_quiet() if callable(settled_if_quiet) else settled_if_quiet):
        if create_folder:  # i.e. not a dry run: keep the token fresh, the mirror as it is
            sides.store.save_outlook(user, folder_id, changes.delta_link)
        return OutlookSide(folder_id, None, settled=True)
    snapshot = None if changes.full else sides.store.load_outlook(user, folder_id)[1]
    result = apply_changes(changes, snapshot)
    del changes, snapshot  # the delta's items and the stored mirror: the result holds what is needed
    if create_folder:
        sides.store.save_outlook(
            user, folder_id, result.delta_link,
            frame=result.frame if result.full else None,
            changed=None if result.full else result.changed,
            removed_ids=result.removed_ids, full=result.full,
        )
    release(len(result.frame), collect=False)  # (the delta's items and the old mirror: no cycle among them)
    return OutlookSide(folder_id, result)


@dataclass
class SettledCheck:
    """Whether this cycle may stop early (contactsync.cycle.settled), each part computed
    only when asked: the fingerprint costs ~0.1 s at 100,000 contacts and is wanted
    only when the previous run settled and the folder's delta is empty (compare), or
    when this cycle turns out to settle (record)."""

    sides: Sides
    run_id: str
    crm: CrmSide
    rules: PlanSettings

    @cached_property
    def previous(self) -> str | None:
        """The fingerprint the user's previous run settled with (None: it did not settle)."""
        from contactsync.cycle.settled import previous_fingerprint

        return previous_fingerprint(self.sides.store.previous_run(self.sides.user_id, self.run_id))

    @cached_property
    def fingerprint(self) -> str:
        from contactsync.cycle.settled import fingerprint

        sync = self.sides.settings.sync
        return fingerprint(self.crm.frame, self.rules, user=self.sides.user_id,
                           group=sync.group_name, folder=sync.folder_name)

    def unchanged(self) -> bool:
        """The previous run settled and the CRM group reads back as it did then."""
        return self.previous is not None and self.previous == self.fingerprint


def _find_folder(sides: Sides, name: str) -> str | None:
    """The sync folder's id without creating it (a dry run writes nothing, R20)."""
    folder = sides.graph.address_book().get_folder(folder_name=name.replace("'", "''"))
    return str(folder.folder_id) if folder is not None and folder.folder_id else None


def gather_inputs(
    sides: Sides, crm: CrmSide, outlook: OutlookSide, *, relink: bool = False,
    repair: bool = False, since: pd.Timestamp | None = None,
) -> PlanInputs:
    """Read the links and the lookups that matching (R5b, R7) and stopping (R12/R13) need.

    A backfill passes ``relink`` (forget the links: every pair is found again by tag,
    R7a, and email, R7) or ``repair`` (keep the links but distrust their snapshots, for
    pairs modified on either side since ``since``: such pairs are merged as new matches).
    """
    links = sides.store.load_links(sides.user_id)
    if relink:
        links = links.iloc[0:0]
    elif repair:
        links = distrust_snapshots(links, crm.frame, outlook.frame, since)
    out = outlook.frame
    # Each link's rows in the two frames, found once for the look-ups and the plan (the
    # Outlook ids' hash lookup is the costly part, ~0.1 s at 100,000: plan.lookups.LinkRows)
    rows = link_rows(crm.frame, out, links)
    emails, names = candidate_lookups(out, links, rows)  # (nothing to look up in a cycle whose contacts are all linked)
    candidates = (
        model.compact_emails(sides.reader.candidates_by_email(emails, outside_group=True))
        if emails
        else model.empty_frame(model.CRM_COLUMNS)
    )
    read = len(candidates)
    group_ids = as_objects(crm.frame["crm_id"])
    if read:
        candidates = candidates[~member(as_objects(candidates["crm_id"]), group_ids)].reset_index(drop=True)
    missing = links.loc[rows.crm_rows < 0, "crm_id"].dropna().tolist()  # (linked, not in the group)
    gone = (
        sides.reader.gone_status(missing)
        if missing
        else pd.DataFrame({"crm_id": pd.Series(dtype=object), "exists": pd.Series(dtype=bool)})
    )
    accounts = sides.reader.accounts_by_name(names) if names else model.empty_frame(model.ACCOUNT_COLUMNS)
    inputs = PlanInputs(
        crm=crm.frame, outlook=out, links=links,
        crm_candidates=candidates, crm_gone=gone, accounts=accounts, link_rows=rows,
    )
    # What the links load and the candidates read left: given back; collected only after a
    # big candidate read (a full collection costs 0.05-0.1 s at any size of cycle, and
    # found nothing here at 100,000 otherwise).
    release(len(out) + len(crm.frame), collect=read >= RELEASE_MIN_ROWS)
    return inputs


def distrust_snapshots(
    links: pd.DataFrame, crm: pd.DataFrame, outlook: pd.DataFrame, since: pd.Timestamp | None
) -> pd.DataFrame:
    """Blank the snapshots of pairs touched since ``since`` (all pairs when None).

    With no snapshot the three-way merge (R8) becomes the merge of a new match (R7): equal
    values stay, an empty side takes the other's value, and differing values follow the
    conflict policy (R9) and are reported. That repairs pairs whose snapshot is wrong
    without trusting either side blindly.
    """
    if links.empty:
        return links
    touched = pd.Series(True, index=links.index)
    if since is not None:
        crm_t = links["crm_id"].map(crm.set_index("crm_id")["crm_modified"]) if not crm.empty else None
        out_t = links["outlook_id"].map(outlook.set_index("outlook_id")["outlook_modified"]) if not outlook.empty else None
        touched = pd.Series(False, index=links.index)
        for t in (crm_t, out_t):
            if t is not None:
                touched |= (pd.to_datetime(t, utc=True) >= since).fillna(False).astype(bool)
    out = links.copy()
    out.loc[touched, list(model.FIELDS)] = None
    return out


def quarantine(plan: PlanResult, inputs: PlanInputs) -> tuple[PlanResult, pd.DataFrame]:
    """R19: hold back every action of a record that fails validation; the rest goes on.

    A record is checked on the side it comes from (lengths of the CRM columns, emails, a
    name or an email, dates, control characters) and in the values the plan would write.
    Its partner in the pair is held back too (``quality.quarantine_actions``), so a
    half-written pair never happens. Returns the filtered plan and the problems found.
    """
    from contactsync.quality import (
        empty_problems,
        plan_problems,
        quarantine_actions,
        record_problems,
    )

    acts = plan.actions
    if acts.empty:
        return plan, empty_problems()
    # Only the records the plan acts on are checked (a cycle's changes, not its 100,000
    # contacts): picked from each frame before any concatenation (issue 15).
    crm_ids, outlook_ids = set(acts["crm_id"].dropna()), set(acts["outlook_id"].dropna())
    crm_parts = [f[f["crm_id"].isin(crm_ids)] for f in (inputs.crm, inputs.crm_candidates) if f is not None and len(f)]
    acted_crm = pd.concat(crm_parts, ignore_index=True) if len(crm_parts) > 1 else crm_parts[0] if crm_parts else inputs.crm
    problems = pd.concat(
        [
            record_problems(inputs.outlook[inputs.outlook["outlook_id"].isin(outlook_ids)],
                            side="outlook", id_column="outlook_id"),
            record_problems(acted_crm, side="crm", id_column="crm_id"),
            plan_problems(acts),
        ],
        ignore_index=True,
    )
    if problems.empty:
        return plan, problems
    problems = one_record_per_contact(problems, acts)
    kept, held = quarantine_actions(acts, problems)
    pair_crm, pair_out = set(held["crm_id"].dropna()), set(held["outlook_id"].dropna())
    pair_new = set(held["new_key"].dropna())
    snaps = plan.snapshots
    snaps = snaps[~(snaps["crm_id"].isin(pair_crm) | snaps["outlook_id"].isin(pair_out) | snaps["new_key"].isin(pair_new))]
    conflicts = plan.conflicts[~(plan.conflicts["crm_id"].isin(pair_crm) | plan.conflicts["outlook_id"].isin(pair_out))]
    filtered = PlanResult(
        actions=kept.reset_index(drop=True), conflicts=conflicts.reset_index(drop=True),
        snapshots=snaps.reset_index(drop=True), guard=plan.guard,
    )
    return filtered, problems.reset_index(drop=True)


def one_record_per_contact(problems: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """A contact flagged on its own side and again in the plan is one record, not two.

    A linked Outlook contact whose street has five lines fails as an Outlook record (its
    outlook_id) and in the CRM update the plan would make from it (its crm_id); ``--json``
    ``quarantined`` counts records (spec/INTERFACE.md), so the plan's problem is told by
    the id of the record that failed on its side (as a ``new:`` key already is).
    """
    plan_rows = problems["action_id"].notna()
    if not plan_rows.any():
        return problems
    own = problems[~plan_rows]
    by_action = actions.drop_duplicates("action_id").set_index("action_id")
    out = problems.copy()
    for side, column in (("outlook", "outlook_id"), ("crm", "crm_id")):
        flagged = set(own.loc[own["side"] == side, "record_id"].dropna())
        ids = out.loc[plan_rows, "action_id"].map(by_action[column])
        same = ids.isin(flagged)
        out.loc[same[same].index, "record_id"] = ids[same]
    return out


def counts(actions: pd.DataFrame) -> dict[str, dict[str, int]]:
    """The --json counts of spec/INTERFACE.md from a frame of (applied or planned) actions."""
    out = empty_counts()
    if actions.empty:
        return out
    real = actions
    if "fields" in actions:
        # A tag-only Outlook update (fields "") is bookkeeping of a new link, not an edit.
        real = actions[~((actions["side"] == "outlook") & (actions["op"] == "update") & (actions["fields"].fillna("") == ""))]
    grouped = real.groupby(["side", "op"]).size()
    for (side, op), n in grouped.items():
        if side in out and op in out[side]:
            out[side][op] = int(n)
    return out


def describe_actions(actions: pd.DataFrame, limit: int = 50) -> list[dict[str, Any]]:
    """A short, readable list of actions (side, op, rule, reason) for reports and the demo."""
    return records(actions[["side", "op", "rule", "reason", "crm_id", "outlook_id", "fields"]], limit)


def records(frame: pd.DataFrame | None, limit: int = 500) -> list[dict[str, Any]]:
    """The first ``limit`` rows as plain dicts (None for missing), for JSON and reports."""
    if frame is None or frame.empty:
        return []
    head = frame.head(limit).astype(object)
    return head.where(head.notna(), None).to_dict("records")
