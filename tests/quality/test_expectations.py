"""The GX suites and runner (expectations/): same verdict as contactsync.quality, Data Docs.

GX costs seconds to import and ~2 s per validation, so these tests are few and import it
lazily (through the runner, on first validate).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from contactsync import model, quality
from contactsync.plan.schema import ACTION_COLUMNS
from expectations import build_suites


def test_committed_suites_equal_what_build_suites_generates() -> None:
    built = build_suites.build()
    assert sorted(built) == sorted(build_suites.SUITE_NAMES)
    for name, suite in built.items():
        committed = (build_suites.SUITES_DIR / f"{name}.json").read_text(encoding="utf-8")
        assert committed == build_suites.render(suite), (
            f"{name}.json is stale: run python -m expectations.build_suites"
        )


def test_r19_suites_carry_every_crm_limit() -> None:
    suite = json.loads((build_suites.SUITES_DIR / "outlook_contacts.json").read_text())
    limits = {
        e["kwargs"]["column"]: e["kwargs"]["max_value"]
        for e in suite["expectations"]
        if e["type"] == "expect_column_value_lengths_to_be_between"
    }
    assert limits == model.CRM_LENGTHS


@pytest.fixture(scope="module")
def runner():
    from expectations import runner

    runner._gx()  # import GX and make the context once, in setup (~4-10 s)
    return runner


def test_gx_accepts_every_committed_expectation(runner) -> None:
    # GX logs and drops an expectation it cannot parse: the counts must match
    for name in build_suites.SUITE_NAMES:
        data = json.loads((build_suites.SUITES_DIR / f"{name}.json").read_text())
        assert len(runner.load_suite(name).expectations) == len(data["expectations"])


def _outlook() -> pd.DataFrame:
    rows = [
        {"outlook_id": "ok-plain", "first_name": "Anna", "email1": "anna@example.com",
         "birthday": "1980-05-04", "street": "Main St 1\r\nBack house"},
        {"outlook_id": "ok-unicode", "first_name": "👩‍👩‍👧‍👦 Zoë", "last_name": "שלום",
         "job_title": "Robert'); DROP TABLE CONTACT;--", "company": "<b>ACME</b> & \"Co\"",
         "email1": "josé+news@bücher.de", "email2": "", "city": "e\u0301le\u0300ve"},
        {"outlook_id": "ok-email-only", "email1": "  x@example.org "},
        {"outlook_id": "bad-long", "last_name": "L" * 33},
        {"outlook_id": "bad-email", "last_name": "B", "email2": "b@example"},
        {"outlook_id": "bad-noname", "job_title": "Boss"},
        {"outlook_id": "bad-birthday", "last_name": "B", "birthday": "2001-02-29"},
        {"outlook_id": "bad-old", "last_name": "B", "birthday": "1604-03-01"},
        {"outlook_id": "bad-street", "last_name": "B", "street": "1\n2\n3\n4\n5"},
        {"outlook_id": "bad-control", "last_name": "B\x07"},
    ]
    return model.conform(pd.DataFrame(rows), model.OUTLOOK_COLUMNS)


def test_r19_gx_finds_exactly_the_bad_rows_and_agrees_with_quality(runner) -> None:
    frame = _outlook()
    outcome = runner.validate(frame, "outlook_contacts", id_column="outlook_id")
    bad = {i for i in frame["outlook_id"] if i.startswith("bad-")}
    assert not outcome.success
    assert outcome.failed_ids() == bad
    assert list(outcome.failures.columns) == list(runner.FAILURE_COLUMNS)
    long = outcome.failures[outcome.failures["record_id"] == "bad-long"]
    assert long["column"].tolist() == ["last_name"]
    assert "CONTACT.LASTNAME holds (32)" in long["reason"].iloc[0]
    problems = quality.record_problems(frame, side="outlook", id_column="outlook_id")
    assert quality.quarantine_ids(problems) == bad
    assert outcome.statistics["evaluated_expectations"] > 40


def test_r19_gx_plan_suite_reports_action_ids(runner) -> None:
    plan = model.conform(pd.DataFrame([
        {"action_id": "a-ok", "side": "crm", "op": "update", "rule": "R8",
         "crm_id": "CDEMOA000001", "outlook_id": "o1", "fields": "city", "city": "Köln",
         "job_title": "t" * 99},  # not written: not checked
        {"action_id": "a-long", "side": "crm", "op": "update", "rule": "R8",
         "crm_id": "CDEMOA000002", "outlook_id": "o2", "fields": "job_title",
         "job_title": "t" * 65},
        {"action_id": "a-id", "side": "outlook", "op": "update", "rule": "R8",
         "crm_id": "C12", "outlook_id": "o3", "fields": ""},
        {"action_id": "a-noname", "side": "crm", "op": "create", "rule": "R10a",
         "outlook_id": "o4", "new_key": "new:o4", "fields": "job_title", "job_title": "x"},
    ]), ACTION_COLUMNS)
    outcome = runner.validate(plan, "plan", id_column="action_id")
    assert outcome.failed_ids() == {"a-long", "a-id", "a-noname"}
    assert set(quality.plan_problems(plan)["action_id"]) == {"a-long", "a-id", "a-noname"}


def test_r19_data_docs_are_written(runner, tmp_path: Path) -> None:
    crm = model.conform(
        pd.DataFrame({"crm_id": ["CDEMOA000001", "CDEMOA000002"], "last_name": ["A", "B" * 40]}),
        model.CRM_COLUMNS,
    )
    docs = tmp_path / "data_docs"
    outcome = runner.validate(crm, "crm_contacts", id_column="crm_id", data_docs_dir=docs)
    assert outcome.failed_ids() == {"CDEMOA000002"}
    assert outcome.data_docs_index == docs.resolve() / "index.html"
    assert "crm_contacts" in outcome.data_docs_index.read_text(encoding="utf-8")
    # Newest page = this validation (GX's one context per process may hold earlier ones).
    pages = sorted((docs / "validations" / "crm_contacts").rglob("*.html"))
    page = pages[-1].read_text(encoding="utf-8")
    assert "last_name" in page and "Unsuccessful Expectations" in page
