"""Record the state of what committed: the pairs' links and snapshots, and the mirror of
the contacts the Outlook writes left, in rounds while the load still waits on Graph.

A first sync's Outlook load is the cycle's long wait: 12.5 s of network for 500 creates
at 2,000 contacts, next to ~0.3 s of CPU that recording the state cost after the last
``$batch`` (issue 12). :class:`StateRecorder` records, beside the load, what has answered;
``cycle.load.finish`` records the rest with the same :class:`PairStates`, so a pair is
recorded by the same rule whenever it completes.

R18 holds as it did at the end: a pair is recorded only once every action of it committed
(a side acknowledged it), the journal stays until ``finish``, and a cycle cut between two
rounds leaves a subset of the state one whole cycle records, which the next cycle
completes (the journal re-links CRM creates, the CrmContactId tag Outlook ones, R7a).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from contactsync.plan.schema import LINK_STATUS_ACTIVE, PlanResult

if TYPE_CHECKING:
    from contactsync.cycle.sides import Sides
    from contactsync.outlook.load import OutlookWriter


class Prepared(Protocol):
    """What the recorder uses of ``cycle.load.Prepared`` (which imports this module)."""

    sides: Sides
    actions: pd.DataFrame
    plan: PlanResult
    run_id: str
    recorder: Any
    read: tuple[pd.DataFrame, pd.DataFrame] | None
    history_kept: set[str]

    @property
    def pair_states(self) -> PairStates: ...

    def results_since(self, start: int) -> tuple[pd.DataFrame, int]: ...

    def wait_journaled(self, *, raise_error: bool = True) -> None: ...

log = logging.getLogger(__name__)

OK_STATUSES = frozenset({"applied", "noop"})
#: Results journaled between two rounds of :class:`StateRecorder` (ten batches of 20): a
#: round costs ~0.06 s of CPU and ~0.2 ms per result under the GIL beside the batches,
#: so not many rounds (every 40 results doubled the load's CPU); few enough results that
#: the round at the last batch ends while that batch is in flight (~0.5 s).
ROUND_EVERY = 200
#: A round also starts when no more than this many results are still to come: the last
#: ``$batch`` is in flight (outlook.load sends one batch of 20 at a time), and ``finish``
#: is left with that batch alone.
LAST_ROUND = 20
RESULT_COLUMNS = ("action_id", "status", "crm_id", "outlook_id", "account_id", "error")


def norm_results(results: pd.DataFrame | None) -> pd.DataFrame:
    """Write results in one shape (``RESULT_COLUMNS``, object columns), empty ones too."""
    if results is None or results.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RESULT_COLUMNS})
    return results.reindex(columns=list(RESULT_COLUMNS)).astype(object)


class PairStates:
    """The pairs of one plan, each recorded once every action of it committed.

    A pair is identified by its CRM id (allocated ones included). Its new Outlook id comes
    from the result of its Outlook create. Pairs with an ``unlink`` are forgotten, or kept
    as ``stopped`` when the plan says so (R12 keep-copy); the rest get their snapshot; a
    pair with no action at all (both sides changed to the same value) is stored as it is.

    :meth:`record` takes results as they come (each final for its action): its cost is
    that of the new results and of the pairs they complete, not of the whole plan, so
    it can run after every few batches of a load.
    """

    def __init__(self, acts: pd.DataFrame, plan: PlanResult) -> None:
        # The columns this needs, not the actions' every field: two whole copies of a first
        # sync's 160,000 actions were the cycle's peak of memory (issue 15).
        small = acts[["action_id", "side", "op", "crm_id", "outlook_id", "new_key"]]
        pair = small["crm_id"].fillna(small["outlook_id"])
        self._pair_of = pd.Series(pair.to_numpy(dtype=object), index=small["action_id"].to_numpy(dtype=object))
        #: actions not yet answered 'ok', per pair; a pair leaves when it is recorded
        self._todo = pair.value_counts(dropna=True)
        self._bad: set[str] = set()
        self._seen: set[str] = set()
        out_creates = small[(small["side"] == "outlook") & (small["op"] == "create")]
        self._create_crm = pd.Series(out_creates["crm_id"].to_numpy(dtype=object),
                                     index=out_creates["action_id"].to_numpy(dtype=object))
        self._new_out: dict[str, str] = {}
        self._unlink_pairs = set(pair[(small["op"] == "unlink").to_numpy()].dropna())
        self.all_ok = True
        self.recorded: set[str] = set()
        snaps = plan.snapshots
        if not snaps.empty:
            # Pairs created in CRM this cycle: their crm_id is the allocated one. (A new
            # column on the plan's frame, not a copy of it: a first sync's 50,000 snapshots
            # copied whole were held through its Outlook load, issue 15 goal 3.)
            key_to_id = small.dropna(subset=["new_key", "crm_id"]).drop_duplicates("new_key").set_index(
                "new_key")["crm_id"]
            need = (snaps["crm_id"].isna() & snaps["new_key"].notna()).to_numpy()
            if need.any():
                crm_ids = snaps["crm_id"].to_numpy(dtype=object).copy()
                crm_ids[need] = snaps.loc[need, "new_key"].map(key_to_id).to_numpy(dtype=object)
                snaps = snaps.assign(crm_id=crm_ids)
            known = snaps["crm_id"].notna().to_numpy()
            if not known.all():
                snaps = snaps[known]
            if "status" not in snaps:
                snaps = snaps.assign(status=LINK_STATUS_ACTIVE)
        self._snaps = snaps
        self._untouched = snaps.empty or bool((~snaps["crm_id"].isin(set(pair.dropna()))).any())

    def all_committed(self) -> bool:
        """Every action of the plan answered, and each one 'ok'."""
        return self.all_ok and len(self._seen) == len(self._pair_of)

    def record(self, sides: Sides, results: pd.DataFrame) -> set[str]:
        """Record the pairs that ``results`` (those not seen before) complete; returns their
        CRM ids. The pairs without any action go with the first call."""
        new = results[~results["action_id"].isin(self._seen)].drop_duplicates("action_id", keep="last")
        new = new[new["action_id"].isin(self._pair_of.index)]
        self._seen.update(new["action_id"])
        ok = new["status"].isin(OK_STATUSES)
        if not bool(ok.all()):
            self.all_ok = False
            self._bad |= set(self._pair_of.reindex(new.loc[~ok, "action_id"]).dropna())
        done = new[ok]
        created = done[done["action_id"].isin(self._create_crm.index) & done["outlook_id"].notna()]
        self._new_out.update(zip(self._create_crm.reindex(created["action_id"]), created["outlook_id"], strict=True))
        if not done.empty:
            answered = self._pair_of.reindex(done["action_id"]).value_counts(dropna=True)
            self._todo = self._todo.sub(answered, fill_value=0)
        complete = self._todo[self._todo <= 0].index
        self._todo = self._todo[self._todo > 0]
        ready = set(complete) - self._bad
        snaps = self._snaps
        if not snaps.empty:
            pick = snaps["crm_id"].isin(ready)
            if self._untouched:  # the first call: the pairs with no action at all
                pick |= ~snaps["crm_id"].isin(self._pair_of.dropna())
                self._untouched = False
            snaps = snaps[pick & ~snaps["crm_id"].isin(self.recorded)]
            need_out = snaps["outlook_id"].isna()
            if need_out.any():
                snaps = snaps.copy()
                snaps.loc[need_out, "outlook_id"] = snaps.loc[need_out, "crm_id"].map(self._new_out)
            snaps = snaps[snaps["outlook_id"].notna()]
        stopped = set(snaps.loc[snaps["status"] == "stopped", "crm_id"]) if not snaps.empty else set()
        gone = (ready & self._unlink_pairs) - stopped - self.recorded
        recorded: set[str] = set()
        store, user = sides.store, sides.user_id
        if gone:
            store.remove_links(user, sorted(gone))
            recorded |= gone
        if not snaps.empty:  # each row carries its status: active, or stopped (R12 keep-copy)
            store.save_pairs(user, snaps)
            recorded |= set(snaps["crm_id"])
        self.recorded |= recorded
        return recorded


def commit_state(sides: Sides, acts: pd.DataFrame, plan: PlanResult, results: pd.DataFrame, run_id: str,
                 states: PairStates | None = None) -> None:
    """Advance links and snapshots for the pairs whose every action committed
    (:class:`PairStates`; ``states``: the one that recorded earlier rounds), then clear
    the journal if every action committed; after a failure it stays for ``resume`` at the
    start of the next cycle."""
    states = states or PairStates(acts, plan)
    states.record(sides, norm_results(results))
    if states.all_committed():
        sides.store.journal_clear(sides.user_id, run_id=run_id)


class StateRecorder:
    """Records, in a thread beside the Outlook load, what has answered so far: the
    contacts the writer's committed writes left (the mirror, as at the end), the pairs
    now complete (:class:`PairStates`), and the history of the writes that committed
    (given the sides as read, ``Prepared.read``; the cycle keeps the rest at its end).

    A round starts, once the whole plan is journaled (never beside the journal's own
    writes, which the batches wait for), when ``every`` results arrived since the last
    (not at once: the CRM load and the first batches are busy then), and when only the
    last batch's results are still to come (``LAST_ROUND``); a failing round ends them,
    and the end of the load and ``finish`` record the rest.
    """

    def __init__(self, prepared: Prepared, folder_id: str | None, writer: OutlookWriter | None,
                 *, every: int | None = None) -> None:
        self.prepared, self.folder_id, self.writer = prepared, folder_id, writer
        self.every = ROUND_EVERY if every is None else every
        self._expected = len(prepared.actions)  # every action's result is journaled once
        self._count = 0
        self._last_due = False
        #: the writer's rows already in the mirror (its ``written`` list only grows)
        self.mirrored = 0
        self.mirrored_ids: set[str] = set()
        self._results_seen = 0
        self._delta_link: tuple[str | None] | None = None  # (the folder's token,) once read
        self._new = 0
        self._stop = False
        self._wake = threading.Condition()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="state-recorder", daemon=True)

    def start(self) -> StateRecorder:
        self.prepared.recorder = self
        self._thread.start()
        return self

    def poke(self) -> None:
        """One more result journaled (``Prepared.journal``)."""
        with self._wake:
            self._new += 1
            self._count += 1
            if not self._last_due and self._expected - self._count <= LAST_ROUND:
                self._last_due = True
                self._new = max(self._new, self.every)
            if self._new >= self.every:
                self._wake.notify()

    def close(self) -> None:
        """Stop after the round in progress; the rest is the caller's."""
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join()
        self.prepared.recorder = None

    def _run(self) -> None:
        self.prepared.wait_journaled(raise_error=False)
        while True:
            with self._wake:
                while not (self._stop or self._new >= self.every):
                    self._wake.wait()
                if self._stop:
                    return
                self._new = 0
            try:
                self.round()
            except Exception as exc:  # what the rounds did not record is recorded at the end
                log.warning("recording the state during the load failed (%s); it is recorded at the end", exc)
                self.error = exc
                return

    def round(self) -> None:
        """Mirror the newly written contacts, then record the pairs now complete."""
        prepared = self.prepared
        sides = prepared.sides
        # The results first: the writer keeps a batch's contacts before it journals the
        # batch's results, so every pair these complete has its contact in the rows read
        # next, mirrored before the pair is recorded (as at the end of a load).
        new, self._results_seen = prepared.results_since(self._results_seen)
        if self.writer is not None and self.folder_id is not None:
            rows = self.writer.written(self.mirrored)
            if not rows.empty:
                if self._delta_link is None:  # the extract saved it; nothing moves it during the load
                    self._delta_link = (sides.store.load_delta_link(sides.user_id, self.folder_id),)
                sides.store.save_outlook(sides.user_id, self.folder_id, self._delta_link[0], changed=rows)
                self.mirrored += len(rows)
                self.mirrored_ids.update(rows["outlook_id"].astype(str))
                self.writer.forget_written(self.mirrored)  # stored: not held to the load's end
        prepared.pair_states.record(sides, new)
        if prepared.read is not None:  # the history of the writes that committed (`explain`)
            ok = new[new["status"].isin(OK_STATUSES) & ~new["action_id"].isin(prepared.history_kept)]
            if not ok.empty:
                crm, outlook = prepared.read
                sides.store.record_history(
                    prepared.run_id, sides.user_id, crm=crm, outlook=outlook,
                    applied=prepared.actions[prepared.actions["action_id"].isin(ok["action_id"])],
                    conflicts=None, problems=None, results=ok, keep_days=None)
                prepared.history_kept.update(ok["action_id"])


def written_tags(
    outlook_frame: pd.DataFrame, out_rows: pd.DataFrame, results: pd.DataFrame, mirrored: set[str],
) -> pd.DataFrame | None:
    """Every update the sync committed carried its pair's CrmContactId tag (R7a): the
    mirror takes that tag at once. A delta round reads tags only for contacts whose stored
    copy has none (Graph documents no ``$expand`` on delta), so without this a contact that
    carried another contact's tag would keep it in the mirror and be re-tagged by every
    cycle, never settling (R17). The writer's own rows (``mirrored``: their ids) carry
    the tag they wrote already (the mirror was written twice for them, issue 12); only
    updates whose answer held no contact are left here."""
    if results.empty or outlook_frame is None or outlook_frame.empty:
        return None
    applied = set(results.loc[results["status"] == "applied", "action_id"])
    done = out_rows[(out_rows["op"] == "update") & out_rows["action_id"].isin(applied)].dropna(
        subset=["crm_id", "outlook_id"])
    done = done[~done["outlook_id"].astype(str).isin(mirrored)]
    if done.empty:
        return None
    tags = done.drop_duplicates("outlook_id", keep="last").set_index("outlook_id")["crm_id"]
    stored = outlook_frame[outlook_frame["outlook_id"].isin(tags.index)]
    stale = stored[stored["crm_tag"].ne(stored["outlook_id"].map(tags))]
    return None if stale.empty else stale.assign(crm_tag=stale["outlook_id"].map(tags))


def mirror_written(sides: Sides, folder_id: str, rows: pd.DataFrame | None, tags: pd.DataFrame | None) -> None:
    """The mirror takes the contacts as the committed writes left them, new changeKeys
    included (``rows``), and the tags of :func:`written_tags`, in one save; the delta
    token stays, so the next delta still returns them, and
    ``outlook.extract.known_versions`` drops those echoes unparsed (issue 15)."""
    frames = [f for f in (tags, rows) if f is not None and not f.empty]
    if not frames:
        return
    changed = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    sides.store.save_outlook(sides.user_id, folder_id, sides.store.load_delta_link(sides.user_id, folder_id),
                             changed=changed)
