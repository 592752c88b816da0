"""Generate the Great Expectations suites (``suites/*.json``) from the canonical model.

The limits live in ``contactsync.model`` and the patterns in ``contactsync.quality`` (which
decides quarantine, R19); the suites say the same checks declaratively so Data Docs can
show them. Generating them keeps the three from drifting; a test compares the committed
JSON with this output. Run ``python -m expectations.build_suites`` after changing a limit.

The JSON is what GX 1.x ``ExpectationSuite.to_json_dict()`` writes (name, id,
expectations with type/kwargs/meta/severity, meta, notes), built here without importing
GX so that generating and checking the suites costs nothing.

Two checks need a derived column that the runner adds before validating
(``expectations.runner``): ``has_name_or_email`` (R19 "no name at all": a first name, a
last name or an email is set; always True for plan rows other than creates). In the plan,
values an action does not write (not in its ``fields``) are blanked first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from contactsync import quality
from contactsync.model import (
    CRM_ID,
    CRM_LENGTHS,
    EMAIL_FIELDS,
    FIELDS,
    OUTLOOK_ID,
)
from contactsync.plan.schema import OPERATIONS, SIDES

SUITES_DIR = Path(__file__).with_name("suites")
SUITE_NAMES: tuple[str, ...] = ("crm_contacts", "outlook_contacts", "plan")
#: The derived column of R19 "no name at all" (added by the runner).
HAS_NAME_OR_EMAIL = "has_name_or_email"
#: The id column each suite identifies failing rows by.
ID_COLUMNS: dict[str, str] = {
    "crm_contacts": CRM_ID,
    "outlook_contacts": OUTLOOK_ID,
    "plan": "action_id",
}


def _exp(kind: str, reason: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "kwargs": kwargs,
        "meta": {"rule": quality.RULE, "reason": reason},
        "severity": "critical",
    }


def field_expectations(source: str) -> list[dict[str, Any]]:
    """The per-field checks of quality.record_problems; ``source`` is where to fix a value."""
    out: list[dict[str, Any]] = []
    for field in FIELDS:
        column = quality.CRM_COLUMN_NAMES[field]
        if field in CRM_LENGTHS:
            limit = CRM_LENGTHS[field]
            out.append(
                _exp(
                    "expect_column_value_lengths_to_be_between",
                    f"{field} is longer than CRM {column} holds ({limit}): shorten it in {source}",
                    column=field,
                    max_value=limit,
                )
            )
        if field == "street":
            out.append(
                _exp(
                    "expect_column_values_to_match_regex",
                    f"street has more than {quality.STREET_MAX_LINES} lines or a line longer "
                    f"than {quality.STREET_LINE_LENGTH} (CRM {column}): fix it in {source}",
                    column=field,
                    regex=quality.STREET_PATTERN,
                )
            )
        pattern = quality.STREET_CONTROL_PATTERN if field == "street" else quality.CONTROL_PATTERN
        out.append(
            _exp(
                "expect_column_values_to_not_match_regex",
                f"{field} contains a control character: remove it in {source}",
                column=field,
                regex=pattern,
            )
        )
        if field in EMAIL_FIELDS:
            out.append(
                _exp(
                    "expect_column_values_to_match_regex",
                    f"{field} is not a valid email address (needs one @, no spaces and a dot "
                    f"in the domain): correct it in {source}",
                    column=field,
                    regex=quality.EMAIL_PATTERN,
                )
            )
        if field == "birthday":
            out.append(
                _exp(
                    "expect_column_values_to_match_regex",
                    f"birthday is not a date YYYY-MM-DD from {quality.BIRTHDAY_MIN} (CRM "
                    f"{column} is a SQL Server datetime): correct it in {source}",
                    column=field,
                    regex=quality.BIRTHDAY_RANGE_PATTERN,
                )
            )
            out.append(
                _exp(
                    "expect_column_values_to_match_strftime_format",
                    f"birthday is not a calendar date: correct it in {source}",
                    column=field,
                    strftime_format="%Y-%m-%d",
                )
            )
    return out


def _id_expectations(column: str, *, crm_format: bool) -> list[dict[str, Any]]:
    out = [
        _exp(
            "expect_column_values_to_not_be_null",
            f"{column} is missing: the record cannot be identified",
            column=column,
        ),
        _exp(
            "expect_column_values_to_be_unique",
            f"{column} appears more than once: duplicate key",
            column=column,
        ),
    ]
    if crm_format:
        out.append(
            _exp(
                "expect_column_values_to_match_regex",
                f"{column} is not a 12-character CRM id (char(12))",
                column=column,
                regex=quality.CRM_ID_PATTERN,
            )
        )
    return out


def _no_name(reason: str) -> dict[str, Any]:
    return _exp(
        "expect_column_values_to_be_in_set",
        reason,
        column=HAS_NAME_OR_EMAIL,
        value_set=[True],
    )


def _suite(name: str, expectations: list[dict[str, Any]], notes: str) -> dict[str, Any]:
    return {
        "name": name,
        "id": None,
        "expectations": expectations,
        "meta": {"generated_by": "expectations/build_suites.py", "rule": quality.RULE},
        "notes": notes,
    }


def build() -> dict[str, dict[str, Any]]:
    """All suites by name, as JSON-ready dicts."""
    no_name = "record has no name at all (no first name, last name or email): add one in {}"
    crm = _suite(
        "crm_contacts",
        _id_expectations(CRM_ID, crm_format=True)
        + field_expectations("the CRM")
        + [_no_name(no_name.format("the CRM"))],
        "R19 checks of the extracted CRM frame (model.CRM_COLUMNS).",
    )
    outlook = _suite(
        "outlook_contacts",
        _id_expectations(OUTLOOK_ID, crm_format=False)
        + field_expectations("Outlook")
        + [_no_name(no_name.format("Outlook"))],
        "R19 checks of the extracted Outlook frame (model.OUTLOOK_COLUMNS).",
    )
    operations = sorted({op for ops in OPERATIONS.values() for op in ops})
    plan_checks = _id_expectations("action_id", crm_format=False) + [
        _exp(
            "expect_column_values_to_be_in_set",
            "side is not one of the two systems",
            column="side",
            value_set=list(SIDES),
        ),
        _exp(
            "expect_column_values_to_be_in_set",
            "op is not a known operation",
            column="op",
            value_set=operations,
        ),
        _exp(
            "expect_column_values_to_not_be_null",
            "rule is missing: every action names its rule",
            column="rule",
        ),
    ]
    for column in ("crm_id", "account_id"):
        plan_checks.append(
            _exp(
                "expect_column_values_to_match_regex",
                f"{column} is not a 12-character CRM id (char(12))",
                column=column,
                regex=quality.CRM_ID_PATTERN,
            )
        )
    plan_checks += [
        _exp(
            "expect_column_values_to_match_regex",
            "new_key does not start with 'new:'",
            column="new_key",
            regex="^new:",
        ),
        _exp(
            "expect_column_values_to_match_regex",
            "account_key does not start with 'acct:'",
            column="account_key",
            regex="^acct:",
        ),
        _exp(
            "expect_column_value_lengths_to_be_between",
            f"account_name is longer than CRM ACCOUNT.ACCOUNT holds "
            f"({quality.ACCOUNT_NAME_LENGTH}): shorten the company",
            column="account_name",
            max_value=quality.ACCOUNT_NAME_LENGTH,
        ),
    ]
    plan = _suite(
        "plan",
        plan_checks
        + field_expectations("the side it comes from")
        + [_no_name("a create has no name at all (no first name, last name or email)")],
        "R19 checks of the action frame (plan.schema.ACTION_COLUMNS); values an action "
        "does not write are blanked before validating.",
    )
    return {"crm_contacts": crm, "outlook_contacts": outlook, "plan": plan}


def render(suite: dict[str, Any]) -> str:
    """The committed text of a suite (stable: sorted keys would reorder GX's layout)."""
    return json.dumps(suite, indent=2, ensure_ascii=False) + "\n"


def write(directory: Path = SUITES_DIR) -> list[Path]:
    """Write every suite; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, suite in build().items():
        path = directory / f"{name}.json"
        path.write_text(render(suite), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write(Path(sys.argv[1]) if len(sys.argv) > 1 else SUITES_DIR):
        print(p)
