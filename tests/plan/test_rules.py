"""The planning rules R1, R4-R17, one small readable example each (spec/SYNC_RULES.md)."""

from __future__ import annotations

import pandas as pd
import pytest

from contactsync.plan import candidate_company_names, candidate_emails
from contactsync.plan.schema import OPERATIONS
from tests.plan.helpers import (
    account,
    crm,
    fields_of,
    filled,
    frame,
    link,
    linked,
    olk,
    ops,
    plan,
    rows,
    ts,
)

ANN = {"first_name": "Ann", "last_name": "Lee", "email1": "ann@x.com", "company": "Acme"}
BOB = {"first_name": "Bob", "last_name": "Ray", "email1": "bob@x.com", "company": "Acme"}


def one(result, side, op):
    found = rows(result, side, op)
    assert len(found) == 1, result.actions[["side", "op", "rule", "reason"]]
    return found.iloc[0]


# --- R4 ---------------------------------------------------------------------------------
def test_r4_unlinked_group_member_is_created_in_outlook_with_its_crm_id():
    result = plan([crm("C1", **ANN)], [], [])
    create = one(result, "outlook", "create")
    assert create["rule"] == "R4" and create["crm_id"] == "C1"
    assert filled(create) == ANN
    assert ops(result) == [("outlook", "create", "R4")]
    snap = result.snapshots.iloc[0]
    assert snap["crm_id"] == "C1" and snap["outlook_id"] is None and snap["email1"] == "ann@x.com"


def test_r4_nothing_is_created_in_outlook_when_direction_is_outlook_to_crm():
    assert plan([crm("C1", **ANN)], [], [], direction="outlook-to-crm").actions.empty


def test_r4_visible_contact_outside_the_group_is_not_created():
    assert plan([], [], [], candidates=[crm("C9", **ANN)]).actions.empty


# --- R5 ---------------------------------------------------------------------------------
def test_r5_unmatched_outlook_contact_is_created_in_crm_with_new_key_and_tag():
    result = plan([], [olk("O1", **ANN)], [], accounts=[account("A1", "Acme")],
                  tag_links="at-link")
    create = one(result, "crm", "create")
    assert create["new_key"] == "new:O1" and create["outlook_id"] == "O1"
    assert filled(create) == ANN
    tag = one(result, "outlook", "update")  # writes the CRM id tag once the id exists (R7a)
    assert tag["new_key"] == "new:O1" and tag["fields"] == ""
    snap = result.snapshots.iloc[0]
    assert (snap["new_key"], snap["outlook_id"], snap["status"]) == ("new:O1", "O1", "active")


def test_r5b_company_exactly_equal_to_a_visible_account_links_to_it():
    result = plan([], [olk("O1", **ANN)], [], accounts=[account("A1", "Acme")])
    create = one(result, "crm", "create")
    assert (create["rule"], create["account_id"], create["account_key"]) == ("R5b", "A1", None)
    assert rows(result, "crm", "create_account").empty


def test_r5b_is_case_sensitive_so_a_differently_cased_name_makes_a_new_account():
    result = plan([], [olk("O1", **{**ANN, "company": "ACME"})], [],
                  accounts=[account("A1", "Acme")])
    assert one(result, "crm", "create")["rule"] == "R5c"
    assert one(result, "crm", "create_account")["account_name"] == "ACME"


def test_r5b_several_equal_accounts_first_found_is_oldest_then_lowest_id():
    accounts = [account("A3", "Acme", created=5), account("A2", "Acme", created=1),
                account("A1", "Acme", created=1)]
    result = plan([], [olk("O1", **ANN)], [], accounts=accounts)
    assert one(result, "crm", "create")["account_id"] == "A1"


def test_r5c_one_new_account_per_distinct_company_shared_by_its_new_contacts():
    result = plan([], [olk("O1", **{**ANN, "company": "Initech"}),
                       olk("O2", **{**BOB, "company": "Initech"}),
                       olk("O3", first_name="Cy", company="Globex")], [])
    accounts = rows(result, "crm", "create_account")
    assert sorted(accounts["account_name"]) == ["Globex", "Initech"]
    assert set(accounts["rule"]) == {"R5c"}
    creates = rows(result, "crm", "create").set_index("outlook_id")
    assert creates.loc["O1", "account_key"] == creates.loc["O2", "account_key"] == "acct:Initech"
    assert creates.loc["O3", "account_key"] == "acct:Globex"
    # accounts are created before the contacts that refer to them
    assert list(result.actions["op"][:2]) == ["create_account", "create_account"]


def test_r5a_no_company_makes_an_account_named_first_last_which_flows_to_outlook():
    result = plan([], [olk("O1", first_name="Ann", last_name="Lee"),
                       olk("O2", last_name="Solo")], [])
    creates = rows(result, "crm", "create").set_index("outlook_id")
    assert creates.loc["O1", "account_name"] == "Ann Lee" and creates.loc["O1", "rule"] == "R5a"
    assert creates.loc["O2", "account_name"] == "Solo"  # only the part that exists
    assert creates.loc["O1", "company"] == "Ann Lee"
    updates = rows(result, "outlook", "update").set_index("outlook_id")
    assert fields_of(updates.loc["O1"]) == {"company": "Ann Lee"}  # R6: account name flows


def test_r10a_create_in_crm_off_reports_a_skip_and_writes_nothing():
    result = plan([], [olk("O1", **ANN)], [], create_in_crm=False)
    assert ops(result) == [("crm", "skip", "R10a")]
    assert result.snapshots.empty


def test_r10a_create_in_crm_off_still_links_existing_records_by_email():
    result = plan([crm("C1", **ANN)], [olk("O1", **ANN)], [], create_in_crm=False)
    assert one(result, "crm", "link")["rule"] == "R7"


def test_r5_no_crm_creates_when_direction_is_crm_to_outlook():
    assert plan([], [olk("O1", **ANN)], [], direction="crm-to-outlook").actions.empty


# --- R6 ---------------------------------------------------------------------------------
def test_r6_outlook_company_edit_is_not_written_to_crm_and_is_overwritten():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([c], [{**o, "company": "Other"}], [lk])
    assert rows(result, "crm", "update").empty
    update = one(result, "outlook", "update")
    assert fields_of(update) == {"company": "Acme"} and update["rule"] == "R6"


def test_r6_crm_account_name_flows_to_outlook():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([{**c, "company": "Acme Corp"}], [o], [lk])
    assert fields_of(one(result, "outlook", "update")) == {"company": "Acme Corp"}


# --- R7 ---------------------------------------------------------------------------------
def test_r7_any_email_matches_trimmed_and_case_insensitive():
    result = plan([crm("C1", first_name="Ann", email3=" Ann@X.com")],
                  [olk("O1", first_name="Ann", email2="ann@x.COM ")], [])
    link_row = one(result, "crm", "link")
    assert (link_row["crm_id"], link_row["outlook_id"], link_row["rule"]) == ("C1", "O1", "R7")
    assert rows(result, "outlook", "create").empty and rows(result, "crm", "create").empty


def test_r7_several_crm_contacts_share_the_email_the_exact_name_decides():
    result = plan([crm("C1", first_name="Ann", last_name="Lee", email1="team@x.com"),
                   crm("C2", first_name="Bob", last_name="Ray", email1="team@x.com")],
                  [olk("O1", first_name="Bob", last_name="Ray", email1="team@x.com")], [])
    assert one(result, "crm", "link")["crm_id"] == "C2"
    assert one(result, "outlook", "create")["crm_id"] == "C1"  # R4 for the other one


def test_r7_several_crm_contacts_and_no_unique_name_means_no_match():
    result = plan([crm("C1", first_name="Ann", last_name="Lee", email1="team@x.com"),
                   crm("C2", first_name="Ann", last_name="Lee", email1="team@x.com")],
                  [olk("O1", first_name="Ann", last_name="Lee", email1="team@x.com")], [])
    assert rows(result, "crm", "link").empty
    assert len(rows(result, "outlook", "create")) == 2 and len(rows(result, "crm", "create")) == 1


def test_r7_several_outlook_contacts_share_the_email_the_oldest_matches():
    result = plan([crm("C1", **ANN)],
                  [olk("O2", created=5, **ANN), olk("O9", created=1, **ANN),
                   olk("O1", created=5, **ANN)], [])
    assert one(result, "crm", "link")["outlook_id"] == "O9"
    assert sorted(rows(result, "crm", "create")["outlook_id"]) == ["O1", "O2"]


def test_r7_ties_in_creation_time_go_to_the_lowest_id():
    result = plan([crm("C1", **ANN)], [olk("O2", **ANN), olk("O1", **ANN)], [])
    assert one(result, "crm", "link")["outlook_id"] == "O1"


def test_r7_a_linked_record_is_never_matched_again():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([c], [o, olk("O2", **ANN)], [lk])
    assert rows(result, "crm", "link").empty
    assert one(result, "crm", "create")["outlook_id"] == "O2"


def test_r7_a_match_outside_the_group_is_linked_and_added_to_the_group():
    result = plan([], [olk("O1", **ANN)], [], candidates=[crm("C7", **ANN)], tag_links="at-link")
    assert ops(result) == [("crm", "link", "R7"), ("crm", "group_add", "R7"),
                           ("outlook", "update", "R7")]  # the update writes the tag
    assert one(result, "crm", "group_add")["crm_id"] == "C7"


def test_r7_new_match_merge_fills_empty_fields_and_reports_differences_as_conflicts():
    result = plan([crm("C1", modified=10, first_name="Ann", email1="ann@x.com",
                       job_title="CEO", company="Acme")],
                  [olk("O1", modified=5, first_name="Ann", email1="ann@x.com",
                       mobile_phone="555", job_title="Boss", company="Acme")], [])
    assert fields_of(one(result, "crm", "update")) == {"mobile_phone": "555"}
    assert fields_of(one(result, "outlook", "update")) == {"job_title": "CEO"}
    conflict = result.conflicts.iloc[0]
    assert (conflict["field"], conflict["crm_value"], conflict["outlook_value"],
            conflict["winner"]) == ("job_title", "CEO", "Boss", "crm")
    snap = result.snapshots.iloc[0]
    assert (snap["mobile_phone"], snap["job_title"]) == ("555", "CEO")


def test_r7_new_match_beside_linked_pairs_never_blanks_a_field():
    """Regression: the empty snapshot of a new match must be empty, not NaN."""
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([c, crm("C2", modified=1, **BOB, job_title="CEO", work_phone="555")],
                  [o, olk("O2", modified=9, **{**BOB, "company": None})], [lk])
    assert result.conflicts.empty
    assert rows(result, "crm", "update").empty
    assert fields_of(one(result, "outlook", "update")) == {
        "job_title": "CEO", "work_phone": "555", "company": "Acme"}


# --- R7a --------------------------------------------------------------------------------
def test_r7a_with_write_an_email_match_writes_nothing_to_outlook_when_values_agree():
    """Default tag_links: the tag of an R7 pair waits for the pair's next Outlook write,
    since R7 finds the pair again by email if the state store is lost."""
    result = plan([crm("C1", **ANN)], [olk("O1", **ANN)], [])
    assert ops(result) == [("crm", "link", "R7")]
    assert rows(result, "outlook").empty


def test_r7a_with_write_a_new_crm_contact_with_email_is_not_tagged_separately():
    result = plan([], [olk("O1", **ANN)], [], accounts=[account("A1", "Acme")])
    assert ops(result) == [("crm", "create", "R5b")]


def test_r7a_with_write_a_contact_without_email_is_tagged_at_once():
    """No email: after a lost state store only the tag could find the pair (R7a)."""
    no_mail = {k: v for k, v in ANN.items() if k != "email1"}
    result = plan([], [olk("O1", **no_mail)], [], accounts=[account("A1", "Acme")])
    tag = one(result, "outlook", "update")
    assert (tag["new_key"], tag["fields"], tag["rule"]) == ("new:O1", "", "R5b")
    c, o, lk = linked("C1", "O1", **no_mail)
    result = plan([c], [{**o, "crm_tag": None}], [lk])  # linked, lost its tag (or never had one)
    tag = one(result, "outlook", "update")
    assert (tag["crm_id"], tag["fields"], tag["rule"]) == ("C1", "", "R7a")


def test_r7a_with_write_a_copied_contact_carrying_another_contacts_tag_is_retagged():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([c], [{**o, "crm_tag": "C2"}], [lk])
    assert one(result, "outlook", "update")["crm_id"] == "C1"


def test_r7a_with_write_an_untagged_linked_pair_with_email_is_quiet():
    c, o, lk = linked("C1", "O1", **ANN)
    assert plan([c], [{**o, "crm_tag": None}], [lk]).actions.empty


def test_r7a_with_write_a_field_write_carries_the_tag():
    """The pair's first Outlook write is an update naming the CRM id: the writer adds the tag."""
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([{**c, "job_title": "CEO"}],
                  [{**o, "crm_tag": None}], [lk])
    upd = one(result, "outlook", "update")
    assert (upd["crm_id"], fields_of(upd)) == ("C1", {"job_title": "CEO"})


def test_r7a_tag_relinks_before_any_email_matching():
    result = plan([crm("C1", **ANN), crm("C2", **{**ANN, "email1": "other@x.com"})],
                  [olk("O1", tag="C2", **ANN)], [])
    link_row = one(result, "crm", "link")
    assert (link_row["crm_id"], link_row["rule"]) == ("C2", "R7a")
    assert one(result, "outlook", "create")["crm_id"] == "C1"


def test_r7a_tag_of_a_contact_that_is_not_visible_is_ignored():
    result = plan([], [olk("O1", tag="C404", **ANN)], [])
    assert one(result, "crm", "create")["outlook_id"] == "O1"


def test_r7a_tag_finds_a_visible_contact_outside_the_group():
    result = plan([], [olk("O1", tag="C7", first_name="Ann")], [],
                  candidates=[crm("C7", first_name="Ann")])
    assert ops(result) == [("crm", "link", "R7a"), ("crm", "group_add", "R7")]


# --- R8 ---------------------------------------------------------------------------------
def test_r8_a_crm_change_is_copied_to_outlook():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([{**c, "mobile_phone": "555"}], [o], [lk])
    update = one(result, "outlook", "update")
    assert update["rule"] == "R8" and fields_of(update) == {"mobile_phone": "555"}
    assert result.snapshots.iloc[0]["mobile_phone"] == "555"
    assert result.conflicts.empty


def test_r8_an_outlook_change_is_copied_to_crm():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([c], [{**o, "email1": "ann@new.com"}], [lk])
    update = one(result, "crm", "update")
    assert update["rule"] == "R8" and fields_of(update) == {"email1": "ann@new.com"}


def test_r8_a_cleared_field_is_a_change_too():
    c, o, lk = linked("C1", "O1", **ANN, city="Oslo")
    result = plan([c], [{**o, "city": "  "}], [lk])
    assert fields_of(one(result, "crm", "update")) == {"city": "  "}


def test_r8_both_changed_to_the_same_value_is_no_conflict_only_a_new_snapshot():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([{**c, "city": "Oslo"}], [{**o, "city": " Oslo"}], [lk])
    assert result.actions.empty and result.conflicts.empty
    assert result.snapshots.iloc[0]["city"] == "Oslo"


def test_r8_whitespace_and_email_case_are_not_changes():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([{**c, "email1": "ANN@x.com "}], [{**o, "first_name": "Ann  "}], [lk])
    assert result.actions.empty and result.snapshots.empty


# --- R9 ---------------------------------------------------------------------------------
def _conflict(policy: str, crm_minute: int, outlook_minute: int):
    c, o, lk = linked("C1", "O1", **ANN, job_title="Dev")
    return plan([{**c, "job_title": "Lead", "crm_modified": ts(crm_minute)}],
                [{**o, "job_title": "Head", "outlook_modified": ts(outlook_minute)}],
                [lk], conflict_policy=policy)


@pytest.mark.parametrize(
    ("policy", "crm_minute", "outlook_minute", "winner"),
    [("latest", 9, 5, "crm"), ("latest", 5, 9, "outlook"),
     ("crm", 5, 9, "crm"), ("outlook", 9, 5, "outlook")],
)
def test_r9_conflict_policy_picks_the_winner_and_records_both_values(
    policy, crm_minute, outlook_minute, winner
):
    result = _conflict(policy, crm_minute, outlook_minute)
    conflict = result.conflicts.iloc[0]
    assert conflict[["field", "snapshot_value", "crm_value", "outlook_value", "winner",
                     "policy", "rule"]].tolist() == [
        "job_title", "Dev", "Lead", "Head", winner, policy, "R9"]
    loser = "outlook" if winner == "crm" else "crm"
    update = one(result, loser, "update")
    assert update["rule"] == "R9"
    assert fields_of(update) == {"job_title": "Lead" if winner == "crm" else "Head"}
    assert rows(result, winner, "update").empty


def test_r9_latest_uses_the_crm_time_given_as_newest_of_contact_address_account():
    # crm.extract folds ADDRESS/ACCOUNT MODIFYDATE into crm_modified: a newer address wins
    result = _conflict("latest", 7, 6)
    assert result.conflicts.iloc[0]["winner"] == "crm"


# --- R10 --------------------------------------------------------------------------------
def test_r10_crm_to_outlook_overwrites_outlook_edits_and_never_writes_crm():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([{**c, "city": "Oslo"}], [{**o, "job_title": "Boss"}], [lk],
                  direction="crm-to-outlook")
    assert rows(result, "crm").empty
    update = one(result, "outlook", "update")
    assert fields_of(update) == {"city": "Oslo", "job_title": None} and update["rule"] == "R10"


def test_r10_outlook_to_crm_never_writes_outlook():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([{**c, "city": "Oslo"}], [{**o, "job_title": "Boss"}], [lk],
                  direction="outlook-to-crm")
    assert rows(result, "outlook").empty
    assert fields_of(one(result, "crm", "update")) == {"city": None, "job_title": "Boss"}


def test_r10_per_field_direction_applies_to_that_field_only():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([c], [{**o, "mobile_phone": "555", "city": "Oslo"}], [lk],
                  field_direction={"mobile_phone": "crm-to-outlook"})
    assert fields_of(one(result, "outlook", "update")) == {"mobile_phone": None}
    assert fields_of(one(result, "crm", "update")) == {"city": "Oslo"}


def test_r10_fields_not_in_the_map_are_not_synced():
    c, o, lk = linked("C1", "O1", **ANN)
    fields = tuple(f for f in lk if f in ANN)
    assert plan([c], [{**o, "city": "Oslo"}], [lk], fields=fields).actions.empty


def test_r1_a_new_match_with_a_read_only_contact_skips_the_outlook_values():
    result = plan([crm("C1", read_only=True, **ANN)], [olk("O1", **ANN, mobile_phone="555")], [])
    assert rows(result, "crm", "update").empty
    assert "mobile_phone" in one(result, "crm", "skip")["reason"]
    assert one(result, "crm", "link")["rule"] == "R7"


# --- R1 ---------------------------------------------------------------------------------
def test_r1_outlook_edits_of_a_read_only_contact_are_skipped_with_a_reason():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([{**c, "read_only": True, "city": "Oslo"}], [{**o, "job_title": "Boss"}],
                  [lk])
    assert rows(result, "crm", "update").empty
    skip = one(result, "crm", "skip")
    assert skip["rule"] == "R1" and "C1" in skip["reason"] and "job_title" in skip["reason"]
    assert fields_of(one(result, "outlook", "update")) == {"city": "Oslo"}  # CRM still flows
    # the skipped edit is not recorded as synced: it is reported again next cycle
    assert result.snapshots.iloc[0]["job_title"] is None


# --- R11-R15 ----------------------------------------------------------------------------
def test_r11_contact_gone_from_the_outlook_folder_leaves_the_group_and_is_unlinked():
    c, _, lk = linked("C1", "O1", **ANN)
    result = plan([c], [], [lk])
    assert ops(result) == [("crm", "group_remove", "R11"), ("crm", "unlink", "R11")]
    assert result.guard.crm_removals == 1 and result.guard.outlook_removals == 0


def test_r12_contact_out_of_the_group_deletes_the_outlook_copy_and_unlinks():
    _, o, lk = linked("C1", "O1", **ANN)
    result = plan([], [o], [lk], gone={"C1": True})
    assert ops(result) == [("outlook", "delete", "R12"), ("crm", "unlink", "R12")]
    assert one(result, "outlook", "delete")["outlook_id"] == "O1"


def test_r12_keep_copy_unlinks_and_remembers_the_pair_as_stopped():
    _, o, lk = linked("C1", "O1", **ANN)
    result = plan([], [o], [lk], gone={"C1": True}, keep_outlook_copy=True)
    assert ops(result) == [("crm", "unlink", "R12")]
    snap = result.snapshots.iloc[0]
    assert (snap["crm_id"], snap["outlook_id"], snap["status"]) == ("C1", "O1", "stopped")


def test_r12_a_stopped_pair_is_never_matched_while_the_crm_contact_is_out():
    _, o, lk = linked("C1", "O1", **ANN)
    stopped = {**lk, "status": "stopped"}
    result = plan([crm("C2", **ANN)], [{**o, "job_title": "x"}], [stopped],
                  candidates=[crm("C1", **ANN)])
    # O1 is not matched to C2 (same email) nor to C1; C2 is created in Outlook (R4)
    assert ops(result) == [("outlook", "create", "R4")]


def test_r12_a_stopped_pair_relinks_as_a_new_match_when_back_in_the_group():
    c, o, lk = linked("C1", "O1", **ANN)
    result = plan([{**c, "modified": 0}], [{**o, "job_title": "Boss"}],
                  [{**lk, "status": "stopped"}])
    assert one(result, "crm", "link")["rule"] == "R12"
    assert fields_of(one(result, "crm", "update")) == {"job_title": "Boss"}  # R7 merge
    assert result.snapshots.iloc[0]["status"] == "active"


def test_r12_a_relink_is_merged_as_a_new_match_without_the_old_snapshot():
    c, o, lk = linked("C1", "O1", **ANN, job_title="Dev")
    result = plan([{**c, "job_title": "Lead", "crm_modified": ts(9)}], [o],
                  [{**lk, "status": "stopped"}])
    conflict = result.conflicts.iloc[0]  # R7 merge: differing values follow R9
    assert (conflict["snapshot_value"], conflict["winner"]) == (None, "crm")
    assert fields_of(one(result, "outlook", "update")) == {"job_title": "Lead"}


def test_r12_a_stopped_pair_whose_copy_left_the_folder_is_forgotten():
    c, _, lk = linked("C1", "O1", **ANN)
    result = plan([c], [], [{**lk, "status": "stopped"}])
    assert ops(result) == [("outlook", "create", "R4"), ("crm", "unlink", "R12")]
    assert result.guard.crm_removals == 0  # not an active pair (R16)


def test_r13_deleted_in_crm_deletes_the_outlook_copy_even_with_keep_copy():
    _, o, lk = linked("C1", "O1", **ANN)
    result = plan([], [o], [lk], gone={"C1": False}, keep_outlook_copy=True)
    assert ops(result) == [("outlook", "delete", "R13"), ("crm", "unlink", "R13")]


def test_r13_outlook_to_crm_never_deletes_in_outlook_it_keeps_a_stopped_copy():
    _, o, lk = linked("C1", "O1", **ANN)
    result = plan([], [o], [lk], gone={"C1": False}, direction="outlook-to-crm")
    assert ops(result) == [("crm", "unlink", "R13")]
    assert result.snapshots.iloc[0]["status"] == "stopped"


def test_r14_crm_deleted_after_it_stopped_syncing_does_nothing_in_outlook():
    # R11 already unlinked the pair; the Outlook contact is elsewhere, the link is gone.
    assert plan([], [], [], gone={"C1": False}).actions.empty


def test_r11_both_sides_gone_only_unlinks():
    _, _, lk = linked("C1", "O1", **ANN)
    assert ops(plan([], [], [lk], gone={"C1": False})) == [("crm", "unlink", "R11")]


def test_r15_no_plan_ever_deletes_a_crm_row():
    assert "delete" not in OPERATIONS["crm"]
    c, o, lk = linked("C1", "O1", **ANN)
    _, o2, lk2 = linked("C2", "O2", **BOB)
    result = plan([c], [o2], [lk, lk2], gone={"C2": False})
    assert not ((result.actions["side"] == "crm") & (result.actions["op"] == "delete")).any()


# --- R16 --------------------------------------------------------------------------------
def _pairs(n: int):
    made = [linked(f"C{i:03}", f"O{i:03}", first_name=f"N{i}") for i in range(n)]
    return [m[0] for m in made], [m[1] for m in made], [m[2] for m in made]


def test_r16_guard_stops_when_more_than_the_share_and_the_minimum_would_go():
    c, o, lk = _pairs(50)
    result = plan(c, o[:38], lk)  # 12 gone from Outlook: 24 % > 20 % and 12 > 10
    assert result.guard.stopped and result.guard.crm_removals == 12
    assert result.guard.outlook_removals == 0 and "CRM" in result.guard.reason
    assert len(rows(result, "crm", "unlink")) == 12  # the plan is still returned


def test_r16_guard_passes_at_or_below_the_minimum_even_above_the_share():
    c, o, lk = _pairs(20)
    result = plan(c, o[:10], lk)  # 10 removals = 50 %, but not more than 10
    assert not result.guard.stopped


def test_r16_guard_counts_outlook_deletes_per_side():
    c, o, lk = _pairs(50)
    result = plan(c[:30], o, lk, gone={x["crm_id"]: True for x in c[30:]},
                  mass_change_share=0.5)
    assert result.guard.outlook_removals == 20 and not result.guard.stopped
    result = plan(c[:30], o, lk, gone={x["crm_id"]: True for x in c[30:]})
    assert result.guard.stopped and "Outlook" in result.guard.reason


# --- R17 --------------------------------------------------------------------------------
def test_r17_unchanged_input_plans_nothing():
    c, o, lk = _pairs(30)
    result = plan(c, o, lk)
    assert result.actions.empty and result.snapshots.empty and result.conflicts.empty
    assert result.summary().empty


# --- plan properties and lookups ---------------------------------------------------------
def test_action_ids_are_deterministic_and_unique():
    args = ([crm("C1", **ANN), crm("C3", first_name="Z")],
            [olk("O1", **ANN), olk("O2", **BOB)], [])
    first, second = plan(*args), plan(*args)
    assert first.actions["action_id"].tolist() == second.actions["action_id"].tolist()
    assert first.actions["action_id"].is_unique


def test_summary_counts_per_side_operation_and_rule():
    result = plan([], [olk("O1", **ANN), olk("O2", **BOB)], [])
    summary = result.summary().set_index(["side", "op", "rule"])["count"]
    assert summary[("crm", "create", "R5c")] == 2 and summary[("crm", "create_account", "R5c")] == 1


def test_lookups_name_only_unlinked_outlook_contacts():
    outlook = frame([olk("O1", email1=" Ann@X.com", email3="a2@x.com", company=" Acme "),
                     olk("O2", email1="linked@x.com", company="Linked Inc"),
                     olk("O3", email2="stop@x.com", company="Stopped")],
                    tuple(pd.Index(["outlook_id", "crm_tag", "outlook_modified",
                                    "outlook_created", "email1", "email2", "email3",
                                    "company"])))
    links = pd.DataFrame([link("C2", "O2"), link("C3", "O3", status="stopped")])
    assert candidate_emails(outlook, links) == ["a2@x.com", "ann@x.com"]
    assert candidate_company_names(outlook, links) == ["Acme"]
