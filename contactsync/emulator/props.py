"""The Graph contact's properties: what a client may write, and the shape Graph returns.

Graph answers with the full v1.0 representation (every property, ``null`` or ``[]`` or
``{}`` when unset), so the emulator does too: a client that breaks on a null breaks here
before it breaks against a real tenant. Every name below exists in
``../shared/graph/contacts-csdl.xml`` (copy in tests/emulator) with the kind given here (a test checks it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

STRING = "string"
STRINGS = "strings"
DATETIME = "datetime"
ADDRESS = "address"
EMAILS = "emails"

#: Writable contact properties and their kind, in Graph's response order.
WRITABLE: dict[str, str] = {
    "categories": STRINGS,
    "birthday": DATETIME,
    "fileAs": STRING,
    "displayName": STRING,
    "givenName": STRING,
    "initials": STRING,
    "middleName": STRING,
    "nickName": STRING,
    "surname": STRING,
    "title": STRING,
    "yomiGivenName": STRING,
    "yomiSurname": STRING,
    "yomiCompanyName": STRING,
    "generation": STRING,
    "imAddresses": STRINGS,
    "jobTitle": STRING,
    "companyName": STRING,
    "department": STRING,
    "officeLocation": STRING,
    "profession": STRING,
    "businessHomePage": STRING,
    "assistantName": STRING,
    "manager": STRING,
    "homePhones": STRINGS,
    "mobilePhone": STRING,
    "businessPhones": STRINGS,
    "spouseName": STRING,
    "personalNotes": STRING,
    "children": STRINGS,
    "emailAddresses": EMAILS,
    "homeAddress": ADDRESS,
    "businessAddress": ADDRESS,
    "otherAddress": ADDRESS,
}
#: Server-maintained properties: accepted in a body (clients echo them back) and ignored.
READ_ONLY = frozenset({"id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId"})
ADDRESS_KEYS = ("street", "city", "state", "countryOrRegion", "postalCode")
EMAIL_KEYS = ("name", "address")
EXTENDED = "singleValueExtendedProperties"


class BodyError(ValueError):
    """A request body Graph would refuse with 400; the message is Graph-like."""


def parse_datetime(value: str) -> str:
    """Accept ``Z``, ``+00:00`` or any offset (as Graph does); store UTC with ``Z``."""
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BodyError(f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_string(name: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise BodyError(f"Property '{name}' expects Edm.String, got {type(value).__name__}.")


def _check_strings(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BodyError(f"Property '{name}' expects Collection(Edm.String).")
    return list(value)


def _check_complex(name: str, value: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BodyError(f"Property '{name}' expects a complex value.")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key.startswith("@odata."):
            continue
        if key not in keys:
            raise BodyError(f"The property '{key}' does not exist on type '{name}'.")
        out[key] = _check_string(f"{name}.{key}", item)
    return out


def clean_value(name: str, value: Any) -> Any:
    """Validate one writable property value and return its stored form."""
    kind = WRITABLE[name]
    if kind == STRING:
        return _check_string(name, value)
    if kind == STRINGS:
        return _check_strings(name, value)
    if kind == DATETIME:
        if value is None:
            return None
        if not isinstance(value, str):
            raise BodyError(f"Property '{name}' expects Edm.DateTimeOffset.")
        return parse_datetime(value)
    if kind == ADDRESS:
        return _check_complex(name, value, ADDRESS_KEYS)
    # EMAILS
    if value is None:
        return []
    if not isinstance(value, list):
        raise BodyError(f"Property '{name}' expects Collection(microsoft.graph.emailAddress).")
    return [_check_complex("emailAddress", item, EMAIL_KEYS) for item in value]


def clean_extended(value: Any) -> dict[str, str | None]:
    """Validate ``singleValueExtendedProperties``: a list of ``{"id", "value"}``."""
    if not isinstance(value, list):
        raise BodyError(f"Property '{EXTENDED}' expects a collection.")
    out: dict[str, str | None] = {}
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise BodyError("Each single-value extended property needs a string 'id'.")
        val = item.get("value")
        if val is not None and not isinstance(val, str):
            raise BodyError("A single-value extended property's 'value' must be a string.")
        out[item["id"]] = val
    return out


def split_body(body: Any) -> tuple[dict[str, Any], dict[str, str | None] | None]:
    """Split a POST/PATCH body into (properties, extended properties or None).

    Annotations (``@odata.type``) and read-only properties are ignored; an unknown
    property is refused, as Graph refuses it.
    """
    if not isinstance(body, dict):
        raise BodyError("The request body must be a JSON object.")
    props: dict[str, Any] = {}
    extended = None
    for name, value in body.items():
        if name.startswith("@") or "@odata." in name or name in READ_ONLY:
            continue
        if name == EXTENDED:
            extended = clean_extended(value)
        elif name in WRITABLE:
            props[name] = clean_value(name, value)
        else:
            raise BodyError(f"Could not find a property named '{name}' on type 'microsoft.graph.contact'.")
    return props, extended


def merge(stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """PATCH semantics: top-level properties replace, complex ones merge key by key (OData)."""
    out = dict(stored)
    for name, value in patch.items():
        if WRITABLE[name] == ADDRESS and value:
            merged = {**(out.get(name) or {}), **value}
            out[name] = {k: v for k, v in merged.items() if v is not None}
        else:
            out[name] = value
    return out


def default_display_name(props: dict[str, Any]) -> str | None:
    """Outlook fills displayName from the name parts when a client does not send one."""
    parts = [props.get("givenName"), props.get("middleName"), props.get("surname")]
    text = " ".join(p.strip() for p in parts if p and p.strip())
    return text or None


_EMPTY: dict[str, Any] = {
    name: [] if kind in (STRINGS, EMAILS) else {} if kind == ADDRESS else None for name, kind in WRITABLE.items()
}


def full_shape(props: dict[str, Any]) -> dict[str, Any]:
    """Every writable property present: null, [] or {} when unset, as Graph answers.

    The empty [] and {} are shared between answers (one dict merge per contact keeps a
    10,000-contact delta fast): answers are serialised, never mutated.
    """
    return {**_EMPTY, **props}
