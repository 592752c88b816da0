"""The settled-cycle fingerprint and verdict (contactsync.cycle.settled, R17)."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from contactsync.cycle.settled import fingerprint, is_settled, previous_fingerprint
from contactsync.model import CRM_COLUMNS, conform
from contactsync.plan import PlanSettings
from tests.plan.helpers import crm, linked, plan, plan_inputs

ANN_LIKE = {"last_name": "Lee", "company": "Acme"}
KEYS = {"user": "U1", "group": "Outlook Sync", "folder": "CRM Contacts"}


def crm_frame(n: int) -> pd.DataFrame:
    rows = [crm(f"C{i}", first_name=f"F{i}", email1=f"p{i}@x.com", **ANN_LIKE) for i in range(n)]
    return conform(pd.DataFrame(rows), CRM_COLUMNS)


def fp(frame: pd.DataFrame, **rules: object) -> str:
    return fingerprint(frame, PlanSettings(**rules), **KEYS)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.randoms(use_true_random=False))
def test_row_order_does_not_matter_but_every_cell_does(n: int, rnd) -> None:
    frame = crm_frame(n)
    shuffled = frame.sample(frac=1, random_state=rnd.randint(0, 10_000)).reset_index(drop=True)
    assert fp(shuffled) == fp(frame)
    row = rnd.randrange(n)
    for column, value in (("job_title", "Changed"), ("read_only", True), ("in_group", False),
                          ("crm_modified", pd.Timestamp("2030-01-01", tz="UTC")), ("email1", None)):
        changed = frame.copy()
        changed.loc[row, column] = value
        if not changed.equals(frame):
            assert fp(changed) != fp(frame), column


def test_rule_switches_user_and_names_are_part_of_it() -> None:
    frame = crm_frame(3)
    base = fp(frame)
    assert fp(frame, conflict_policy="crm") != base
    assert fp(frame, tag_links="at-link") != base
    assert fingerprint(frame, PlanSettings(), **{**KEYS, "folder": "Other"}) != base
    assert fp(frame.iloc[:2]) != base  # a row gone (R1 visibility, group removal)


def test_only_an_empty_plan_of_fully_linked_sides_settles() -> None:
    c, o, lk = linked("C1", "O1", **ANN_LIKE)
    inputs = plan_inputs([c], [o], [lk])
    quiet = plan([c], [o], [lk])
    no_problems = pd.DataFrame()
    assert quiet.actions.empty and is_settled(inputs, quiet, no_problems)
    # an unlinked Outlook contact: R7 may match it to a CRM contact outside the group later
    extra = plan_inputs([c], [o, {**o, "outlook_id": "O2", "crm_tag": None}], [lk])
    assert not is_settled(extra, quiet, no_problems)
    # a linked CRM contact outside the group (a stopped pair, R12): its fate is looked up
    outside = plan_inputs([], [o], [lk])
    assert not is_settled(outside, quiet, no_problems)
    busy = plan([{**c, "job_title": "CEO"}], [o], [lk])
    assert not is_settled(plan_inputs([{**c, "job_title": "CEO"}], [o], [lk]), busy, no_problems)
    assert not is_settled(inputs, quiet, pd.DataFrame({"record_id": ["O1"]}))


def test_only_an_ok_run_with_a_fingerprint_counts() -> None:
    assert previous_fingerprint({"status": "ok", "summary": {"settled": "abc"}}) == "abc"
    assert previous_fingerprint({"status": "failed", "summary": {"settled": "abc"}}) is None
    assert previous_fingerprint({"status": "ok", "summary": {}}) is None
    assert previous_fingerprint(None) is None


def test_values_holding_the_separator_or_none_and_rows_without_a_unique_id_still_count() -> None:
    """The fingerprint joins a column's values by U+001F: a value holding it, an empty
    value against a missing one, and a frame whose crm_id is not unique (hashed row by
    row instead) must each still tell a change."""
    frame = crm_frame(3)
    moved = frame.copy()
    frame.loc[0, "job_title"], frame.loc[1, "job_title"] = "a\x1fb", "c"
    moved.loc[0, "job_title"], moved.loc[1, "job_title"] = "a", "b\x1fc"
    assert fp(frame) != fp(moved)
    empty, missing = frame.copy(), frame.copy()
    empty.loc[2, "department"], missing.loc[2, "department"] = "", None
    assert fp(empty) != fp(missing)
    twice = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    changed = twice.copy()
    changed.loc[3, "city"] = "Elsewhere"
    assert fp(twice) == fp(twice.iloc[::-1].reset_index(drop=True)) and fp(twice) != fp(changed)
