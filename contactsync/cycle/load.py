"""Load the plan into both sides, journaled, and advance the state only for what committed.

Order (R18): ids for new CRM rows are allocated and every action is journaled before it
is written: the rows of the first Outlook ``$batch`` first, so that batch goes out while
the rest of the plan is journaled beside it (a first sync's batch no longer waits for
the whole journal); every other write waits for the whole journal. The CRM writes and
the Outlook writes run at once, except the Outlook writes of pairs
whose CRM contact this plan creates (their tag names it): those wait for the CRM writes
and are held back if the create failed; then, per pair, the link and snapshot advance only
when every action of that pair committed. A cycle cut anywhere leaves either the journal (CRM creates: the allocated id
tells whether the row exists) or the CrmContactId tag (Outlook creates, R7a) to re-link,
and the three-way merge (R8) re-plans everything else without duplicates.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from contactsync import crashpoint
from contactsync.cycle.record import (
    OK_STATUSES,
    PairStates,
    StateRecorder,
    commit_state,
    mirror_written,
    written_tags,
)
from contactsync.cycle.record import norm_results as _norm_results
from contactsync.model import EMAIL_FIELDS
from contactsync.plan.schema import LINK_STATUS_ACTIVE, SNAPSHOT_COLUMNS, PlanResult

if TYPE_CHECKING:
    from contactsync.cycle.sides import Sides
    from contactsync.outlook.load import OutlookWriter

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
#: Not written, not an error: the Outlook contact changed since this cycle read it (412,
#: contactsync.outlook.conflicts); its pair is not snapshotted and the next cycle merges.
STALE = "stale"


@dataclass
class LoadOutcome:
    results: pd.DataFrame  # action_id, status, crm_id, outlook_id, error
    applied: pd.DataFrame  # the action rows that committed (for counts)
    failed: pd.DataFrame  # the action rows that did not, with their error
    errors: list[str] = field(default_factory=list)
    #: the applied rows whose history the load's rounds did not keep (all, without rounds)
    history_due: pd.DataFrame | None = None


def allocate_ids(sides: Sides, actions: pd.DataFrame) -> pd.DataFrame:
    """Give every CRM create its CONTACTID and every new account its ACCOUNTID up front.

    A shallow copy: under pandas' copy-on-write the writes below copy only the columns they
    change, and the plan's actions and these share the rest (a deep copy of a first sync's
    160,000 actions was 27 MB held through both loads, issue 15 goal 3)."""
    acts = actions.copy(deep=False)
    creates = (acts["side"] == "crm") & (acts["op"] == "create") & acts["crm_id"].isna()
    if creates.any():
        ids = sides.writer.allocator.allocate("C", int(creates.sum()))
        acts.loc[creates, "crm_id"] = ids
        mapping = dict(zip(acts.loc[creates, "new_key"], ids, strict=True))
        # Every other row of the same pair (e.g. the tag update in Outlook) learns the id.
        other = acts["crm_id"].isna() & acts["new_key"].isin(mapping)
        acts.loc[other, "crm_id"] = acts.loc[other, "new_key"].map(mapping)
    accounts = (acts["op"] == "create_account") & acts["account_id"].isna()
    if accounts.any():
        ids = sides.writer.allocator.allocate("A", int(accounts.sum()))
        acts.loc[accounts, "account_id"] = ids
    return acts


@dataclass
class Prepared:
    """A plan ready to load: ids allocated and every action journaled (R18)."""

    sides: Sides
    plan: PlanResult
    actions: pd.DataFrame
    run_id: str

    def journal(self, result: dict) -> None:
        """Note one write's result as soon as it is known; crash tests hook in here.

        Applied marks are written in bulk (``flush``): recovery never depends on them
        (``resume`` checks the rows that journaled ids name), so a mark per write would
        only cost a transaction each. Failures are written at once, with their error.
        """
        status = result.get("status")
        with self._lock:
            self._results.append(result)
        if self.recorder is not None:
            self.recorder.poke()
        if status == "applied":
            with self._lock:  # the CRM and the Outlook loads note results at once
                self._applied.append(result["action_id"])
                if len(self._applied) >= 500:
                    self._flush_locked()
            crashpoint.committed(self._side_of.get(result["action_id"], ""))
        elif status == "failed":
            with self._lock:
                self.sides.store.journal_mark(
                    self.sides.user_id, result["action_id"], status,
                    crm_id=result.get("crm_id"), outlook_id=result.get("outlook_id"),
                    error=result.get("error"), final=False,
                )

    def flush(self) -> None:
        """Write the pending 'applied' marks in one transaction."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._applied:
            self.sides.store.journal_mark_many(self.sides.user_id, self._applied, "applied")
            self._applied = []

    def __post_init__(self) -> None:
        self._side_of = dict(zip(self.actions["action_id"], self.actions["side"], strict=True))
        self._applied: list[str] = []
        # One writer of the journal at a time: a SQLite state store takes one writer.
        self._lock = threading.RLock()
        #: The action ids journaled before prepare returned (the first Outlook batch's,
        #: or all); the rest are journaled by ``_journaling`` until ``wait_journaled``.
        self.head: frozenset[str] = frozenset(self.actions["action_id"])
        self._journaling: threading.Thread | None = None
        self._journal_error: BaseException | None = None
        #: Every write's result as journaled, for the rounds of ``StateRecorder`` that
        #: record the state during the load (cycle.record).
        self._results: list[dict] = []
        self._results_dropped = 0  # the results ``results_since`` let go (before its start)
        self.recorder: StateRecorder | None = None
        self._pair_states: PairStates | None = None
        #: The CRM and Outlook frames as read (set by the cycle): with them the rounds keep
        #: the history of the writes as they commit; the ids of the actions they kept.
        self.read: tuple[pd.DataFrame, pd.DataFrame] | None = None
        self.history_kept: set[str] = set()

    @property
    def pair_states(self) -> PairStates:
        """The plan's pairs, as recorded so far (the load's rounds, then ``finish``)."""
        if self._pair_states is None:
            self._pair_states = PairStates(self.actions, self.plan)
        return self._pair_states

    def results_since(self, start: int) -> tuple[pd.DataFrame, int]:
        """The results journaled from the ``start``-th on (each final for its action), and
        where the next call starts.

        Each result is read once: the rounds' one reader moves on, so what it was given
        is let go, not held to the load's end (a first sync's 50,000 result dicts, issue
        15 goal 3); ``start`` is where the previous call said to start.
        """
        with self._lock:
            rows = self._results[max(0, start - self._results_dropped):]
            self._results_dropped += len(self._results)
            self._results = []
        return _norm_results(pd.DataFrame(rows)), start + len(rows)

    def journal_rest(self, rest: pd.DataFrame) -> None:
        """Journal ``rest`` in a thread (R18: ``wait_journaled`` before writing any of it)."""
        self.head = frozenset(self.actions["action_id"]) - frozenset(rest["action_id"])

        def add() -> None:
            try:
                with self._lock:
                    self.sides.store.journal_add(self.sides.user_id, self.run_id, rest)
            except BaseException as exc:  # raised by wait_journaled, in the writers' threads
                self._journal_error = exc

        self._journaling = threading.Thread(target=add, name="journal-rest", daemon=True)
        self._journaling.start()

    def wait_journaled(self, *, raise_error: bool = True) -> None:
        """Return once every action is journaled (R18); raise what journaling raised."""
        if self._journaling is not None:
            self._journaling.join()
        if raise_error and self._journal_error is not None:
            raise self._journal_error


def first_outlook_batch(actions: pd.DataFrame) -> pd.DataFrame:
    """The Outlook writes that go out first: the first ``$batch`` of those that wait for no
    CRM write (``load_outlook``), in the order the writer sends them."""
    out_rows = actions[actions["side"] == "outlook"]
    go = out_rows[~_waits_for_crm(actions, out_rows) & out_rows["op"].isin(["create", "update", "delete"])]
    from contactsync.outlook.batch import BATCH_LIMIT

    return go.head(BATCH_LIMIT)


def _waits_for_crm(actions: pd.DataFrame, out_rows: pd.DataFrame) -> pd.Series:
    """Outlook rows of pairs made in the CRM by this plan (new_key, its id allocated in
    prepare): their tag names a CRM row that exists only once the CRM load made it."""
    crm_ids = actions.loc[actions["side"] == "crm", "crm_id"].dropna()
    return out_rows["new_key"].notna() & out_rows["crm_id"].isin(crm_ids)


def prepare(sides: Sides, plan: PlanResult, *, run_id: str, pipelined: bool = True) -> Prepared:
    """Allocate the ids of new CRM rows and journal every action before its write (R18).

    ``pipelined``: the first Outlook batch's rows are journaled here and the rest in a
    thread, so that batch can go out at once (``load_outlook``); every other write waits
    for the whole journal (``Prepared.wait_journaled``).
    """
    acts = allocate_ids(sides, plan.actions)
    prepared = Prepared(sides, plan, acts, run_id)
    head = first_outlook_batch(acts) if pipelined else acts.iloc[0:0]
    if head.empty or len(head) == len(acts):
        sides.store.journal_add(sides.user_id, run_id, acts)
        return prepared
    with prepared._lock:
        sides.store.journal_add(sides.user_id, run_id, head)
    prepared.journal_rest(acts[~acts["action_id"].isin(head["action_id"])])
    return prepared


def load_crm(prepared: Prepared, *, group_id: str) -> pd.DataFrame:
    """The CRM writes (accounts, contacts, updates, group membership), in transactions."""
    acts = prepared.actions
    prepared.wait_journaled()  # R18: no CRM write before its journal entry
    crm_rows = whole_email_list(acts[acts["side"] == "crm"], prepared.plan.snapshots)
    results = prepared.sides.writer.apply(crm_rows, group_id=group_id, on_result=prepared.journal)
    prepared.flush()
    return _norm_results(results)


def load_outlook(
    prepared: Prepared,
    crm_results: pd.DataFrame | Future[pd.DataFrame],
    *,
    folder_id: str | None,
    outlook_frame: pd.DataFrame,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The Outlook writes, as $batch requests; held back where the pair's CRM create failed.

    ``crm_results`` may be the CRM load still running (a future): the Outlook writes that
    do not name a CRM contact this plan creates go at once, beside it, so a first sync's
    long Outlook load does not wait for the CRM one; the others wait for its results. If
    the CRM load fails, its error is raised once the writes already sent have answered.
    """
    try:
        acts = prepared.actions
        out_rows = acts[acts["side"] == "outlook"]
        # Only a pair made in the CRM by this plan (new_key, its id allocated in prepare)
        # depends on a CRM write: its Outlook tag would name a row that may not exist.
        waits = _waits_for_crm(acts, out_rows)
        writer = None
        if folder_id is not None:
            from contactsync.outlook.load import OutlookWriter

            writer = OutlookWriter(prepared.sides.graph, folder_id)
        recorder = StateRecorder(prepared, folder_id, writer).start() if writer is not None else None
        try:
            written, held = _write_all(prepared, crm_results, writer, waits, outlook_frame, progress)
        finally:
            if recorder is not None:
                recorder.close()
        later = out_rows[waits]
        if writer is not None and recorder is not None and folder_id is not None:
            # What the recorder did not mirror yet, and the tags of updates whose answer
            # carried no contact, in one save.
            rows = writer.written(recorder.mirrored)
            tags = written_tags(outlook_frame, out_rows, written, recorder.mirrored_ids | set(rows["outlook_id"]))
            mirror_written(prepared.sides, folder_id, rows, tags)
        held_results = pd.DataFrame(
            {
                "action_id": later.loc[held, "action_id"],
                "status": "failed",
                "error": "held back: the CRM contact of this pair was not created (see its CRM error)",
            }
        )
        return pd.concat([written, _norm_results(held_results)], ignore_index=True)
    finally:  # whatever happened, the journal thread has ended when the load returns
        prepared.wait_journaled(raise_error=False)


def _write_all(
    prepared: Prepared,
    crm_results: pd.DataFrame | Future[pd.DataFrame],
    writer: OutlookWriter | None,
    waits: pd.Series,
    outlook_frame: pd.DataFrame,
    progress: Progress | None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Every Outlook write: the first batch, the rest once journaled, then those that
    waited for the CRM. Returns their results and, of those that waited, the ones held
    back because their CRM create failed."""
    acts = prepared.actions
    crm_rows = acts[acts["side"] == "crm"]
    out_rows = acts[acts["side"] == "outlook"]
    total = len(out_rows)
    parts: list[pd.DataFrame] = []

    def write(rows: pd.DataFrame, before: int) -> None:
        if writer is None or rows.empty:
            return
        shifted = None if progress is None else (lambda done, _total: progress(before + done, total))
        try:
            parts.append(_norm_results(writer.apply(rows, outlook_frame, on_result=prepared.journal,
                                                    progress=shifted)))
        finally:
            prepared.flush()

    go = out_rows[~waits]
    head = go[go["action_id"].isin(prepared.head)]
    if writer is not None and not head.empty and len(head) < len(go):
        # The first batch (journaled by prepare) goes out now; the others once the whole
        # plan is journaled (R18), while it is in flight.
        with ThreadPoolExecutor(1, thread_name_prefix="graph-first-batch") as pool:
            first = pool.submit(contextvars.copy_context().run, write, head, 0)
            try:
                prepared.wait_journaled()
                write(go[~go["action_id"].isin(prepared.head)], len(head))
            finally:
                wait([first])
            first.result()
    else:
        prepared.wait_journaled()
        write(go, 0)
    done_crm = crm_results.result() if isinstance(crm_results, Future) else crm_results
    later = out_rows[waits]
    failed_crm_ids = set(crm_rows.loc[crm_rows["action_id"].isin(_failed_ids(done_crm)), "crm_id"].dropna())
    # An Outlook write for a pair whose CRM create failed would tag a contact with an id
    # that does not exist: hold it back; the next cycle plans it again.
    held = later["crm_id"].isin(failed_crm_ids)
    write(later[~held], int((~waits).sum()))
    return (pd.concat(parts, ignore_index=True) if parts else _norm_results(None)), held


def finish(prepared: Prepared, *results: pd.DataFrame) -> LoadOutcome:
    """Advance links and snapshots for what committed; say what did not."""
    acts = prepared.actions
    prepared.wait_journaled()
    done = pd.concat([_norm_results(r) for r in results], ignore_index=True)
    # The pairs recorded while the load waited on Graph (StateRecorder) are not saved again.
    commit_state(prepared.sides, acts, prepared.plan, done, prepared.run_id, prepared.pair_states)
    ok = done.loc[done["status"].isin(OK_STATUSES), "action_id"]
    applied = acts[acts["action_id"].isin(ok)]
    failed = acts.merge(done.loc[~done["status"].isin(OK_STATUSES | {STALE}), ["action_id", "error"]], on="action_id")
    errors = [f"{r.side} {r.op} of {r.crm_id or r.outlook_id} ({r.rule}): {r.error}" for r in failed.itertuples()]
    due = applied[~applied["action_id"].isin(prepared.history_kept)] if prepared.history_kept else applied
    return LoadOutcome(results=done, applied=applied, failed=failed, errors=errors, history_due=due)


def whole_email_list(crm_rows: pd.DataFrame, snapshots: pd.DataFrame) -> pd.DataFrame:
    """CRM updates of any email write all three email columns, from the merged record.

    Emails are compared as a list without gaps (``model.compact_emails``); writing one
    slot alone could leave the CRM with a gap that reads back as a different list.
    """
    fields = crm_rows["fields"].fillna("")
    touches = (crm_rows["op"] == "update") & fields.str.contains("email", regex=False)
    if not touches.any() or snapshots.empty:
        return crm_rows
    merged = snapshots.dropna(subset=["crm_id"]).drop_duplicates("crm_id").set_index("crm_id")
    rows = crm_rows.copy()
    ids = rows.loc[touches, "crm_id"]
    known = ids.isin(merged.index)
    idx = ids[known].index
    for name in EMAIL_FIELDS:
        rows.loc[idx, name] = ids[known].map(merged[name]).to_numpy()
    listed = rows.loc[idx, "fields"].str.split(",")
    rows.loc[idx, "fields"] = [
        ",".join([f for f in names if f not in EMAIL_FIELDS] + list(EMAIL_FIELDS)) for names in listed
    ]
    return rows


def _failed_ids(results: pd.DataFrame) -> set[str]:
    if results is None or results.empty:
        return set()
    return set(results.loc[~results["status"].isin(OK_STATUSES), "action_id"])


def resume(sides: Sides) -> int:
    """R18: finish what a cut cycle left in the journal before planning anew.

    A CRM create whose id was journaled and whose row now exists did happen: link it to
    its Outlook contact, so a contact without email (no R7 match possible) is never
    created twice. Outlook creates need nothing: their CrmContactId tag re-links them (R7a).
    Returns the number of pairs re-linked.
    """
    store, user = sides.store, sides.user_id
    # Every entry, 'applied' ones included: a create can commit and be marked applied and
    # the cycle still be cut before its link was stored (commit_state).
    pending = store.journal(user)
    if pending.empty:
        return 0
    creates = pending[(pending["side"] == "crm") & (pending["op"] == "create") & pending["crm_id"].notna() & pending["outlook_id"].notna()]
    relinked = 0
    if not creates.empty:
        status = sides.reader.gone_status(creates["crm_id"].tolist())
        exists = set(status.loc[status["exists"], "crm_id"])
        done = creates[creates["crm_id"].isin(exists)]
        linked = store.load_links(user)
        done = done[~done["crm_id"].isin(linked["crm_id"]) & ~done["outlook_id"].isin(linked["outlook_id"])]
        if not done.empty:
            # No snapshot yet: both sides hold what the create wrote, so the merge (R8)
            # sees "changed on both sides to the same value" and writes nothing.
            snaps = pd.DataFrame(
                {"crm_id": done["crm_id"], "outlook_id": done["outlook_id"], "status": LINK_STATUS_ACTIVE}
            ).reindex(columns=list(SNAPSHOT_COLUMNS))
            snaps["status"] = LINK_STATUS_ACTIVE
            store.save_pairs(user, snaps)
            relinked = len(done)
    store.journal_clear(user)
    return relinked
