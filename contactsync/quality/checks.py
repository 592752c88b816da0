"""The R19 checks as data: one list of records per frame, read by both the vectorised
quarantine (``contactsync.quality.evaluate``) and the Great Expectations suites
(``expectations.build_suites``, which maps each record to a GX expectation class).

A :class:`Check` says what must hold of one column (``test`` with its ``limit``,
``pattern`` or ``values``), on which rows of the plan, how Data Docs state it
(``statement``) and how the quarantine explains one failing value (``problem``). Both
texts name the field, the limit and what to do; ``{where}`` is the side to fix it in.
Limits come from the field registry (``model.FIELD_REGISTRY``), so a field's length is
stated once for the CRM schema, the load, the quarantine and GX.

The tests, and the GX expectation each becomes:

=============  ====================================================  ==========================
test           fails when                                            GX expectation
=============  ====================================================  ==========================
length         the value has more than ``limit`` characters          ValueLengthsToBeBetween
no_control     ``pattern`` (a control character) occurs              ValuesToNotMatchRegex
match          ``pattern`` does not match (blank field values pass)  ValuesToMatchRegex
max_lines      more than ``limit`` lines (trailing blank lines       ValuesToMatchRegex
               dropped, as the CRM load drops them)                  (``pattern``)
line_length    a line is longer than ``limit``                       ValuesToMatchRegex
date           not a calendar date ``YYYY-MM-DD``                    ValuesToMatchStrftimeFormat
date_from      a date before ``BIRTHDAY_MIN``                        ValuesToMatchRegex
has_name       no first name, last name or email                     ValuesToBeInSet (derived
                                                                     column, True)
not_null       the value is missing                                  ValuesToNotBeNull
unique         the value appears more than once                      ValuesToBeUnique
in_set         the value is not one of ``values``                    ValuesToBeInSet
not_blank      the value is missing or blank                         ValuesToNotBeNull
=============  ====================================================  ==========================
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from contactsync.model import (
    CRM_ID,
    CRM_LENGTHS,
    FIELD_REGISTRY,
    OUTLOOK_ID,
    Field,
)
from contactsync.plan.schema import OPERATIONS
from contactsync.vocab import SIDES

RULE = "R19"
Test = Literal[
    "length", "no_control", "match", "max_lines", "line_length", "date", "date_from",
    "has_name", "not_null", "unique", "in_set", "not_blank",
]
#: Which plan rows a check looks at: every row, rows whose ``fields`` list the column,
#: creates, or accounts to create.
Rows = Literal["all", "written", "creates", "create_account"]

#: The CRM column each canonical field is written to (model.FIELD_REGISTRY), for reasons.
CRM_COLUMN_NAMES: dict[str, str] = {f.name: f.crm_name for f in FIELD_REGISTRY}
ACCOUNT_NAME_LENGTH = CRM_LENGTHS["company"]  # ACCOUNT.ACCOUNT
CRM_ID_LENGTH = 12
#: The derived column of R19 "no name at all" (a first name, a last name or an email is
#: set), which the GX runner adds before validating.
HAS_NAME_OR_EMAIL = "has_name_or_email"

#: Plausible email: exactly one ``@``, no whitespace, a non-empty local part and a domain
#: with at least one dot and no empty label. Deliberately *not* RFC 5322: quoted local
#: parts and IP-literal domains are rejected (no mail client produces them for contacts),
#: while plus-addressing, unicode and IDN domains pass. Surrounding blanks are allowed.
EMAIL_PATTERN = r"^\s*[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+\s*$"
#: 12-character CRM id (CONTACTID, ACCOUNTID, ...: char(12) STANDARDID).
CRM_ID_PATTERN = rf"^.{{{CRM_ID_LENGTH}}}$"
#: SQL Server ``datetime`` (CONTACT.BIRTHDAY) holds 1753-01-01..9999-12-31.
BIRTHDAY_MIN = "1753-01-01"
BIRTHDAY_MAX = "9999-12-31"
#: An ISO date from 1753 (the strftime check adds the calendar).
BIRTHDAY_RANGE_PATTERN = (
    r"^(?:17(?:5[3-9]|[6-9]\d)|1[89]\d\d|[2-9]\d{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])$"
)
#: Control characters (Unicode Cc: C0, DEL, C1); format characters such as the
#: zero-width joiner of emoji are fine. ``street`` allows its line break (``\n``, ``\r\n``).
CONTROL_PATTERN = r"[\x00-\x1f\x7f-\x9f]"
STREET_CONTROL_PATTERN = r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)"


def max_lines_pattern(lines: int) -> str:
    """At most ``lines`` lines, trailing empty lines allowed (the CRM load drops them)."""
    return rf"^[^\r\n]*(?:\r?\n[^\r\n]*){{0,{lines - 1}}}(?:\r?\n)*$"


def line_length_pattern(length: int) -> str:
    """No line longer than ``length``."""
    return rf"^[^\r\n]{{0,{length}}}(?:\r?\n[^\r\n]{{0,{length}}})*$"


@dataclass(frozen=True)
class Check:
    """One R19 check of one column (see the module docstring for the tests)."""

    test: Test
    column: str
    statement: str  #: what must hold, as Data Docs show it ({where}: the side to fix it in)
    problem: str  #: one failing value's reason ({where}, plus the test's own values)
    limit: int | None = None
    pattern: str | None = None
    values: tuple[str, ...] = ()
    rows: Rows = "all"


def _field_checks(f: Field, rows: Rows) -> list[Check]:
    """The checks of one synced field, in the order the quarantine reports them."""
    name, crm = f.name, f.crm_name
    control = STREET_CONTROL_PATTERN if f.kind == "lines" else CONTROL_PATTERN
    out = [Check(
        "no_control", name, f"{name} contains a control character: remove it in {{where}}",
        f"{name} contains the control character U+{{code}} ({{char}}), which the CRM and "
        "Outlook do not keep reliably: remove it in {where}",
        pattern=control, rows=rows,
    )]
    if f.kind == "lines":
        lines, length = f.lines, f.length or 0
        out.append(Check(
            "max_lines", name, f"{name} has more than {lines} lines (CRM {crm}): merge lines in {{where}}",
            f"{name} has {{n}} lines; CRM {f.crm_table} holds {lines} ({crm.split('.')[1]}): "
            "merge lines in {where}",
            limit=lines, pattern=max_lines_pattern(lines), rows=rows,
        ))
        out.append(Check(
            "line_length", name,
            f"{name} has a line longer than {length} (CRM {crm}): shorten it in {{where}}",
            f"{name} line {{k}} is {{n}} characters; CRM {f.crm_table}.{{column}} holds {length}: "
            "shorten it in {where}",
            limit=length, pattern=line_length_pattern(length), rows=rows,
        ))
    elif f.length is not None:
        out.append(Check(
            "length", name,
            f"{name} is longer than CRM {crm} holds ({f.length}): shorten it in {{where}}",
            f"{name} is {{n}} characters; CRM {crm} holds {f.length}: shorten it in {{where}}",
            limit=f.length, rows=rows,
        ))
    if f.kind == "email":
        text = (f"{name} is not a valid email address (needs one @, no spaces and a dot in "
                "the domain): correct it in {where}")
        out.append(Check("match", name, text, text, pattern=EMAIL_PATTERN, rows=rows))
    if f.kind == "date":
        out.append(Check(
            "date", name, f"{name} is not a calendar date: correct it in {{where}}",
            f"{name} is not a date YYYY-MM-DD: correct it in {{where}}", rows=rows,
        ))
        out.append(Check(
            "date_from", name,
            f"{name} is not a date YYYY-MM-DD from {BIRTHDAY_MIN} (CRM {crm} is a SQL Server "
            "datetime): correct it in {where}",
            f"{name} is before {BIRTHDAY_MIN}, the first date CRM {crm} (SQL Server datetime, "
            f"{BIRTHDAY_MIN}..{BIRTHDAY_MAX}) can hold: correct it in {{where}}",
            limit=int(BIRTHDAY_MIN[:4]), pattern=BIRTHDAY_RANGE_PATTERN, rows=rows,
        ))
    return out


def field_checks(rows: Rows = "all") -> list[Check]:
    """Every synced field's checks, in FIELD_MAP.md order."""
    return [c for f in FIELD_REGISTRY for c in _field_checks(f, rows)]


def _has_name(rows: Rows, statement: str) -> Check:
    return Check(
        "has_name", HAS_NAME_OR_EMAIL, statement,
        "record has no name at all (no first name, last name or email): add a name or an "
        "email in {where}",
        rows=rows,
    )


def _crm_id(column: str, consequence: str) -> Check:
    text = f"{column} is not a {CRM_ID_LENGTH}-character CRM id (char(12)): {consequence}"
    return Check("match", column, text, text, pattern=CRM_ID_PATTERN)


@functools.cache
def record_checks(id_column: str, *, crm_format: bool) -> tuple[Check, ...]:
    """The checks of an extracted side frame identified by ``id_column``; ``crm_format``:
    its ids are CRM ids (12 characters)."""
    ids = [Check("not_null", id_column, f"{id_column} is missing: the record cannot be identified",
                 f"{id_column} is missing: the record cannot be identified")]
    if crm_format:
        ids.append(_crm_id(id_column, "the record cannot be written back; check the CRM data"))
    ids.append(Check("unique", id_column, f"{id_column} appears more than once: duplicate key",
                     f"{id_column} appears more than once in the frame: duplicate key"))
    no_name = "record has no name at all (no first name, last name or email): add one in {where}"
    return (*field_checks(), _has_name("all", no_name), *ids)


@functools.cache
def plan_checks() -> tuple[Check, ...]:
    """The checks of the action frame (plan.schema.ACTION_COLUMNS): the values each action
    writes, a create's name, the account to create, the ids and keys."""
    operations = tuple(sorted({op for ops in OPERATIONS.values() for op in ops}))
    account = Check(
        "not_blank", "account_name", "an account to create has a name (R5)",
        "account to create has no name (R5): give the company a name", rows="create_account",
    )
    account_length = Check(
        "length", "account_name",
        f"account_name is longer than CRM ACCOUNT.ACCOUNT holds ({ACCOUNT_NAME_LENGTH}): "
        "shorten the company in {where}",
        f"account_name is {{n}} characters; CRM ACCOUNT.ACCOUNT holds {ACCOUNT_NAME_LENGTH}: "
        "shorten the company in {where}",
        limit=ACCOUNT_NAME_LENGTH, rows="create_account",
    )
    account_control = Check(
        "no_control", "account_name", "account_name contains a control character: remove it in {where}",
        "account_name contains the control character U+{code} ({char}), which the CRM and "
        "Outlook do not keep reliably: remove it in {where}",
        pattern=CONTROL_PATTERN, rows="create_account",
    )
    keys = [
        Check("match", key, f"{key} does not start with {prefix!r}: the plan is inconsistent",
              f"{key} does not start with {prefix!r}: the plan is inconsistent", pattern=f"^{prefix}")
        for key, prefix in (("new_key", "new:"), ("account_key", "acct:"))
    ]
    return (
        *field_checks("written"),
        _has_name("creates", "a create has no name at all (no first name, last name or email)"),
        account, account_length, account_control,
        *[_crm_id(c, "the plan is inconsistent; report it with this record")
          for c in ("crm_id", "account_id")],
        *keys,
        Check("not_null", "action_id", "action_id is missing: the journal cannot recognise this action (R18)",
              "action_id is missing: the journal cannot recognise this action (R18)"),
        Check("unique", "action_id", "action_id appears more than once in the plan: duplicate key (R18)",
              "action_id appears more than once in the plan: duplicate key (R18)"),
        Check("in_set", "side", "side is one of the two systems", "side is not one of the two "
              "systems: the plan is inconsistent", values=tuple(SIDES)),
        Check("in_set", "op", "op is a known operation", "op is not a known operation: the plan "
              "is inconsistent", values=operations),
        Check("not_null", "rule", "every action names its rule",
              "rule is missing: every action names its rule"),
    )


#: The suites the GX runner validates, by name: (id column, checks).
SUITES: dict[str, tuple[str, tuple[Check, ...]]] = {
    "crm_contacts": (CRM_ID, record_checks(CRM_ID, crm_format=True)),
    "outlook_contacts": (OUTLOOK_ID, record_checks(OUTLOOK_ID, crm_format=False)),
    "plan": ("action_id", plan_checks()),
}
#: Where a suite tells the user to fix a value.
SUITE_SOURCES: dict[str, str] = {
    "crm_contacts": "the CRM", "outlook_contacts": "Outlook", "plan": "the side it comes from",
}
