"""A hypothesis state machine over whole cycles (STYLE.md: vdirsyncer's SyncMachine).

Two in-memory sides and a link table (tests/plan/executor.py); random user actions on
either side (creates, edits of the same or different fields, conflicting edits, moves
out of the folder, group removals, CRM deletes); after each one a full cycle is planned
and executed, then what a user relies on is checked:
- both sides hold the same (normalised) value of every field of every linked pair;
- every group member and every folder contact is linked, one-to-one (no duplicate pair);
- no CRM row disappears during a cycle (R15);
- every conflict is reported with both values as they were (R9);
- a second plan right after is empty (R17).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contactsync.model import EMAIL_FIELDS, FIELDS
from contactsync.plan import PlanSettings
from tests.plan.executor import World, same

NAMES = st.sampled_from(["Ann", "Bob", "ann", None])
EMAILS = st.sampled_from(["a@x.com", " A@X.com", "b@x.com", "c@x.com", None])
TITLES = st.sampled_from(["Dev", "Lead", " Dev ", None])
PHONES = st.sampled_from(["555", "556", None])
COMPANIES = st.sampled_from(["Acme", "Globex", "acme", None])
EDITABLE = {"first_name": NAMES, "last_name": NAMES, "email1": EMAILS, "email2": EMAILS,
            "job_title": TITLES, "mobile_phone": PHONES}


def person() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({f: s for f, s in EDITABLE.items()})


class SyncMachine(RuleBasedStateMachine):
    """Default settings: two-way, latest wins, create in CRM, delete Outlook copies."""

    plan_settings = PlanSettings()

    @initialize()
    def start(self) -> None:
        self.world = World()
        for name in ("Acme", "Globex"):
            self.world.accounts[self.world.new_id("A")] = {"name": name,
                                                          "created": self.world.tick()}

    # --- what users do on the two sides -------------------------------------------------
    @rule(values=person(), in_group=st.booleans(), account=st.integers(0, 1))
    def crm_user_creates(self, values: dict, in_group: bool, account: int) -> None:
        w = self.world
        now = w.tick()
        w.crm[w.new_id("C")] = {**dict.fromkeys(f for f in FIELDS if f != "company"), **values,
                                "account_id": sorted(w.accounts)[account], "in_group": in_group,
                                "read_only": False, "crm_created": now, "crm_modified": now}
        self.cycle()

    @rule(values=person(), company=COMPANIES)
    def outlook_user_creates(self, values: dict, company: str | None) -> None:
        w = self.world
        now = w.tick()
        w.outlook[w.new_id("O")] = {**dict.fromkeys(FIELDS), **values, "company": company,
                                    "crm_tag": None, "outlook_created": now,
                                    "outlook_modified": now}
        self.cycle()

    @precondition(lambda self: self.world.crm)
    @rule(data=st.data(), field=st.sampled_from(sorted(EDITABLE)))
    def crm_user_edits(self, data: st.DataObject, field: str) -> None:
        crm_id = data.draw(st.sampled_from(sorted(self.world.crm)))
        self.world.crm[crm_id].update({field: data.draw(EDITABLE[field])},
                                      crm_modified=self.world.tick())
        self.cycle()

    @precondition(lambda self: self.world.outlook)
    @rule(data=st.data(), field=st.sampled_from([*sorted(EDITABLE), "company"]))
    def outlook_user_edits(self, data: st.DataObject, field: str) -> None:
        oid = data.draw(st.sampled_from(sorted(self.world.outlook)))
        value = data.draw(COMPANIES if field == "company" else EDITABLE[field])
        self.world.outlook[oid].update({field: value}, outlook_modified=self.world.tick())
        self.cycle()

    def active_links(self) -> list[str]:
        return sorted(o for o, lk in self.world.links.items() if lk["status"] == "active")

    @precondition(lambda self: self.active_links())
    @rule(data=st.data(), crm_field=st.sampled_from(sorted(EDITABLE)),
          outlook_field=st.sampled_from(sorted(EDITABLE)), crm_first=st.booleans())
    def both_users_edit_a_pair(self, data: st.DataObject, crm_field: str, outlook_field: str,
                               crm_first: bool) -> None:
        """Same or different fields of one linked pair between two cycles (R8, R9)."""
        oid = data.draw(st.sampled_from(self.active_links()))
        crm_id = self.world.links[oid]["crm_id"]
        crm_value = data.draw(EDITABLE[crm_field])
        outlook_value = data.draw(EDITABLE[outlook_field])
        edits = [(self.world.crm[crm_id], crm_field, crm_value, "crm_modified"),
                 (self.world.outlook[oid], outlook_field, outlook_value, "outlook_modified")]
        for row, f, v, stamp in edits if crm_first else edits[::-1]:
            row.update({f: v, stamp: self.world.tick()})
        self.cycle()

    @precondition(lambda self: self.world.outlook)
    @rule(data=st.data())
    def outlook_user_moves_a_contact_out(self, data: st.DataObject) -> None:
        self.world.outlook.pop(data.draw(st.sampled_from(sorted(self.world.outlook))))
        self.cycle()

    @precondition(lambda self: self.world.crm)
    @rule(data=st.data(), in_group=st.booleans())
    def crm_user_changes_the_group(self, data: st.DataObject, in_group: bool) -> None:
        crm_id = data.draw(st.sampled_from(sorted(self.world.crm)))
        self.world.crm[crm_id]["in_group"] = in_group
        self.cycle()

    @precondition(lambda self: self.world.crm)
    @rule(data=st.data())
    def crm_user_deletes(self, data: st.DataObject) -> None:
        self.world.crm.pop(data.draw(st.sampled_from(sorted(self.world.crm))))
        self.cycle()

    # --- one cycle and its checks ---------------------------------------------------------
    def cycle(self) -> None:
        w = self.world
        before_crm = set(w.crm)
        crm_before = {c: w.crm_row(c) for c in w.crm}
        outlook_before = {o: dict(r) for o, r in w.outlook.items()}
        result = w.plan(self.plan_settings)
        for c in result.conflicts.to_dict("records"):  # R9: both values, as they were
            assert c["crm_value"] == crm_before[c["crm_id"]][c["field"]]
            assert c["outlook_value"] == outlook_before[c["outlook_id"]][c["field"]]
            email = c["field"] in EMAIL_FIELDS
            assert not same(c["crm_value"], c["outlook_value"], email)
            assert c["winner"] in ("crm", "outlook") and c["rule"] == "R9"
            # an empty side is a conflict only when it was cleared (R7: empty takes the
            # other value; R8: unchanged-empty is no change)
            if same(c["crm_value"], None) or same(c["outlook_value"], None):
                assert not same(c["snapshot_value"], None), c
        w.apply(result)
        assert before_crm <= set(w.crm), "R15: a cycle never deletes a CRM row"
        again = w.plan(self.plan_settings)
        assert again.actions.empty, again.actions[["side", "op", "rule", "reason"]].to_string()

    @invariant()
    def linked_pairs_hold_the_same_values(self) -> None:
        if not hasattr(self, "world"):
            return
        w = self.world
        for oid, link in w.links.items():
            if link["status"] != "active":
                continue
            crm_row, olk_row = w.crm_row(link["crm_id"]), w.outlook[oid]
            for f in FIELDS:
                assert same(crm_row[f], olk_row[f], f in EMAIL_FIELDS), (f, crm_row, olk_row)

    @invariant()
    def sync_sets_are_linked_one_to_one(self) -> None:
        if not hasattr(self, "world"):
            return
        w = self.world
        active = {o: lk for o, lk in w.links.items() if lk["status"] == "active"}
        crm_ids = [lk["crm_id"] for lk in active.values()]
        assert len(crm_ids) == len(set(crm_ids)), "a CRM contact linked twice"
        assert set(active) == set(w.outlook), "every folder contact is linked"
        members = {c for c, r in w.crm.items() if r["in_group"]}
        assert set(crm_ids) == members, "every group member is linked, and only those"

    def teardown(self) -> None:
        pass


class KeepCopySyncMachine(SyncMachine):
    """R12 keep-copy: a group removal leaves a stopped pair instead of a deletion."""

    plan_settings = PlanSettings(keep_outlook_copy=True)

    @invariant()
    def sync_sets_are_linked_one_to_one(self) -> None:
        if not hasattr(self, "world"):
            return
        w = self.world
        active = {o: lk for o, lk in w.links.items() if lk["status"] == "active"}
        crm_ids = [lk["crm_id"] for lk in w.links.values()]
        assert len(crm_ids) == len(set(crm_ids)), "a CRM contact linked twice"
        assert set(w.links) == set(w.outlook), "every folder contact is linked or stopped"
        members = {c for c, r in w.crm.items() if r["in_group"]}
        assert {lk["crm_id"] for lk in active.values()} == members


#: Modest by default (the suite must stay fast); raise for a deeper hunt, e.g.
#: CONTACTSYNC_MACHINE_EXAMPLES=500 pytest tests/plan/test_machine.py
MACHINE_SETTINGS = settings(
    max_examples=int(os.environ.get("CONTACTSYNC_MACHINE_EXAMPLES", "10")),
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
TestSync = pytest.mark.slow(SyncMachine.TestCase)
TestSync.settings = MACHINE_SETTINGS
TestKeepCopySync = pytest.mark.slow(KeepCopySyncMachine.TestCase)
TestKeepCopySync.settings = MACHINE_SETTINGS


class QuickSyncMachine(SyncMachine):
    """A few short runs for the fast suite (-m 'not slow'); the slow ones go deeper."""


TestSyncQuick = QuickSyncMachine.TestCase
TestSyncQuick.settings = settings(MACHINE_SETTINGS, max_examples=3, stateful_step_count=8)
