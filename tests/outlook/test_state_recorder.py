"""The state of what committed is recorded while the Outlook load still waits on Graph
(issue 12: the tail of a first sync after its last ``$batch``), and only what committed
(R18): a pair once every action of it answered 'ok', a write's history once it
committed, the journal only at the end.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from bench.driver import timed_cycle
from bench.harness import USER, Emulator, build
from contactsync.cycle import record
from contactsync.cycle.record import PairStates, commit_state
from contactsync.outlook import transport
from contactsync.plan.schema import SNAPSHOT_COLUMNS, GuardVerdict, PlanResult
from contactsync.state.schema import history_table


class _Store:
    """What PairStates writes: the pairs saved, the links removed, the journal cleared."""

    def __init__(self) -> None:
        self.saved: list[list[tuple[str, str, str]]] = []
        self.removed: list[str] = []
        self.cleared = 0

    def save_pairs(self, user: str, snaps: pd.DataFrame) -> int:
        self.saved.append(sorted(zip(snaps["crm_id"], snaps["outlook_id"], snaps["status"].fillna("active"),
                                     strict=True)))
        return len(snaps)

    def remove_links(self, user: str, crm_ids: list[str]) -> int:
        self.removed += crm_ids
        return len(crm_ids)

    def journal_clear(self, user: str, run_id: str | None = None) -> int:
        self.cleared += 1
        return 0


def _plan() -> tuple[pd.DataFrame, PlanResult]:
    """C1 linked, nothing to do; C2 created in Outlook; C3 (an Outlook-only contact O3)
    created in the CRM and its tag then written in Outlook; C4 updated on both sides;
    C5 unlinked (R11)."""
    acts = pd.DataFrame([
        {"action_id": "a2", "side": "outlook", "op": "create", "crm_id": "C2", "outlook_id": None, "new_key": None},
        {"action_id": "a3", "side": "crm", "op": "create", "crm_id": "C3", "outlook_id": "O3", "new_key": "new:O3"},
        {"action_id": "a3t", "side": "outlook", "op": "update", "crm_id": "C3", "outlook_id": "O3", "new_key": "new:O3"},
        {"action_id": "a4c", "side": "crm", "op": "update", "crm_id": "C4", "outlook_id": "O4", "new_key": None},
        {"action_id": "a4o", "side": "outlook", "op": "update", "crm_id": "C4", "outlook_id": "O4", "new_key": None},
        {"action_id": "a5", "side": "crm", "op": "unlink", "crm_id": "C5", "outlook_id": "O5", "new_key": None},
    ])
    snaps = pd.DataFrame([
        {"crm_id": "C1", "outlook_id": "O1"}, {"crm_id": "C2", "outlook_id": None},
        {"crm_id": None, "outlook_id": "O3", "new_key": "new:O3"}, {"crm_id": "C4", "outlook_id": "O4"},
    ]).reindex(columns=list(SNAPSHOT_COLUMNS))
    guard = GuardVerdict(stopped=False, synced=3, outlook_removals=0, crm_removals=1, reason="")
    return acts, PlanResult(actions=acts, conflicts=pd.DataFrame(), snapshots=snaps, guard=guard)


def _results(*rows: tuple[str, str] | tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame([{"action_id": r[0], "status": r[1], "outlook_id": r[2] if len(r) > 2 else None}
                         for r in rows])


def test_a_pair_is_recorded_once_every_action_of_it_committed_and_never_after_a_failure() -> None:
    acts, plan = _plan()
    store = _Store()
    sides = SimpleNamespace(store=store, user_id="U1")
    states = PairStates(acts, plan)
    # first round: the pair with no action at once; C3's CRM create alone leaves it waiting
    assert states.record(sides, _results(("a3", "applied"), ("a4c", "applied"))) == {"C1"}
    assert store.saved == [[("C1", "O1", "active")]]
    # C2's Outlook create brings its new id; C3 completes with its tag write; C5 is forgotten
    assert states.record(sides, _results(("a2", "applied", "O2"), ("a3t", "applied"), ("a5", "noop"))) == {
        "C2", "C3", "C5"}
    assert store.saved[-1] == [("C2", "O2", "active"), ("C3", "O3", "active")] and store.removed == ["C5"]
    # C4's Outlook side failed: never recorded, and the journal stays (R18)
    assert states.record(sides, _results(("a4o", "failed"))) == set()
    commit_state(sides, acts, plan, _results(("a4o", "failed")), "run1", states)
    assert len(store.saved) == 2 and store.cleared == 0
    assert "C4" not in states.recorded and not states.all_committed()


def test_recording_in_rounds_records_what_one_call_at_the_end_records() -> None:
    acts, plan = _plan()
    every = _results(("a2", "applied", "O2"), ("a3", "applied"), ("a3t", "applied"), ("a4c", "applied"),
                     ("a4o", "stale"), ("a5", "noop"))
    at_once, in_rounds = _Store(), _Store()
    commit_state(SimpleNamespace(store=at_once, user_id="U1"), acts, plan, every, "run1")
    states = PairStates(acts, plan)
    rounds = SimpleNamespace(store=in_rounds, user_id="U1")
    for k in range(0, len(every), 2):  # as the load's results come, two at a time
        states.record(rounds, every.iloc[k:k + 2])
    commit_state(rounds, acts, plan, every, "run1", states)  # finish: everything, once more
    assert sorted(p for s in in_rounds.saved for p in s) == sorted(p for s in at_once.saved for p in s) == [
        ("C1", "O1", "active"), ("C2", "O2", "active"), ("C3", "O3", "active")]  # C4 stale (412): not stored
    assert in_rounds.removed == at_once.removed == ["C5"]
    assert in_rounds.cleared == at_once.cleared == 0  # a stale write leaves the journal for the next cycle


def test_pairs_are_recorded_while_the_load_still_waits_on_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first sync of 200 (50 Outlook creates in batches of 20, 20, 10, sent in any order
    after the first): before the last batch goes out, the pairs of the first two are linked in the state store already, with
    their new Outlook ids, and the contacts they made are in the mirror; none of the last
    batch's pairs is. Waits on the recorder's rounds (an event), not on a clock."""
    monkeypatch.setattr(record, "ROUND_EVERY", 1)
    rounds = threading.Condition()
    made: list[tuple[PairStates, Any]] = []  # the cycle's PairStates and its Sides
    creates: list[list[str]] = []
    at_last_batch: dict[str, Any] = {}
    real_record, real_request = PairStates.record, transport.GraphSession.request

    def recorded(self: PairStates, sides: Any, results: pd.DataFrame) -> set[str]:
        out = real_record(self, sides, results)
        with rounds:
            made[:] = [(self, sides)]
        return out

    real_round = record.StateRecorder.round

    def round_done(self: record.StateRecorder) -> None:
        # woken when a round is over: it records the pairs, then their history
        real_round(self)
        with rounds:
            rounds.notify_all()

    def request(self: transport.GraphSession, method: str, url: str, *, data: Any = None, **kw: Any) -> Any:
        tags = [ep["value"] for r in (data or {}).get("requests", []) if r["method"] == "POST"
                for ep in (r.get("body") or {}).get("singleValueExtendedProperties", [])] \
            if url == self.batch_url and isinstance(data, dict) else []
        last = False
        if tags:  # a batch sent again (a 429 on a loaded machine) brings no new tag
            with rounds:
                before = {t for batch in creates for t in batch}
                creates.append(tags)
                last = len(before | set(tags)) == 50 and len(before) < 50
        if last:  # the last batch (batches race for the places): the others are recorded first
            with rounds:
                assert rounds.wait_for(lambda: bool(made) and before <= made[0][0].recorded, timeout=120)
            sides = made[0][1]
            at_last_batch.update(before=before, last=set(tags), links=sides.store.load_links(sides.user_id),
                                 mirror=sides.store.load_outlook(sides.user_id, folder[0])[1],
                                 history=_outlook_creates_kept(sides))
        return real_request(self, method, url, data=data, **kw)

    folder: list[str] = []
    monkeypatch.setattr(PairStates, "record", recorded)
    monkeypatch.setattr(record.StateRecorder, "round", round_done)
    monkeypatch.setattr(transport.GraphSession, "request", request)
    emu = Emulator(tmp_path / "graph.db")
    try:
        ds = build(tmp_path, emu, 200, "recorder")
        folder.append(str(ds.folder_id))
        cycle = timed_cycle(str(ds.config), USER)
    finally:
        emu.stop()
    assert cycle["status"] == "ok" and cycle["errors"] == 0, cycle["first_errors"]
    assert len({t for batch in creates for t in batch}) == 50 and "last" in at_last_batch
    links, mirror = at_last_batch["links"], at_last_batch["mirror"]
    linked = set(links["crm_id"].str.strip())
    assert at_last_batch["before"] <= linked and not at_last_batch["last"] & linked
    new = links[links["crm_id"].str.strip().isin(at_last_batch["before"])]
    assert new["outlook_id"].notna().all() and set(new["outlook_id"]) <= set(mirror["outlook_id"])
    assert len(linked) >= 40 + 100  # and the 100 people on both sides, linked with nothing to write
    # the history (`explain`) of those creates is kept already, each write once in the end
    assert at_last_batch["before"] <= set(at_last_batch["history"]) and not at_last_batch["last"] & set(
        at_last_batch["history"])
    sides = made[0][1]
    assert len(sides.store.load_links(sides.user_id)) == 200 and sides.store.journal(sides.user_id).empty
    kept = _outlook_creates_kept(sides)
    assert sorted(kept) == sorted({t for batch in creates for t in batch})  # 50, none twice


def _outlook_creates_kept(sides: Any) -> list[str]:
    """The CRM ids of the Outlook creates in the user's history, one per row."""
    h = history_table
    with sides.store.engine.connect() as conn:
        return [str(r[0]).strip() for r in conn.execute(sa.select(h.c.crm_id).where(
            h.c.crm_user == sides.user_id, h.c.kind == "write", h.c.side == "outlook", h.c.op == "create"))]
