"""The canonical contact model every frame of the pipeline shares (spec/FIELD_MAP.md).

``FIELD_REGISTRY`` states each synced field once: canonical name, CRM table and column,
length, Graph property and kind. The CRM extract and load, the CRM schema's lengths, the
Outlook mapping, the R19 checks (``contactsync.quality``) and the GX suites all derive
from it, so adding or changing a field is one line here.

Both sides are extracted into frames with the same canonical field columns so that
matching and planning never need to know which system a value came from. Values are kept
as the side holds them (strings, missing = NA); comparisons always go through
:func:`normalise`, never through raw values (STYLE.md: compare normalised values).

Representation of the canonical values, the same on both sides:
- every field is a string or NA;
- ``birthday`` is an ISO date ``YYYY-MM-DD`` (date only);
- ``street`` holds the street lines joined with ``"\\n"`` (Outlook's ``"\\r\\n"`` is
  turned into ``"\\n"`` on extract; CRM ADDRESS1..ADDRESS4 are joined, trailing empty
  lines dropped);
- ``categories`` is Outlook's list joined with ``", "``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd

#: Text pandas infers (``str`` dtype) is stored as Python objects, as without pyarrow.
#: pyarrow is a dependency (the state store's LZ4 codec, Arrow look-ups, PostgreSQL's ADBC
#: read), and with it installed pandas 3 stores inferred text in Arrow by default: every
#: ``pd.Index`` of ids, ``astype(str)`` and frame built from strings then converts to and
#: from Arrow, and the whole first sync at 100,000 peaked at 848 MB against 691 MB with
#: this (bench.cycles_bench's first sync, 2026-12-02). Set once here, where the canonical
#: frames are defined and which every path that builds one imports.
pd.set_option("mode.string_storage", "python")

# --- THE field registry, in FIELD_MAP.md order ---------------------------------------
#: How a field's values behave: ``text`` (one string), ``email`` (an address, one slot of
#: Graph's list), ``phone``, ``date`` (ISO date; a datetime column in the CRM), ``lines``
#: (street: one CRM column per line), ``list`` (Graph's list joined with ", ").
FieldKind = Literal["text", "email", "phone", "date", "lines", "list"]
_GRAPH_PATH = re.compile(r"^(?P<prop>\w+)(?:\[(?P<index>\d+)\])?(?:\.(?P<key>\w+))?$")


@dataclass(frozen=True)
class Field:
    """One synchronised field: everything the extract, the load, the CRM schema, the
    Outlook mapping, the quality checks and the GX suites need to know about it, stated
    once (spec/FIELD_MAP.md). Everything else derives from :data:`FIELD_REGISTRY`."""

    name: str  #: canonical name: the column in every frame
    crm_table: str  #: CONTACT, ACCOUNT or ADDRESS
    crm_column: str  #: the column (``lines``: the first line's column, ADDRESS1)
    length: int | None  #: characters the CRM column holds (``lines``: per line); None: not text
    graph: str  #: Graph property path: ``givenName``, ``emailAddresses[0].address``, ...
    kind: FieldKind = "text"
    lines: int = 1  #: ``lines``: how many CRM columns hold the lines (ADDRESS1..ADDRESS4)

    @property
    def crm_columns(self) -> tuple[str, ...]:
        """The CRM columns holding the value (ADDRESS1..ADDRESS4 for the street)."""
        if self.lines == 1:
            return (self.crm_column,)
        stem = self.crm_column.rstrip("0123456789")
        return tuple(f"{stem}{i}" for i in range(1, self.lines + 1))

    @property
    def crm_name(self) -> str:
        """How messages name the CRM column: ``CONTACT.FIRSTNAME``, ``ADDRESS.ADDRESS1..ADDRESS4``."""
        cols = self.crm_columns
        shown = cols[0] if len(cols) == 1 else f"{cols[0]}..{cols[-1]}"
        return f"{self.crm_table}.{shown}"

    def _graph_part(self, part: str) -> str | None:
        match = _GRAPH_PATH.match(self.graph)
        if match is None:  # pragma: no cover - the registry below is fixed
            raise ValueError(f"field {self.name}: Graph path {self.graph!r} is not prop[i].key")
        return match.group(part)

    @property
    def graph_property(self) -> str:
        """The top-level Graph contact property (``emailAddresses``, ``businessAddress``)."""
        return str(self._graph_part("prop"))

    @property
    def graph_index(self) -> int | None:
        """The slot in a Graph collection (``emailAddresses[1]`` -> 1), None for a scalar."""
        index = self._graph_part("index")
        return None if index is None else int(index)

    @property
    def graph_key(self) -> str | None:
        """The key inside a complex Graph value (``businessAddress.city`` -> ``city``)."""
        return self._graph_part("key")


FIELD_REGISTRY: tuple[Field, ...] = (
    Field("first_name", "CONTACT", "FIRSTNAME", 32, "givenName"),
    Field("middle_name", "CONTACT", "MIDDLENAME", 32, "middleName"),
    Field("last_name", "CONTACT", "LASTNAME", 32, "surname"),
    Field("prefix", "CONTACT", "PREFIX", 16, "title"),
    Field("suffix", "CONTACT", "SUFFIX", 16, "generation"),
    Field("job_title", "CONTACT", "TITLE", 64, "jobTitle"),
    Field("department", "CONTACT", "DEPARTMENT", 32, "department"),
    Field("company", "ACCOUNT", "ACCOUNT", 128, "companyName"),
    Field("email1", "CONTACT", "EMAIL", 128, "emailAddresses[0].address", "email"),
    Field("email2", "CONTACT", "SECONDARYEMAIL", 128, "emailAddresses[1].address", "email"),
    Field("email3", "CONTACT", "EMAIL3", 128, "emailAddresses[2].address", "email"),
    Field("work_phone", "CONTACT", "WORKPHONE", 32, "businessPhones[0]", "phone"),
    Field("home_phone", "CONTACT", "HOMEPHONE", 32, "homePhones[0]", "phone"),
    Field("mobile_phone", "CONTACT", "MOBILE", 32, "mobilePhone", "phone"),
    Field("web_address", "CONTACT", "WEBADDRESS", 128, "businessHomePage"),
    Field("assistant", "CONTACT", "ASSISTANT", 64, "assistantName"),
    Field("spouse", "CONTACT", "SPOUSE", 64, "spouseName"),
    Field("birthday", "CONTACT", "BIRTHDAY", None, "birthday", "date"),
    Field("street", "ADDRESS", "ADDRESS1", 64, "businessAddress.street", "lines", lines=4),
    Field("city", "ADDRESS", "CITY", 32, "businessAddress.city"),
    Field("state", "ADDRESS", "STATE", 32, "businessAddress.state"),
    Field("postal_code", "ADDRESS", "POSTALCODE", 24, "businessAddress.postalCode"),
    Field("country", "ADDRESS", "COUNTRY", 32, "businessAddress.countryOrRegion"),
    Field("categories", "CONTACT", "CATEGORIES", 255, "categories", "list"),
)
#: The registry by canonical name.
FIELD: dict[str, Field] = {f.name: f for f in FIELD_REGISTRY}

# --- views of the registry (derived, never restated) ------------------------------------
FIELDS: tuple[str, ...] = tuple(f.name for f in FIELD_REGISTRY)
EMAIL_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELD_REGISTRY if f.kind == "email")
NAME_FIELDS: tuple[str, ...] = ("first_name", "last_name")
ADDRESS_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELD_REGISTRY if f.crm_table == "ADDRESS")
#: Fields that flow CRM -> Outlook only once a pair is linked (R6).
CRM_TO_OUTLOOK_ONLY: tuple[str, ...] = ("company",)

#: Maximum length of each single-column text field in its CRM column. ``street`` is
#: limited per line and in lines: STREET_LINE_LENGTH / STREET_MAX_LINES. ``birthday`` is
#: a datetime column.
CRM_LENGTHS: dict[str, int] = {
    f.name: f.length for f in FIELD_REGISTRY if f.length is not None and f.lines == 1
}
STREET_LINE_LENGTH: int = FIELD["street"].length or 0
STREET_MAX_LINES: int = FIELD["street"].lines


def crm_field_columns(table: str) -> dict[str, str]:
    """Canonical field -> column of the one-column fields the CRM keeps in ``table``."""
    return {f.name: f.crm_column for f in FIELD_REGISTRY if f.crm_table == table and f.lines == 1}


# --- id and metadata columns of the side frames ----------------------------------------
CRM_ID = "crm_id"  # CONTACT.CONTACTID
OUTLOOK_ID = "outlook_id"  # Graph contact id
#: CRM frame (crm.extract): one row per visible contact.
#: crm_modified = newest MODIFYDATE of CONTACT, its ADDRESS and its ACCOUNT (R9);
#: read_only = the user's SECRIGHTS.RECORDACCESS is 'R' (R1); in_group = member of the
#: user's contact sync group (R2).
CRM_META: tuple[str, ...] = (
    CRM_ID,
    "account_id",
    "address_id",
    "crm_created",
    "crm_modified",
    "read_only",
    "in_group",
)
CRM_COLUMNS: tuple[str, ...] = CRM_META + FIELDS
#: Outlook frame (outlook.extract): one row per contact of the sync folder.
#: crm_tag = the CrmContactId extended property (R7a); business_phones_rest = JSON list
#: of businessPhones[1:], kept so an update of work_phone leaves the others as they are.
OUTLOOK_META: tuple[str, ...] = (
    OUTLOOK_ID,
    "change_key",
    "outlook_created",
    "outlook_modified",
    "crm_tag",
    "business_phones_rest",
)
OUTLOOK_COLUMNS: tuple[str, ...] = OUTLOOK_META + FIELDS
#: Accounts lookup (crm.lookup_accounts): visible accounts by exact name (R5b).
ACCOUNT_COLUMNS: tuple[str, ...] = ("account_id", "account_name", "account_created")

#: The Outlook frame's time columns (tz-aware UTC), the rest of it being text.
OUTLOOK_TIMES: tuple[str, ...] = ("outlook_created", "outlook_modified")
DATETIME_COLUMNS = frozenset({"crm_created", "crm_modified", *OUTLOOK_TIMES, "account_created"})
BOOL_COLUMNS = frozenset({"read_only", "in_group"})

USERID_LENGTH = 12


def empty_frame(columns: Sequence[str]) -> pd.DataFrame:
    """An empty frame with the right dtypes, so concatenation never degrades dtypes."""
    return _empty_frame(tuple(columns)).copy()


@lru_cache(maxsize=16)
def _empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    """Built once per column list, with the dtypes :func:`conform` gives an empty frame
    (times: ``datetime64[s, UTC]``), without it: conform's first calls in a process cost
    0.05-0.1 s each, asked for several times a cycle (no candidates, no accounts, no
    delta, no action), whatever the cycle's size (issue 15)."""
    def dtype(column: str) -> str:
        return "datetime64[s, UTC]" if column in DATETIME_COLUMNS else "bool" if column in BOOL_COLUMNS else "object"

    return pd.DataFrame({c: pd.Series(dtype=dtype(c)) for c in columns}, columns=list(columns))


def conform(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Return ``frame`` with exactly ``columns`` (missing ones added as NA) and their dtypes.

    Every producer of a side frame ends with this, so consumers can rely on the columns
    being present and typed: strings as object with None for missing, datetimes as UTC,
    flags as bool.
    """
    out = frame.reindex(columns=list(columns))
    for col in columns:
        if col in DATETIME_COLUMNS:
            out[col] = pd.to_datetime(out[col], utc=True, errors="coerce")
        elif col in BOOL_COLUMNS:
            out[col] = out[col].fillna(False).astype(bool)
        else:
            s = out[col].astype(object)
            out[col] = s.where(s.notna(), None)
    return out.reset_index(drop=True)


#: The dtype the rules' text operations run in: Python's own ``str`` methods. With pyarrow
#: installed, pandas' default ``str`` dtype runs ``.str`` methods in Arrow, whose Unicode
#: rules differ from Python's ("İ".lower() is "i̇" in Python, "i" in Arrow; Python strips
#: U+001C..U+001F, Arrow does not), and a match key (R7) must be the same on every path.
PY_TEXT = pd.StringDtype("python", na_value=np.nan)


def normalise(frame: pd.DataFrame, fields: Iterable[str] = FIELDS) -> pd.DataFrame:
    """Comparison values of ``fields``: trimmed, empty == missing (NA), emails lower-case.

    Vectorised; returns a new frame of object columns with None for missing, same index.
    """
    out = pd.DataFrame(index=frame.index)
    for field in fields:
        out[field] = normalise_series(frame[field], email=field in EMAIL_FIELDS)
    return out


def normalise_series(values: pd.Series, *, email: bool = False) -> pd.Series:
    """One column's comparison values (see :func:`normalise`)."""
    s = values.astype(object)
    s = s.where(s.notna(), "").astype(PY_TEXT).str.replace("\r\n", "\n", regex=False).str.strip()
    if email:
        s = s.str.lower()
    s = s.astype(object)
    return s.where(s != "", None)


def email_key(values: pd.Series) -> pd.Series:
    """Match key of an email column (R7: trimmed, case-insensitive; empty -> None)."""
    return normalise_series(values, email=True)


def equal_normalised(a: pd.Series, b: pd.Series) -> pd.Series:
    """Element-wise equality of two normalised columns where None == None."""
    both_missing = a.isna().to_numpy() & b.isna().to_numpy()
    same = (a.to_numpy(dtype=object) == b.to_numpy(dtype=object))
    return pd.Series(np.asarray(same, dtype=bool) | both_missing, index=a.index)


def pad_user(user_id: str) -> str:
    """USERINFO.USERID as the CRM stores it: padded with spaces to 12 characters."""
    uid = user_id.strip()
    if not uid or len(uid) > USERID_LENGTH:
        raise ValueError(f"CRM user id {user_id!r} must be 1 to 12 characters")
    return uid.ljust(USERID_LENGTH)


def unpad_user(user_id: str) -> str:
    """A USERID as users write it (no padding), for reports and --json output."""
    return user_id.strip()


def compact_emails(frame: pd.DataFrame) -> pd.DataFrame:
    """Move the emails up so that there is no gap (email2 empty but email3 set).

    Outlook keeps emails as a list without holes, so its email2 is "the second address",
    whatever CRM column held it. The CRM side is read the same way (EMAIL, SECONDARYEMAIL,
    EMAIL3 in that order, empties skipped) and written back as a whole (see
    ``cycle.load``), so both sides compare slot by slot without inventing changes.
    """
    if frame.empty:
        return frame
    values = frame[list(EMAIL_FIELDS)].to_numpy(dtype=object)
    # A cheap look first (None/NaN/"" only): most address books have no gap at all, and
    # this runs on every extract of up to 100,000 rows.
    blank = pd.isna(values) | (values == "")
    if not (blank[:, :-1] & ~blank[:, 1:]).any():
        # no missing slot followed by a present one: nothing to move, unless a value is
        # only whitespace, which the full check below treats as missing
        whitespace = frame[list(EMAIL_FIELDS)].apply(
            lambda col: col.astype(object).where(col.notna(), "x").astype(PY_TEXT).str.isspace()
        ).to_numpy()
        if not whitespace.any():
            return frame
    present = normalise(frame, EMAIL_FIELDS).notna().to_numpy()
    if not (present[:, 1:] & ~present[:, :-1]).any():
        return frame  # no row has a gap
    order = np.argsort(~present, axis=1, kind="stable")
    moved = np.take_along_axis(values, order, axis=1)
    moved[~np.take_along_axis(present, order, axis=1)] = None
    out = frame.copy()
    for i, field in enumerate(EMAIL_FIELDS):
        out[field] = pd.Series(moved[:, i], index=frame.index, dtype=object)
    return out
