"""A cycle's GX run merges the regex-like checks of one column into one expectation
(expectations.runner.merged_checks, issue 16 item 5): it must catch exactly what the
suites' one-expectation-per-check form catches, record by record and column by column."""

from __future__ import annotations

import pandas as pd
import pytest

from contactsync import model, quality
from tests.quality.test_expectations import _outlook


@pytest.fixture(scope="module")
def runner():
    from expectations import runner

    runner._gx()
    return runner


def _frame() -> pd.DataFrame:
    extra = pd.DataFrame([
        {"outlook_id": "bad-long-and-control", "last_name": "L" * 33 + "\x07"},  # fails two merged checks
        {"outlook_id": "bad-long-email", "last_name": "E", "email1": "e" * 120 + "@example.com"},
        {"outlook_id": "bad-long-street-line", "last_name": "S", "street": "1 " + "x" * 70},
        {"outlook_id": "bad-lone-cr", "last_name": "S", "street": "Main St 1\rBack"},
        {"outlook_id": "bad-trailing-newline", "last_name": "N\n"},  # `$` would let it pass; `\Z` does not
        {"outlook_id": "ok-exactly-32", "last_name": "L" * 32, "street": "a\nb\nc\nd\n"},
        {"outlook_id": "bad-email-control", "last_name": "C", "email1": "c\x01@example.com"},
    ])
    return model.conform(pd.concat([_outlook(), extra], ignore_index=True), model.OUTLOOK_COLUMNS)


def test_merged_checks_fail_exactly_the_records_and_columns_the_suite_fails(runner) -> None:
    frame = _frame()
    full = runner.validate(frame, "outlook_contacts", id_column="outlook_id")  # one expectation per check
    bad = {i for i in frame["outlook_id"] if i.startswith("bad-")}
    assert full.failed_ids() == bad
    assert quality.quarantine_ids(quality.record_problems(frame, side="outlook", id_column="outlook_id")) == bad
    for k, record in enumerate(frame["outlook_id"]):
        (cycle,) = runner.validate_many([(frame.iloc[[k]], "outlook_contacts", "outlook_id")])
        blamed = set(full.failures.loc[full.failures["record_id"] == record, "column"])
        assert cycle.success == (record not in bad), record
        assert set(cycle.failures["column"]) == blamed, record
    (both,) = runner.validate_many([(frame[frame["outlook_id"] == "bad-long-and-control"], "outlook_contacts",
                                     "outlook_id")])
    assert both.failure_count == 1  # one failing value, whatever the number of its problems
    assert "control character" in both.failures["reason"].iloc[0] and "(32)" in both.failures["reason"].iloc[0]


def test_a_cycle_pays_for_fewer_expectations_than_checks(runner) -> None:
    frame = _frame()
    prepared = runner.prepare(frame, "outlook_contacts")
    active = runner.active_checks("outlook_contacts", prepared)
    merged = runner.merged_checks(active)
    assert len(merged) < 0.7 * len(active)
    (cycle,) = runner.validate_many([(frame, "outlook_contacts", "outlook_id")])
    assert cycle.statistics["evaluated_expectations"] == len(merged)
