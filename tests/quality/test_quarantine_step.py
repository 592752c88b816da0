"""The cycle's quarantine step checks only the records the plan acts on, and holds back
exactly what checking every record would (R19).

``cycle.steps.quarantine`` runs the record checks on the rows of the group, the
candidates and the folder that an action names (a cycle's changes, not its 100,000
contacts: issue 15). A record no action names has nothing to hold back, so the result
must equal checking every row of every frame and keeping the problems of the records
acted on: the property below holds the two equal, problems and kept plan alike, over
linked, unlinked and candidate records with and without faults.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contactsync.cycle.steps import one_record_per_contact, quarantine
from contactsync.plan import PlanSettings, plan_cycle
from contactsync.quality import plan_problems, quarantine_actions, record_problems
from tests.plan.helpers import crm, link, olk, plan_inputs

#: A value as a side holds it: fine, too long for its CRM column, a control character.
TITLES = st.sampled_from(["Dev", "Dev", "t" * 120, "Dev\x07"])
EMAILS = st.sampled_from(["ann@x.com", "bo@x.com", "broken@", None])


@st.composite
def cycles(draw: st.DrawFn):
    crm_rows, out_rows, link_rows, candidates = [], [], [], []
    for i in range(draw(st.integers(0, 6))):
        snap = {"first_name": "Ann", "job_title": "Dev", "email1": f"p{i}@x.com"}
        c = {**snap, "job_title": draw(TITLES)}
        o = {**snap, "job_title": draw(TITLES), "email1": draw(st.sampled_from([f"p{i}@x.com", "broken@"]))}
        crm_rows.append(crm(f"CDEMOA{i:06d}", **c))
        out_rows.append(olk(f"O{i}", tag=f"CDEMOA{i:06d}", **o))
        link_rows.append(link(f"CDEMOA{i:06d}", f"O{i}", **snap))
    for j in range(draw(st.integers(0, 4))):  # unlinked on either side, or outside the group
        values = {"first_name": "New", "job_title": draw(TITLES), "email1": draw(EMAILS)}
        where = draw(st.sampled_from(["crm", "outlook", "candidate"]))
        if where == "crm":
            crm_rows.append(crm(f"CNEWAA{j:06d}", **values))
        elif where == "outlook":
            out_rows.append(olk(f"P{j}", **values))
        else:
            candidates.append(crm(f"CCANDA{j:06d}", **values))
    return plan_inputs(crm_rows, out_rows, link_rows, candidates=candidates)


def _acted(problems: pd.DataFrame, ids: set) -> pd.DataFrame:
    return problems[problems["record_id"].isin(ids)]


def _same_as_checking_everything(inputs, direction) -> None:
    planned = plan_cycle(inputs, PlanSettings(direction=direction))
    filtered, problems = quarantine(planned, inputs)
    acts = planned.actions
    if acts.empty:
        assert problems.empty and filtered is planned
        return
    every_crm = pd.concat([inputs.crm, inputs.crm_candidates], ignore_index=True)
    everything = pd.concat([
        _acted(record_problems(inputs.outlook, side="outlook", id_column="outlook_id"),
               set(acts["outlook_id"].dropna())),
        _acted(record_problems(every_crm, side="crm", id_column="crm_id"), set(acts["crm_id"].dropna())),
        plan_problems(acts),
    ], ignore_index=True)
    if everything.empty:
        assert problems.empty and filtered is planned
        return
    want = one_record_per_contact(everything, acts).reset_index(drop=True)
    pd.testing.assert_frame_equal(problems, want)
    kept, _ = quarantine_actions(acts, want)
    pd.testing.assert_frame_equal(filtered.actions, kept.reset_index(drop=True))


_CASES = (cycles(), st.sampled_from(["two-way", "crm-to-outlook", "outlook-to-crm"]))
#: ~0.3-1 s per example (a plan and the checks twice): a few in the default suite, more in the slow one
test_checking_the_acted_records_equals_checking_every_record = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])(
    given(*_CASES)(_same_as_checking_everything))
test_checking_the_acted_records_equals_checking_every_record_many = pytest.mark.slow(settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])(
    given(*_CASES)(_same_as_checking_everything)))
