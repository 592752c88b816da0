"""Record validation and quarantine (R19): which records must not be written, and why.

This module decides quarantine; the Great Expectations suites in ``expectations/`` say the
same checks declaratively for Data Docs. It is plain pandas/numpy so the domain library
never imports GX (DESIGN.md layer rule) and a cycle of 100,000 contacts is checked in a
fraction of a second.

The checks (every one is rule R19):

- each canonical field fits its CRM column (``model.CRM_LENGTHS``, characters = code
  points); ``street`` has at most ``STREET_MAX_LINES`` lines of ``STREET_LINE_LENGTH``
  (ADDRESS1..ADDRESS4); trailing empty lines are dropped as the CRM load drops them;
- emails are plausible: exactly one ``@``, no whitespace, a non-empty local part and a
  domain with at least one dot and no empty label. Deliberately *not* RFC 5322: quoted
  local parts (``"a b"@x.org``) and IP-literal domains are rejected (no mail client
  produces them for contacts), while plus-addressing, unicode local parts and IDN domains
  (``josé+news@bücher.de``) pass, so real addresses give no false positives. The value is
  checked trimmed (surrounding spaces are normalised away anyway, model.normalise);
- a record needs a first name, a last name or an email ("no name at all");
- ``birthday`` is an ISO date ``YYYY-MM-DD`` within SQL Server ``datetime``
  (1753-01-01..9999-12-31);
- no control characters (Unicode category Cc), except the line break of ``street``.
  Format characters such as the zero-width joiner of emoji are fine;
- ids are present and unique; CRM ids are 12 characters (char(12) STANDARDID).

Problems are a frame of ``PROBLEM_COLUMNS``; the reason names the field, the limit and
what to do, in the words of the side the value comes from.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from contactsync.model import (
    CRM_ID,
    CRM_LENGTHS,
    EMAIL_FIELDS,
    FIELD_REGISTRY,
    FIELDS,
    NAME_FIELDS,
    STREET_LINE_LENGTH,
    STREET_MAX_LINES,
)

RULE = "R19"
#: One row per problem. ``action_id`` is set for plan problems (None for record problems).
PROBLEM_COLUMNS: tuple[str, ...] = (
    "side",
    "record_id",
    "field",
    "rule",
    "reason",
    "value",
    "action_id",
)

#: The CRM column each canonical field is written to (model.FIELD_REGISTRY), for reasons.
CRM_COLUMN_NAMES: dict[str, str] = {f.name: f.crm_name for f in FIELD_REGISTRY}
ACCOUNT_NAME_LENGTH = CRM_LENGTHS["company"]  # ACCOUNT.ACCOUNT
CRM_ID_LENGTH = 12

#: Plausible email (see module docstring); the same pattern is in the GX suites.
EMAIL_PATTERN = r"^\s*[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+\s*$"
#: 12-character CRM id (CONTACTID, ACCOUNTID, ...); the same pattern is in the GX suites.
CRM_ID_PATTERN = r"^.{12}$"
BIRTHDAY_MIN = "1753-01-01"
BIRTHDAY_MAX = "9999-12-31"
#: Control characters (Unicode Cc: C0, DEL, C1). ``street`` allows its line break
#: (``\n`` or ``\r\n``), nothing else.
CONTROL_PATTERN = r"[\x00-\x1f\x7f-\x9f]"
STREET_CONTROL_PATTERN = r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)"
#: For the GX suites: at most STREET_MAX_LINES lines of STREET_LINE_LENGTH, trailing
#: empty lines allowed (the CRM load drops them).
STREET_PATTERN = (
    rf"^[^\r\n]{{0,{STREET_LINE_LENGTH}}}(?:\r?\n[^\r\n]{{0,{STREET_LINE_LENGTH}}})"
    rf"{{0,{STREET_MAX_LINES - 1}}}(?:\r?\n)*$"
)
#: For the GX suites: an ISO date from 1753 (with strftime "%Y-%m-%d" for the calendar).
BIRTHDAY_RANGE_PATTERN = (
    r"^(?:17(?:5[3-9]|[6-9]\d)|1[89]\d\d|[2-9]\d{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])$"
)

_EMAIL_RE = re.compile(EMAIL_PATTERN)
_CONTROL_RE = re.compile(CONTROL_PATTERN)
_STREET_CONTROL_RE = re.compile(STREET_CONTROL_PATTERN)
_JOIN = "\ue000"  # never a control character: lets one regex scan a whole column
_PREVIEW = 60


def empty_problems() -> pd.DataFrame:
    """A problems frame with no rows (so concatenation keeps the columns)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in PROBLEM_COLUMNS})


def record_problems(frame: pd.DataFrame, *, side: str, id_column: str) -> pd.DataFrame:
    """Problems of an extracted side frame (CRM or Outlook), one row per field at fault.

    Only the canonical fields present in ``frame`` are checked, so a projection works.
    ``side`` ("crm" or "outlook") is the system the values come from: the reason tells
    the user to fix them there.
    """
    where = _where(side)
    ids = _ids(frame, id_column)
    out = _Collector(side=side, ids=ids)
    values = {f: frame[f] for f in FIELDS if f in frame.columns}
    _field_checks(out, values, None, where)
    if any(f in frame.columns for f in NAME_FIELDS + EMAIL_FIELDS):
        _no_name(out, values, np.ones(len(frame), dtype=bool), where)
    _id_checks(out, frame, id_column, crm_format=id_column == CRM_ID or side == "crm")
    return out.frame()


def plan_problems(actions: pd.DataFrame) -> pd.DataFrame:
    """Problems of the plan: the values each action writes, its ids and keys.

    A field is checked only where the action writes it (listed in ``fields``); a create
    must also carry a name or an email. The record id of a problem is the pair's
    ``crm_id``, else its ``new_key``, else its ``outlook_id``, else its ``account_key``;
    ``action_id`` says which action, so :func:`quarantine_actions` can drop the pair.
    """
    n = len(actions)
    if n == 0:
        return empty_problems()
    record_ids = _coalesce(actions, ("crm_id", "new_key", "outlook_id", "account_key", "action_id"))
    action_ids = actions["action_id"].to_numpy(dtype=object)
    sides = actions["side"].to_numpy(dtype=object)
    out = _Collector(side=sides, ids=record_ids, action_ids=action_ids)
    # values written to the CRM come from Outlook and vice versa
    where_by_side = np.where(sides == "crm", "Outlook", "the CRM")

    written = written_fields(actions["fields"])
    values = {f: actions[f] for f in FIELDS if f in actions.columns}
    _field_checks(out, values, written, where_by_side)
    creates = (actions["op"] == "create").to_numpy()
    if creates.any():
        _no_name(out, values, creates, where_by_side)
    _account_name_checks(out, actions, where_by_side)
    _plan_id_checks(out, actions)
    return out.frame()


def quarantine_ids(problems: pd.DataFrame) -> set[str]:
    """The record ids with at least one problem (for reports and filters)."""
    return {str(v) for v in problems["record_id"].dropna().unique()}


def quarantine_actions(
    actions: pd.DataFrame, problems: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the plan into (kept, quarantined) actions (R19: none of a record's changes).

    ``problems`` may mix record problems (side ``crm``/``outlook``: record_id is a
    crm_id/outlook_id) and plan problems (``action_id`` set). Every action of a
    quarantined pair goes: the same crm_id, outlook_id or new_key. A ``create_account``
    goes with its last remaining create, and a create goes with its faulty account.
    """
    if actions.empty or problems.empty:
        return actions, actions.iloc[0:0]
    crm_ids: set = set()
    outlook_ids: set = set()
    action_ids: set = set()
    has_action = problems["action_id"].notna() if "action_id" in problems else None
    rec = problems if has_action is None else problems[~has_action]
    crm_ids |= set(rec.loc[rec["side"] == "crm", "record_id"].dropna())
    outlook_ids |= set(rec.loc[rec["side"] == "outlook", "record_id"].dropna())
    if has_action is not None:
        action_ids |= set(problems.loc[has_action, "action_id"])

    drop = actions["action_id"].isin(action_ids).to_numpy()
    for _ in range(4):  # pair -> account -> pairs of that account: converges quickly
        hit = actions[drop]
        crm_ids |= set(hit["crm_id"].dropna())
        outlook_ids |= set(hit["outlook_id"].dropna())
        new_keys = set(hit["new_key"].dropna())
        bad_accounts = set(hit.loc[hit["op"] == "create_account", "account_key"].dropna())
        new_drop = (
            drop
            | actions["crm_id"].isin(crm_ids).to_numpy()
            | actions["outlook_id"].isin(outlook_ids).to_numpy()
            | actions["new_key"].isin(new_keys).to_numpy()
            | (
                (actions["op"] != "create_account") & actions["account_key"].isin(bad_accounts)
            ).to_numpy()
        )
        # an account to create that no remaining create refers to is not made
        is_acct = (actions["op"] == "create_account").to_numpy()
        users = set(actions.loc[~new_drop & ~is_acct, "account_key"].dropna())
        new_drop |= is_acct & ~actions["account_key"].isin(users).to_numpy()
        if (new_drop == drop).all():
            break
        drop = new_drop
    return actions[~drop], actions[drop]


# --- internals -------------------------------------------------------------------------


def _where(side: str) -> str:
    return "Outlook" if side == "outlook" else "the CRM"


def _ids(frame: pd.DataFrame, id_column: str) -> np.ndarray:
    if id_column not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    s = frame[id_column].astype(object)
    return s.where(s.notna(), None).to_numpy(dtype=object)


def _coalesce(frame: pd.DataFrame, columns: Iterable[str]) -> np.ndarray:
    out = np.full(len(frame), None, dtype=object)
    for col in columns:
        if col not in frame.columns:
            continue
        s = frame[col].astype(object)
        v = s.where(s.notna(), None).to_numpy(dtype=object)
        fill = (out == None) & (v != None)  # noqa: E711 (element-wise)
        out[fill] = v[fill]
    return out


def written_fields(fields: pd.Series) -> dict[str, np.ndarray]:
    """For each canonical field, which rows list it in ``fields``.

    A plan has few distinct ``fields`` strings, so each distinct one is parsed once and
    the rows look theirs up by code: no per-row Python.
    """
    codes, uniques = pd.factorize(pd.Series(fields.to_numpy(dtype=object)), use_na_sentinel=True)
    listed = [
        {p.strip() for p in str(u).split(",")} for u in np.asarray(uniques, dtype=object)
    ]
    masks: dict[str, np.ndarray] = {}
    for field in FIELDS:
        by_code = np.fromiter((field in s for s in listed), dtype=bool, count=len(listed))
        by_code = np.append(by_code, False)  # code -1 (missing) lists nothing
        masks[field] = by_code[codes]
    return masks


def _present(values: pd.Series, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Positions and values that are set (not NA) and selected by ``rows``."""
    mask = values.notna().to_numpy()
    if rows is not None:
        mask = mask & rows
    pos = np.flatnonzero(mask)
    vals = values.to_numpy(dtype=object)[pos]
    if len(vals) and infer_dtype(vals, skipna=False) != "string":
        vals = np.array([v if isinstance(v, str) else str(v) for v in vals], dtype=object)
    return pos, vals


def _lengths(vals: np.ndarray) -> np.ndarray:
    return np.fromiter(map(len, vals), dtype=np.int64, count=len(vals))


def _preview(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    short = text[:_PREVIEW]
    shown = "".join(
        ch if unicodedata.category(ch) != "Cc" or ch == "\n" else repr(ch)[1:-1] for ch in short
    ).replace("\n", "\\n")
    return shown + ("…" if len(text) > _PREVIEW else "")


def _pick(where: str | np.ndarray, pos: np.ndarray) -> list[str]:
    if isinstance(where, str):
        return [where] * len(pos)
    return list(where[pos])


class _Collector:
    """Accumulates problems as column lists; builds the frame once at the end."""

    def __init__(
        self,
        *,
        side: str | np.ndarray,
        ids: np.ndarray,
        action_ids: np.ndarray | None = None,
    ) -> None:
        self.side = side
        self.ids = ids
        self.action_ids = action_ids
        self.rows: dict[str, list] = {c: [] for c in PROBLEM_COLUMNS}

    def add(
        self, pos: np.ndarray, field: str | None, reasons: list[str], values: Iterable[object]
    ) -> None:
        if len(pos) == 0:
            return
        r = self.rows
        r["side"] += _pick(self.side, pos)
        r["record_id"] += list(self.ids[pos])
        r["field"] += [field] * len(pos)
        r["rule"] += [RULE] * len(pos)
        r["reason"] += reasons
        r["value"] += [_preview(v) for v in values]
        r["action_id"] += list(self.action_ids[pos]) if self.action_ids is not None else [None] * len(pos)

    def frame(self) -> pd.DataFrame:
        if not self.rows["rule"]:
            return empty_problems()
        return pd.DataFrame({c: pd.Series(self.rows[c], dtype=object) for c in PROBLEM_COLUMNS})


def _field_checks(
    out: _Collector,
    values: dict[str, pd.Series],
    written: dict[str, np.ndarray] | None,
    where: str | np.ndarray,
) -> None:
    for field, series in values.items():
        pos, vals = _present(series, None if written is None else written[field])
        if len(pos) == 0:
            continue
        if field == "street":
            _control(out, field, pos, vals, _lengths(vals), where, _STREET_CONTROL_RE)
            vals = np.array([v.replace("\r\n", "\n") for v in vals], dtype=object)
            _street(out, pos, vals, _lengths(vals), where)
            continue
        lengths = _lengths(vals)
        _control(out, field, pos, vals, lengths, where, _CONTROL_RE)
        if field in CRM_LENGTHS:
            limit = CRM_LENGTHS[field]
            bad = np.flatnonzero(lengths > limit)
            if len(bad):
                w = _pick(where, pos[bad])
                out.add(
                    pos[bad],
                    field,
                    [
                        f"{field} is {n} characters; CRM {CRM_COLUMN_NAMES[field]} holds "
                        f"{limit}: shorten it in {x}"
                        for n, x in zip(lengths[bad], w, strict=True)
                    ],
                    vals[bad],
                )
        if field in EMAIL_FIELDS:
            _emails(out, field, pos, vals, where)
        if field == "birthday":
            _birthdays(out, pos, vals, lengths, where)


def _control(
    out: _Collector,
    field: str,
    pos: np.ndarray,
    vals: np.ndarray,
    lengths: np.ndarray,
    where: str | np.ndarray,
    pattern: re.Pattern,
) -> None:
    """One regex scan over the whole column joined; matches map back by offset."""
    joined = _JOIN.join(vals)
    starts = np.cumsum(lengths + 1) - (lengths + 1)
    found: dict[int, str] = {}
    for m in pattern.finditer(joined):
        i = int(np.searchsorted(starts, m.start(), side="right") - 1)
        found.setdefault(i, m.group())
    if not found:
        return
    idx = np.fromiter(found, dtype=np.int64, count=len(found))
    w = _pick(where, pos[idx])
    reasons = [
        f"{field} contains the control character U+{ord(found[i]):04X} "
        f"({unicodedata.name(found[i], 'control')}), which the CRM and Outlook do not "
        f"keep reliably: remove it in {x}"
        for i, x in zip(idx, w, strict=True)
    ]
    out.add(pos[idx], field, reasons, vals[idx])


def _street(
    out: _Collector, pos: np.ndarray, vals: np.ndarray, lengths: np.ndarray, where
) -> None:
    breaks = np.fromiter((v.count("\n") for v in vals), dtype=np.int64, count=len(vals))
    # only a value with enough breaks can have too many lines, only a long one a long line
    cand = np.flatnonzero((breaks >= STREET_MAX_LINES) | (lengths > STREET_LINE_LENGTH))
    if len(cand) == 0:
        return
    lines = [vals[i].rstrip("\n").split("\n") for i in cand]
    counts = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    too_many = np.flatnonzero(counts > STREET_MAX_LINES)
    if len(too_many):
        at = cand[too_many]
        out.add(
            pos[at],
            "street",
            [
                f"street has {n} lines; CRM ADDRESS holds {STREET_MAX_LINES} "
                f"(ADDRESS1..ADDRESS{STREET_MAX_LINES}): merge lines in {x}"
                for n, x in zip(counts[too_many], _pick(where, pos[at]), strict=True)
            ],
            vals[at],
        )
    reasons = []
    long_at = []
    for j, ls in enumerate(lines):
        k = next((k for k, ln in enumerate(ls) if len(ln) > STREET_LINE_LENGTH), None)
        if k is not None:
            long_at.append(cand[j])
            reasons.append((k, len(ls[k])))
    if long_at:
        at = np.asarray(long_at, dtype=np.int64)
        out.add(
            pos[at],
            "street",
            [
                f"street line {k + 1} is {n} characters; CRM "
                f"ADDRESS.ADDRESS{min(k + 1, STREET_MAX_LINES)} holds {STREET_LINE_LENGTH}: "
                f"shorten it in {x}"
                for (k, n), x in zip(reasons, _pick(where, pos[at]), strict=True)
            ],
            vals[at],
        )


def _emails(out: _Collector, field: str, pos: np.ndarray, vals: np.ndarray, where) -> None:
    # surrounding blanks are allowed (normalised away); a blank value is a missing one
    match = _EMAIL_RE.match
    bad = np.asarray(
        [i for i, v in enumerate(vals) if match(v) is None and v.strip()], dtype=np.int64
    )
    if len(bad):
        w = _pick(where, pos[bad])
        out.add(
            pos[bad],
            field,
            [
                f"{field} is not a valid email address (needs one @, no spaces and a dot "
                f"in the domain): correct it in {x}"
                for x in w
            ],
            vals[bad],
        )


def _birthdays(
    out: _Collector, pos: np.ndarray, vals: np.ndarray, lengths: np.ndarray, where
) -> None:
    """Vectorised on the code points of fixed-width values: digits, dashes, calendar."""
    blank = np.zeros(len(vals), dtype=bool)
    maybe_blank = np.flatnonzero(lengths != 10)
    blank[maybe_blank] = [not vals[i].strip() for i in maybe_blank]
    is_date = np.zeros(len(vals), dtype=bool)
    y = np.zeros(len(vals), dtype=np.int64)
    ten = np.flatnonzero(lengths == 10)
    if len(ten):
        cp = vals[ten].astype("U10").view(np.uint32).reshape(-1, 10).astype(np.int64)
        digit_cols = [0, 1, 2, 3, 5, 6, 8, 9]
        dig = cp[:, digit_cols] - ord("0")
        shaped = ((dig >= 0) & (dig <= 9)).all(axis=1)
        shaped &= (cp[:, 4] == ord("-")) & (cp[:, 7] == ord("-"))
        yy = dig[:, 0] * 1000 + dig[:, 1] * 100 + dig[:, 2] * 10 + dig[:, 3]
        mm = dig[:, 4] * 10 + dig[:, 5]
        dd = dig[:, 6] * 10 + dig[:, 7]
        leap = (yy % 4 == 0) & ((yy % 100 != 0) | (yy % 400 == 0))
        month_days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
        ok_m = (mm >= 1) & (mm <= 12)
        dim = month_days[np.clip(mm, 0, 12)] + (leap & (mm == 2))
        is_date[ten] = shaped & ok_m & (dd >= 1) & (dd <= dim)
        y[ten] = yy
    not_date = np.flatnonzero(~blank & ~is_date)
    out_of_range = np.flatnonzero(is_date & (y < 1753))  # YYYY caps the upper bound at 9999
    if len(not_date):
        w = _pick(where, pos[not_date])
        out.add(
            pos[not_date],
            "birthday",
            [f"birthday is not a date YYYY-MM-DD: correct it in {x}" for x in w],
            vals[not_date],
        )
    if len(out_of_range):
        w = _pick(where, pos[out_of_range])
        out.add(
            pos[out_of_range],
            "birthday",
            [
                f"birthday is before {BIRTHDAY_MIN}, the first date CRM CONTACT.BIRTHDAY "
                f"(SQL Server datetime, {BIRTHDAY_MIN}..{BIRTHDAY_MAX}) can hold: correct "
                f"it in {x}"
                for x in w
            ],
            vals[out_of_range],
        )


def _no_name(
    out: _Collector, values: dict[str, pd.Series], rows: np.ndarray, where
) -> None:
    """Rows (of ``rows``) without a non-blank first name, last name or email."""
    missing = rows.copy()
    for field in NAME_FIELDS + EMAIL_FIELDS:
        if field not in values or not missing.any():
            continue
        s = values[field]
        pos = np.flatnonzero(missing & s.notna().to_numpy())
        if len(pos):
            vals = s.to_numpy(dtype=object)[pos]
            if infer_dtype(vals, skipna=False) != "string":
                vals = np.array([str(v) for v in vals], dtype=object)
            spaces = np.fromiter(map(str.isspace, vals), dtype=bool, count=len(vals))
            filled = (_lengths(vals) > 0) & ~spaces
            missing[pos[filled]] = False
    bad = np.flatnonzero(missing)
    if len(bad):
        w = _pick(where, bad)
        out.add(
            bad,
            None,
            [
                f"record has no name at all (no first name, last name or email): add a "
                f"name or an email in {x}"
                for x in w
            ],
            [None] * len(bad),
        )


def _id_checks(out: _Collector, frame: pd.DataFrame, id_column: str, *, crm_format: bool) -> None:
    if id_column not in frame.columns:
        return
    ids = out.ids
    missing = np.flatnonzero(ids == None)  # noqa: E711 (element-wise)
    out.add(
        missing,
        id_column,
        [f"{id_column} is missing: the record cannot be identified"] * len(missing),
        [None] * len(missing),
    )
    present = np.flatnonzero(ids != None)  # noqa: E711
    if crm_format and len(present):
        lengths = _lengths(np.array([str(v) for v in ids[present]], dtype=object))
        bad = present[lengths != CRM_ID_LENGTH]
        out.add(
            bad,
            id_column,
            [
                f"{id_column} is not a {CRM_ID_LENGTH}-character CRM id (char(12)): the "
                f"record cannot be written back; check the CRM data"
            ]
            * len(bad),
            ids[bad],
        )
    dup = frame[id_column].duplicated(keep=False).to_numpy() & (ids != None)  # noqa: E711
    bad = np.flatnonzero(dup)
    out.add(
        bad,
        id_column,
        [f"{id_column} appears more than once in the frame: duplicate key"] * len(bad),
        ids[bad],
    )


def _account_name_checks(out: _Collector, actions: pd.DataFrame, where) -> None:
    if "account_name" not in actions.columns:
        return
    rows = (actions["op"] == "create_account").to_numpy()
    pos, vals = _present(actions["account_name"], rows)
    if rows.any():
        named = np.zeros(len(actions), dtype=bool)
        named[pos[np.array([bool(v.strip()) for v in vals], dtype=bool)]] = True
        bad = np.flatnonzero(rows & ~named)
        out.add(
            bad,
            "account_name",
            ["account to create has no name (R5): give the company a name"] * len(bad),
            [None] * len(bad),
        )
    if len(pos):
        lengths = _lengths(vals)
        bad = np.flatnonzero(lengths > ACCOUNT_NAME_LENGTH)
        out.add(
            pos[bad],
            "account_name",
            [
                f"account_name is {n} characters; CRM ACCOUNT.ACCOUNT holds "
                f"{ACCOUNT_NAME_LENGTH}: shorten the company in {x}"
                for n, x in zip(lengths[bad], _pick(where, pos[bad]), strict=True)
            ],
            vals[bad],
        )
        _control(out, "account_name", pos, vals, lengths, where, _CONTROL_RE)


def _plan_id_checks(out: _Collector, actions: pd.DataFrame) -> None:
    for col in ("crm_id", "account_id"):
        if col not in actions.columns:
            continue
        pos, vals = _present(actions[col], None)
        if len(pos):
            bad = np.flatnonzero(_lengths(vals) != CRM_ID_LENGTH)
            out.add(
                pos[bad],
                col,
                [
                    f"{col} is not a {CRM_ID_LENGTH}-character CRM id (char(12)): the plan "
                    f"is inconsistent; report it with this record"
                ]
                * len(bad),
                vals[bad],
            )
    for col, prefix in (("new_key", "new:"), ("account_key", "acct:")):
        if col not in actions.columns:
            continue
        pos, vals = _present(actions[col], None)
        if len(pos):
            bad = np.flatnonzero([not v.startswith(prefix) for v in vals])
            out.add(
                pos[bad],
                col,
                [f"{col} does not start with {prefix!r}: the plan is inconsistent"] * len(bad),
                vals[bad],
            )
    aid = actions["action_id"]
    missing = np.flatnonzero(aid.isna().to_numpy())
    out.add(
        missing,
        "action_id",
        ["action_id is missing: the journal cannot recognise this action (R18)"] * len(missing),
        [None] * len(missing),
    )
    dup = np.flatnonzero(aid.duplicated(keep=False).to_numpy() & aid.notna().to_numpy())
    out.add(
        dup,
        "action_id",
        ["action_id appears more than once in the plan: duplicate key (R18)"] * len(dup),
        aid.to_numpy(dtype=object)[dup],
    )

