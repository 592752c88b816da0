"""The Great Expectations suites, built with GX's own expectation classes from the R19
check records of ``contactsync.quality.checks`` (the same records the quarantine runs).

Each :class:`~contactsync.quality.checks.Check` becomes one GX expectation (two tests,
``date`` and ``date_from``, are GX's strftime and regex checks); its ``statement`` is the
expectation's ``meta.reason``, so Data Docs say what the quarantine says. The suites are
built in memory by the runner; ``suites/*.json`` is their rendering, committed so a
review shows what changed (``python -m expectations.build_suites`` rewrites it; a test
fails when it is stale).

GX is imported inside :func:`build` only: importing it costs seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from contactsync.quality.checks import (
    HAS_NAME_OR_EMAIL,
    RULE,
    SUITE_SOURCES,
    SUITES,
    Check,
)

SUITES_DIR = Path(__file__).with_name("suites")
SUITE_NAMES: tuple[str, ...] = tuple(SUITES)
#: The id column each suite identifies failing rows by.
ID_COLUMNS: dict[str, str] = {name: id_column for name, (id_column, _) in SUITES.items()}
_NOTES = {
    "crm_contacts": "R19 checks of the extracted CRM frame (model.CRM_COLUMNS).",
    "outlook_contacts": "R19 checks of the extracted Outlook frame (model.OUTLOOK_COLUMNS).",
    "plan": "R19 checks of the action frame (plan.schema.ACTION_COLUMNS); values an action "
            "does not write are blanked before validating.",
}
__all__ = ["HAS_NAME_OR_EMAIL", "ID_COLUMNS", "SUITES_DIR", "SUITE_NAMES", "build", "expectation"]


def expectation(check: Check, source: str) -> Any:
    """The GX expectation of one check; ``source`` is where the suite says to fix a value."""
    import great_expectations.expectations as gxe

    common: dict[str, Any] = {
        "column": check.column,
        "meta": {"rule": RULE, "reason": check.statement.format(where=source)},
        "severity": "critical",
    }
    if check.rows == "create_account":  # GX evaluates the rows the quarantine looks at
        common |= {"row_condition": 'op=="create_account"', "condition_parser": "pandas"}
    match check.test:
        case "length":
            return gxe.ExpectColumnValueLengthsToBeBetween(max_value=check.limit, **common)
        case "no_control":
            return gxe.ExpectColumnValuesToNotMatchRegex(regex=check.pattern, **common)
        case "match" | "max_lines" | "line_length" | "date_from":
            return gxe.ExpectColumnValuesToMatchRegex(regex=check.pattern, **common)
        case "date":
            return gxe.ExpectColumnValuesToMatchStrftimeFormat(strftime_format="%Y-%m-%d", **common)
        case "has_name":
            return gxe.ExpectColumnValuesToBeInSet(value_set=[True], **common)
        case "not_null" | "not_blank":  # GX sees a missing value (a blank one: the quarantine)
            return gxe.ExpectColumnValuesToNotBeNull(**common)
        case "unique":
            return gxe.ExpectColumnValuesToBeUnique(**common)
        case "in_set":
            return gxe.ExpectColumnValuesToBeInSet(value_set=list(check.values), **common)
    raise ValueError(f"no GX expectation for the R19 test {check.test!r}")  # pragma: no cover


def build() -> dict[str, Any]:
    """Every suite by name, as GX ExpectationSuites (not yet added to a context)."""
    import great_expectations as gx

    return {
        name: gx.ExpectationSuite(
            name=name,
            expectations=[expectation(c, SUITE_SOURCES[name]) for c in checks],
            meta={"generated_by": "expectations/build_suites.py", "rule": RULE},
            notes=_NOTES[name],
        )
        for name, (_, checks) in SUITES.items()
    }


def suite_columns(name: str) -> tuple[str, ...]:
    """The columns suite ``name`` checks (no GX needed)."""
    return tuple(dict.fromkeys(c.column for c in SUITES[name][1]))


def render(suite: Any) -> str:
    """The committed text of a suite: GX's own JSON form, without the GX version stamp
    (so a GX upgrade alone does not make the committed files stale)."""
    data = suite.to_json_dict()
    data["meta"].pop("great_expectations_version", None)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write(directory: Path = SUITES_DIR) -> list[Path]:
    """Write every suite's rendering; returns the paths written."""
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
