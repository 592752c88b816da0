"""R19: record_problems / plan_problems decide quarantine; valid data passes untouched."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.speed_floors import outlook_rows
from contactsync import model, quality
from contactsync.plan.schema import ACTION_COLUMNS


def outlook_frame(rows: list[dict]) -> pd.DataFrame:
    base = {"first_name": "Anna", "last_name": "Berg", "email1": "anna@example.com"}
    return model.conform(
        pd.DataFrame([{**base, "outlook_id": f"o{i}", **r} for i, r in enumerate(rows)]),
        model.OUTLOOK_COLUMNS,
    )


def problems_of(rows: list[dict], side: str = "outlook") -> pd.DataFrame:
    frame = outlook_frame(rows)
    return quality.record_problems(frame, side=side, id_column="outlook_id")


def one_problem(row: dict) -> pd.Series:
    p = problems_of([row])
    assert len(p) == 1, p.to_dict("records")
    got = p.iloc[0]
    assert got["rule"] == "R19"
    assert got["record_id"] == "o0"
    return got


def test_r19_long_value_names_field_column_limit_and_fix() -> None:
    got = one_problem({"job_title": "x" * 70})
    assert got["field"] == "job_title"
    assert got["reason"] == (
        "job_title is 70 characters; CRM CONTACT.TITLE holds 64: shorten it in Outlook"
    )
    assert got["value"].endswith("…")


@pytest.mark.parametrize("field", sorted(model.CRM_LENGTHS))
def test_r19_every_field_limit_is_enforced_exactly(field: str) -> None:
    limit = model.CRM_LENGTHS[field]
    at_limit = "a@b.co".rjust(limit, "x") if field in model.EMAIL_FIELDS else "y" * limit
    over = "x" + at_limit
    assert problems_of([{field: at_limit}]).empty
    got = one_problem({field: over})
    assert got["field"] == field
    assert f"is {limit + 1} characters" in got["reason"] and f"holds {limit}" in got["reason"]


def test_r19_crm_side_reason_says_fix_it_in_the_crm() -> None:
    frame = model.conform(
        pd.DataFrame([{"crm_id": "CDEMOA000001", "last_name": "L" * 33}]), model.CRM_COLUMNS
    )
    p = quality.record_problems(frame, side="crm", id_column="crm_id")
    assert p["reason"].tolist() == [
        "last_name is 33 characters; CRM CONTACT.LASTNAME holds 32: shorten it in the CRM"
    ]


def test_r19_five_line_street_is_quarantined() -> None:
    got = one_problem({"street": "1\n2\n3\n4\n5"})
    assert got["field"] == "street"
    assert "5 lines" in got["reason"] and "holds 4" in got["reason"]


def test_r19_four_lines_with_crlf_and_trailing_breaks_are_fine() -> None:
    assert problems_of([{"street": "1\r\n2\r\n3\r\n4\r\n\r\n"}]).empty


def test_r19_long_street_line_names_the_address_column() -> None:
    got = one_problem({"street": "Main St 1\n" + "z" * 65})
    assert "street line 2 is 65 characters" in got["reason"]
    assert "ADDRESS.ADDRESS2 holds 64" in got["reason"]


@pytest.mark.parametrize(
    "email",
    ["anna berg@example.com", "anna@example", "anna@@example.com", "a@b@example.com",
     "@example.com", "anna@.example.com", "anna@example..com", "Anna <anna@example.com>"],
)
def test_r19_invalid_email_is_quarantined(email: str) -> None:
    got = one_problem({"email2": email})
    assert got["field"] == "email2"
    assert "not a valid email address" in got["reason"] and "Outlook" in got["reason"]


@pytest.mark.parametrize(
    "email",
    ["anna.berg+news@example.com", "o'brien@example.ie", "josé@bücher.de",
     "用户@例子.广告", "  anna@Example.COM  ", "x_y-z@sub.mail.example.co.uk"],
)
def test_r19_real_addresses_pass(email: str) -> None:
    assert problems_of([{"email1": email}]).empty


def test_r19_duplicate_emails_inside_one_record_are_fine() -> None:
    same = "anna@example.com"
    assert problems_of([{"email1": same, "email2": same, "email3": same.upper()}]).empty


def test_r19_no_name_at_all() -> None:
    got = one_problem({"first_name": None, "last_name": "  ", "email1": None})
    assert got["field"] is None
    assert "no name at all" in got["reason"]


@pytest.mark.parametrize("row", [{"first_name": None, "last_name": None},
                                 {"first_name": None, "email1": None},
                                 {"last_name": None, "email1": None}])
def test_r19_a_name_or_an_email_is_enough(row: dict) -> None:
    assert problems_of([row]).empty


@pytest.mark.parametrize(
    ("birthday", "needle"),
    [("1980-13-01", "not a date"), ("2001-02-29", "not a date"), ("04/05/1980", "not a date"),
     ("1980-05-04T00:00:00Z", "not a date"), ("1604-05-04", "before 1753-01-01")],
)
def test_r19_bad_birthday(birthday: str, needle: str) -> None:
    got = one_problem({"birthday": birthday})
    assert got["field"] == "birthday" and needle in got["reason"]


@pytest.mark.parametrize("birthday", ["1753-01-01", "2000-02-29", "9999-12-31", "1980-05-04"])
def test_r19_valid_birthdays_pass(birthday: str) -> None:
    assert problems_of([{"birthday": birthday}]).empty


@pytest.mark.parametrize("char", ["\x00", "\x07", "\t", "\x1b", "\x7f", "\x85"])
def test_r19_control_character_is_quarantined(char: str) -> None:
    got = one_problem({"city": f"Ber{char}lin"})
    assert got["field"] == "city"
    assert f"U+{ord(char):04X}" in got["reason"]
    assert "\\" in got["value"]  # shown escaped in the report


def test_r19_line_break_outside_street_is_a_control_character() -> None:
    assert one_problem({"job_title": "Head\nof sales"})["field"] == "job_title"


@pytest.mark.parametrize(
    "text",
    ["👩‍👩‍👧‍👦 family", "שלום עולם", "مرحبا", "e\u0301le\u0300ve", "O'Brien \"Bob\"",
     "Robert'); DROP TABLE CONTACT;--", "<script>alert(1)</script>", "Zoë & Chloé",
     "\u200f\u202eRTL marks"],
)
def test_r19_valid_unicode_passes(text: str) -> None:
    assert problems_of([{"first_name": text[:32], "job_title": text, "city": text[:32]}]).empty


def test_r19_ids_missing_and_duplicate() -> None:
    frame = outlook_frame([{}, {}, {}])
    frame.loc[1, "outlook_id"] = "o0"
    frame.loc[2, "outlook_id"] = None
    p = quality.record_problems(frame, side="outlook", id_column="outlook_id")
    assert sorted(p["reason"].str.split(" ").str[2]) == ["missing:", "more", "more"]


def test_r19_crm_ids_must_have_12_characters() -> None:
    frame = model.conform(
        pd.DataFrame({"crm_id": ["CDEMOA000001", "CSHORT"], "last_name": ["A", "B"]}),
        model.CRM_COLUMNS,
    )
    p = quality.record_problems(frame, side="crm", id_column="crm_id")
    assert p["record_id"].tolist() == ["CSHORT"] and "12-character" in p["reason"].iloc[0]


def test_r19_several_problems_of_one_record_are_all_listed() -> None:
    p = problems_of([{"job_title": "x" * 65, "email1": "bad", "city": "a\x01"}])
    assert sorted(p["field"]) == ["city", "email1", "job_title"]
    assert quality.quarantine_ids(p) == {"o0"}


# --- the plan -----------------------------------------------------------------------------


def actions(rows: list[dict]) -> pd.DataFrame:
    base = {"rule": "R8", "reason": "test", "fields": ""}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    return model.conform(frame, ACTION_COLUMNS)


def test_r19_plan_checks_only_the_fields_an_action_writes() -> None:
    plan = actions([
        {"action_id": "a1", "side": "crm", "op": "update", "crm_id": "CDEMOA000001",
         "outlook_id": "o1", "fields": "job_title", "job_title": "t" * 65, "city": "c" * 40},
        {"action_id": "a2", "side": "crm", "op": "update", "crm_id": "CDEMOA000002",
         "outlook_id": "o2", "fields": "city", "job_title": "t" * 65, "city": "ok"},
    ])
    p = quality.plan_problems(plan)
    assert p[["action_id", "record_id", "field", "side"]].values.tolist() == [
        ["a1", "CDEMOA000001", "job_title", "crm"]
    ]
    assert p["reason"].iloc[0].endswith("shorten it in Outlook")


def test_r19_plan_outlook_writes_say_fix_it_in_the_crm() -> None:
    plan = actions([{"action_id": "a1", "side": "outlook", "op": "update",
                     "crm_id": "CDEMOA000001", "outlook_id": "o1", "fields": "email1",
                     "email1": "not-an-email"}])
    p = quality.plan_problems(plan)
    assert p["reason"].iloc[0].endswith("correct it in the CRM")


def test_r19_plan_create_without_name_and_bad_ids() -> None:
    plan = actions([
        {"action_id": "a1", "side": "crm", "op": "create", "outlook_id": "o1",
         "new_key": "new:o1", "fields": "job_title", "job_title": "Boss"},
        {"action_id": "a2", "side": "outlook", "op": "update", "crm_id": "C12",
         "outlook_id": "o2", "fields": ""},
        {"action_id": "a2", "side": "crm", "op": "update", "crm_id": "CDEMOA000003",
         "outlook_id": "o3", "fields": "", "account_id": "A1"},
    ])
    p = quality.plan_problems(plan)
    got = sorted(zip(p["action_id"], p["field"].fillna("-"), strict=True))
    assert got == [("a1", "-"), ("a2", "account_id"), ("a2", "action_id"),
                   ("a2", "action_id"), ("a2", "crm_id")]
    assert p.loc[p["field"].isna(), "record_id"].tolist() == ["new:o1"]


def test_r19_plan_account_name_limit() -> None:
    plan = actions([{"action_id": "a1", "side": "crm", "op": "create_account",
                     "account_key": "acct:" + "N" * 129, "account_name": "N" * 129}])
    p = quality.plan_problems(plan)
    assert p["reason"].tolist() == [
        "account_name is 129 characters; CRM ACCOUNT.ACCOUNT holds 128: "
        "shorten the company in Outlook"
    ]


def test_r19_quarantine_drops_every_action_of_the_pair_and_its_orphan_account() -> None:
    plan = actions([
        {"action_id": "acc", "side": "crm", "op": "create_account",
         "account_key": "acct:ACME", "account_name": "ACME"},
        {"action_id": "c1", "side": "crm", "op": "create", "outlook_id": "o1",
         "new_key": "new:o1", "account_key": "acct:ACME", "fields": "last_name,job_title",
         "last_name": "Berg", "job_title": "t" * 80},
        {"action_id": "l1", "side": "crm", "op": "link", "outlook_id": "o1", "new_key": "new:o1"},
        {"action_id": "g1", "side": "crm", "op": "group_add", "new_key": "new:o1"},
        {"action_id": "u2", "side": "outlook", "op": "update", "crm_id": "CDEMOA000002",
         "outlook_id": "o2", "fields": "city", "city": "Berlin"},
    ])
    problems = quality.plan_problems(plan)
    kept, out = quality.quarantine_actions(plan, problems)
    assert kept["action_id"].tolist() == ["u2"]
    assert sorted(out["action_id"]) == ["acc", "c1", "g1", "l1"]


def test_r19_quarantine_keeps_a_shared_account_and_uses_record_problems() -> None:
    plan = actions([
        {"action_id": "acc", "side": "crm", "op": "create_account",
         "account_key": "acct:ACME", "account_name": "ACME"},
        {"action_id": "c1", "side": "crm", "op": "create", "outlook_id": "o1",
         "new_key": "new:o1", "account_key": "acct:ACME", "fields": "last_name",
         "last_name": "Berg"},
        {"action_id": "c2", "side": "crm", "op": "create", "outlook_id": "o2",
         "new_key": "new:o2", "account_key": "acct:ACME", "fields": "last_name",
         "last_name": "Lund"},
        {"action_id": "u3", "side": "outlook", "op": "update", "crm_id": "CDEMOA000003",
         "outlook_id": "o3", "fields": "city", "city": "Oslo"},
    ])
    outlook = outlook_frame([{}, {"email1": "broken@"}])  # o1 is bad on extract
    crm = model.conform(pd.DataFrame([{"crm_id": "CDEMOA000003", "last_name": None,
                                        "first_name": None}]), model.CRM_COLUMNS)
    problems = pd.concat([
        quality.record_problems(outlook, side="outlook", id_column="outlook_id"),
        quality.record_problems(crm, side="crm", id_column="crm_id"),
    ])
    assert set(problems["record_id"]) == {"o1", "CDEMOA000003"}
    kept, out = quality.quarantine_actions(plan, problems)
    assert kept["action_id"].tolist() == ["acc", "c2"]
    assert sorted(out["action_id"]) == ["c1", "u3"]


def test_r19_clean_inputs_give_no_problems_and_keep_the_whole_plan() -> None:
    plan = actions([{"action_id": "a1", "side": "crm", "op": "update",
                     "crm_id": "CDEMOA000001", "outlook_id": "o1", "fields": "city",
                     "city": "Köln"}])
    problems = quality.plan_problems(plan)
    assert problems.empty and list(problems.columns) == list(quality.PROBLEM_COLUMNS)
    kept, out = quality.quarantine_actions(plan, problems)
    assert len(kept) == 1 and out.empty


def test_r19_record_problems_on_100k_rows_blame_only_the_bad_one() -> None:
    """At a first sync's size the checks still name the one bad record (its speed:
    bench/speed_floors.py record_problems_100k)."""
    frame = outlook_rows(100_000)
    p = quality.record_problems(frame, side="outlook", id_column="outlook_id")
    assert p["record_id"].tolist() == ["AAMk4242"]
    assert p["rule"].eq("R19").all() and p["field"].tolist() == ["email1"]


def test_r19_control_characters_are_blamed_on_the_right_rows() -> None:
    rows = [{"city": c} for c in ["\x00first", "👩‍👧 ok", "", "mid\x1bdle", "ok", "last\x7f"]]
    rows.append({"street": "a\r\nb"})  # CRLF is a line break, not a control character
    rows.append({"street": "a\rb"})  # a lone CR is
    p = problems_of(rows)
    assert sorted(zip(p["record_id"], p["field"], strict=True)) == [
        ("o0", "city"), ("o3", "city"), ("o5", "city"), ("o7", "street")
    ]
