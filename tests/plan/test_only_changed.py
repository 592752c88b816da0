"""Only the linked pairs that changed are merged field by field, and the plan is the same.

``plan_cycle`` finds the linked pairs whose every compared value is identical on both
sides and in the snapshot, and whose Outlook copy needs no tag (``merge.quiet_links``),
and merges only the others (issue 15 goal 2: a cycle's cost with its changes). R8 says
such a pair has nothing to write; this property checks it on whole plans: for any mix of
quiet pairs, edited pairs (either side, both sides, blank-only or case-only edits),
missing or foreign tags, read-only rows, links whose records left a side, unlinked
records on both sides and any rule switches, the limited plan equals the plan that
merges every pair (``plan_every_pair``), frame for frame.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contactsync.model import FIELDS
from contactsync.plan import PlanSettings, merge, plan_cycle
from contactsync.plan.cycle import plan_every_pair
from contactsync.plan.lookups import candidate_lookups, link_rows
from tests.plan.helpers import crm, link, linked, olk, plan_inputs

#: A value as the snapshot holds it, and the ways a side may hold it this cycle.
BASE = st.sampled_from(["Ann", "ann@x.com", "Dev", "555", None])
EDITS = st.sampled_from(["same", "same", "same", "blank", "other", "spaced", "upper", "none"])
FIELDS_USED = ("first_name", "email1", "job_title", "mobile_phone", "company")


def _edited(value: str | None, how: str) -> str | None:
    return {
        "same": value,
        "blank": "",
        "other": "Changed",
        "spaced": None if value is None else f" {value} ",
        "upper": None if value is None else value.upper(),
        "none": None,
    }[how]


@st.composite
def cycles(draw: st.DrawFn) -> tuple[Any, PlanSettings]:
    crm_rows: list[dict] = []
    out_rows: list[dict] = []
    link_rows: list[dict] = []
    for i in range(draw(st.integers(0, 8))):
        snap = {f: draw(BASE) for f in FIELDS_USED}
        # most pairs quiet on a side (as in a real cycle); an edited side edits each field
        c_edit, o_edit = (draw(st.sampled_from([False, False, True])) for _ in "co")
        c_vals = {f: _edited(v, draw(EDITS) if c_edit else "same") for f, v in snap.items()}
        o_vals = {f: _edited(v, draw(EDITS) if o_edit else "same") for f, v in snap.items()}
        tag = draw(st.sampled_from([f"C{i}", None, "C99"]))  # its own, none, another's
        where = draw(st.sampled_from(["both", "both", "both", "crm only", "outlook only", "neither"]))
        if where in ("both", "crm only"):
            crm_rows.append(crm(f"C{i}", read_only=draw(st.booleans()), modified=draw(st.integers(0, 3)), **c_vals))
        if where in ("both", "outlook only"):
            out_rows.append(olk(f"O{i}", tag=tag, modified=draw(st.integers(0, 3)), **o_vals))
        link_rows.append(link(f"C{i}", f"O{i}", status=draw(st.sampled_from(["active", "active", "stopped"])),
                              **snap))
    for j in range(draw(st.integers(0, 3))):  # unlinked: matched by email (R7) or created (R4, R5)
        email = draw(st.sampled_from(["ann@x.com", "new@x.com", None]))
        if draw(st.booleans()):
            crm_rows.append(crm(f"N{j}", email1=email, first_name="New"))
        else:
            out_rows.append(olk(f"P{j}", email1=email, first_name="New"))
    out_rows = draw(st.permutations(out_rows))  # the mirror's order is not the links' (gathers)
    rules = PlanSettings(
        conflict_policy=draw(st.sampled_from(["latest", "crm", "outlook"])),
        direction=draw(st.sampled_from(["two-way", "crm-to-outlook", "outlook-to-crm"])),
        tag_links=draw(st.sampled_from(["with-write", "at-link"])),
        field_direction=draw(st.sampled_from([{}, {"job_title": "crm-to-outlook"}])),
        keep_outlook_copy=draw(st.booleans()),
        fields=draw(st.sampled_from([FIELDS, tuple(f for f in FIELDS if f != "job_title")])),
    )
    return plan_inputs(crm_rows, out_rows, link_rows), rules


def _same_plan(case: tuple[Any, PlanSettings]) -> None:
    inputs, rules = case
    full = plan_every_pair(inputs, rules)
    # the plan as a cycle makes it (the links' rows found for the look-ups, handed over),
    # with quiet_links' Outlook gathers a block of 2 rows at a time (many blocks)
    handed = replace(inputs, link_rows=link_rows(inputs.crm, inputs.outlook, inputs.links))
    with patch.object(merge, "SAME_BLOCK", 2):
        limited = plan_cycle(handed, rules)
    for part in ("actions", "conflicts", "snapshots"):
        pd.testing.assert_frame_equal(getattr(limited, part), getattr(full, part), check_index_type=False)
    assert limited.guard == full.guard


#: ~0.1 s per example (two plans): a few seconds in the default suite, more in the slow one
test_the_plan_of_the_changed_pairs_equals_the_plan_of_every_pair = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])(given(cycles())(_same_plan))
test_the_plan_of_the_changed_pairs_equals_the_plan_of_every_pair_many = pytest.mark.slow(settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])(given(cycles())(_same_plan)))


def test_a_quiet_pair_is_not_merged_and_an_edited_one_is():
    """The pre-filter is what makes the difference: a pair edited on one side is
    written (R8), the quiet pair beside it is not looked at by the merge."""
    same = {"first_name": "Ann", "email1": "ann@x.com"}
    inputs = plan_inputs(
        [crm("C1", **same), crm("C2", **{**same, "first_name": "Anna"})],
        [olk("O1", tag="C1", **same), olk("O2", tag="C2", **same)],
        [link("C1", "O1", **same), link("C2", "O2", **same)],
    )
    result = plan_cycle(inputs, PlanSettings())
    updates = result.actions[result.actions["op"] == "update"]
    assert updates[["side", "crm_id", "rule", "fields"]].values.tolist() == [["outlook", "C2", "R8", "first_name"]]
    assert result.snapshots["crm_id"].tolist() == ["C2"]


def test_an_edit_in_the_middle_of_a_big_quiet_set_is_planned():
    """At scale the shortcuts are taken (fields None on every side and in every snapshot
    skipped, the Outlook side gathered block by block in the mirror's shuffled order, the
    links' rows handed over from the look-ups): an edit on either side among thousands
    of quiet pairs, a one-character change in a field set on only one row, a pair whose
    tag is missing and whose email is blank (R7a), are each found, and nothing else."""
    block = 256
    n = 3 * block + 17
    values = {"first_name": "Ann", "last_name": "Lee", "email1": "a@x.com"}
    crm_rows, out_rows, link_rows_ = [], [], []
    for i in range(n):
        c, o, lk = linked(f"C{i:05d}", f"O{i:05d}", **values)
        crm_rows.append(c)
        out_rows.append(o)
        link_rows_.append(lk)
    mid, late, rare, untagged = n // 2, n - 5, 2 * block + 3, 11
    crm_rows[mid]["first_name"] = "Anna"  # a CRM edit (R8)
    out_rows[late]["job_title"] = "Dev"  # an Outlook edit in a field no other row holds
    for rows_ in (crm_rows, out_rows, link_rows_):  # a field only one pair holds, then edited in Outlook
        rows_[rare]["spouse"] = "Bo"
    out_rows[rare]["spouse"] = "Bob"
    for rows_ in (crm_rows, out_rows, link_rows_):  # no email: R7 could not find the pair again
        rows_[untagged]["email1"] = " "
    out_rows[untagged]["crm_tag"] = None
    order = np.random.default_rng(7).permutation(n)
    inputs = plan_inputs(crm_rows, [out_rows[i] for i in order], link_rows_)
    inputs = replace(inputs, link_rows=link_rows(inputs.crm, inputs.outlook, inputs.links))
    assert candidate_lookups(inputs.outlook, inputs.links, inputs.link_rows) == ([], [])
    with patch.object(merge, "SAME_BLOCK", block):
        result = plan_cycle(inputs, PlanSettings())
    got = sorted(zip(result.actions["side"], result.actions["op"], result.actions["crm_id"],
                     result.actions["fields"].fillna(""), strict=True))
    assert got == sorted([
        ("outlook", "update", f"C{mid:05d}", "first_name"),
        ("crm", "update", f"C{late:05d}", "job_title"),
        ("crm", "update", f"C{rare:05d}", "spouse"),
        ("outlook", "update", f"C{untagged:05d}", ""),  # the tag alone (R7a)
    ])
    pd.testing.assert_frame_equal(result.actions, plan_every_pair(inputs, PlanSettings()).actions)


def test_rows_found_for_other_frames_are_not_used():
    """``PlanInputs.link_rows`` counts only for the very frames it was found in: rows of
    an earlier read (another order of the same contacts) are looked up again."""
    same = {"first_name": "Ann", "email1": "ann@x.com"}
    pairs = [linked("C1", "O1", **same), linked("C2", "O2", **{**same, "email1": "b@x.com"})]
    before = plan_inputs([p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs])
    edited = [pairs[1][1], {**pairs[0][1], "first_name": "Anne"}]  # Outlook read in another order
    now = plan_inputs([p[0] for p in pairs], edited, [p[2] for p in pairs])
    stale = link_rows(before.crm, before.outlook, before.links)
    assert not stale.fits(now.crm, now.outlook, now.links)
    result = plan_cycle(replace(now, link_rows=stale), PlanSettings())
    assert result.actions[["side", "crm_id", "fields"]].values.tolist() == [["crm", "C1", "first_name"]]
