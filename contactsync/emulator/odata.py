"""OData as Graph speaks it: requests and answers, query options, the JSON of contacts and folders.

Shared by the API (``graph.py``), the HTTP shell and ``$batch`` (``server.py``) so that a
top-level request and one inside a batch are read and answered the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from contactsync.emulator import props as P
from contactsync.emulator.records import Contact, Folder

DEFAULT_TOP = 10
MAX_TOP = 1000
#: Contact delta pages: Graph documents no limit for ``Prefer: odata.maxpagesize``, but
#: caps contact pages at 200, also without the header (Microsoft Q&A, "contact: delta API
#: what limit can we use for odata.maxpagesize", answered 2025-05-19); a larger ask gets 200.
DEFAULT_DELTA_PAGE = 200
MAX_DELTA_PAGE = 200
CONTACT_TYPE = "#microsoft.graph.contact"
ALL_CONTACT_PROPS = ("id", "createdDateTime", "lastModifiedDateTime", "changeKey", "parentFolderId",
                     *P.WRITABLE)


@dataclass
class GraphRequest:
    """One Graph call: path relative to ``/v1.0`` (decoded), query keys decoded (``$filter``)."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: Any = None
    base_url: str = "http://127.0.0.1/v1.0"


@dataclass
class GraphResponse:
    """An answer; ``raw`` (JSON text) replaces ``body`` where the answer is built as text."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: str | None = None

    def json_body(self) -> Any:
        return json.loads(self.raw) if self.raw is not None else self.body

    def text(self) -> str | None:
        if self.raw is not None:
            return self.raw
        return None if self.body is None else json.dumps(self.body, separators=(",", ":"))


class GraphError(Exception):
    """Answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> GraphResponse:
        return error_response(self.status, self.code, self.message)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> GraphResponse:
    body = {"error": {"code": code, "message": message, "innerError": {"date": _now_seconds()}}}
    return GraphResponse(status, body, headers or {})


def _now_seconds() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def bad_request(message: str, code: str = "ErrorInvalidRequest") -> GraphError:
    return GraphError(400, code, message)


# -- headers and query options ---------------------------------------------------------

PREFER_PAGE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.I)
_PREFER_IMMUTABLE = re.compile(r"IdType\s*=\s*\"?ImmutableId\"?", re.I)
_EXPAND = re.compile(r"^\s*singleValueExtendedProperties\s*(?:\(\s*\$filter\s*=\s*(.*)\)\s*)?$", re.I | re.S)
_EXT_ID = re.compile(r"id\s+eq\s+'((?:[^']|'')*)'", re.I)
_QUOTED = r"'((?:[^']|'')*)'"
_EXT_FILTER = re.compile(
    r"^\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+" + _QUOTED
    + r"\s+and\s+\1/value\s+eq\s+" + _QUOTED + r"\s*\)\s*$", re.I)
_EMAIL_FILTER = re.compile(
    r"^\s*emailAddresses/any\(\s*(\w+)\s*:\s*\1/address\s+eq\s+" + _QUOTED + r"\s*\)\s*$", re.I)
_PROP_FILTER = re.compile(r"^\s*(\w+)\s+eq\s+" + _QUOTED + r"\s*$")
FOLDER_FILTER = re.compile(r"^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$", re.I)


def immutable_ids(req: GraphRequest) -> bool:
    return bool(_PREFER_IMMUTABLE.search(req.headers.get("prefer", "")))


@dataclass(frozen=True)
class View:
    """How contacts are rendered for one request: id kind, $select, $expand."""

    immutable: bool = False
    select: tuple[str, ...] | None = None
    expand: tuple[str, ...] | None = None  # extended property ids, () = all, None = no expand


def parse_select(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in ALL_CONTACT_PROPS:
            raise bad_request(f"Could not find a property named '{name}' on type 'microsoft.graph.contact'.",
                              "RequestBroker--ParseUri")
    return names


def parse_expand(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    match = _EXPAND.match(text)
    if not match:
        raise bad_request(f"Unsupported $expand: {text}", "RequestBroker--ParseUri")
    if match.group(1) is None:
        return ()
    ids = tuple(m.replace("''", "'") for m in _EXT_ID.findall(match.group(1)))
    if not ids:
        raise bad_request(f"Unsupported $filter in $expand: {match.group(1)}", "RequestBroker--ParseUri")
    return ids


def view_of(req: GraphRequest) -> View:
    return View(immutable_ids(req), parse_select(req.query.get("$select")), parse_expand(req.query.get("$expand")))


def render_contact(c: Contact, view: View) -> dict[str, Any]:
    """The Graph JSON of a contact (full shape, or the ``$select``ed part plus id)."""
    full: dict[str, Any] = {
        "@odata.etag": f'W/"{c.change_key}"',
        "id": c.iid if view.immutable else c.id,
        "createdDateTime": c.created,
        "lastModifiedDateTime": c.modified,
        "changeKey": c.change_key,
        "parentFolderId": c.folder_id,
    }
    # The stored properties are parsed only when the answer holds one: a ``$select=id``
    # read of a folder (the sync's tag read, with its ``$expand``) needs none of them, and
    # parsing them made a read of 1,000 hold the emulator's one thread ~0.2 s, which the
    # requests beside it (another place each, as at Graph) waited for.
    if view.select is None or not set(view.select) <= full.keys():
        full.update(P.full_shape(c.props))
    if view.select is not None:
        keep = {"@odata.etag", "id", *view.select}
        full = {k: v for k, v in full.items() if k in keep}
    found = _extended(c, view)
    if found:
        full[P.EXTENDED] = found
    return full


def _extended(c: Contact, view: View) -> list[dict[str, Any]]:
    if view.expand is None or c.ext_text == "{}":
        return []
    wanted = {i.lower() for i in view.expand}
    return [{"id": k, "value": v} for k, v in c.ext.items() if not wanted or k.lower() in wanted]


def contact_json(c: Contact, view: View, odata_type: bool = False) -> str:
    """:func:`render_contact` as JSON text, assembled from the stored text when no $select.

    Ids, timestamps and change keys are URL-safe base64 or ISO text: nothing to escape.
    """
    if view.select is not None:
        body = render_contact(c, view)
        if odata_type:
            body["@odata.type"] = CONTACT_TYPE
        return json.dumps(body, separators=(",", ":"))
    head = (
        ('{"@odata.type":"' + CONTACT_TYPE + '",' if odata_type else "{")
        + f'"@odata.etag":"W/\\"{c.change_key}\\"","id":"{c.iid if view.immutable else c.id}",'
        f'"createdDateTime":"{c.created}","lastModifiedDateTime":"{c.modified}",'
        f'"changeKey":"{c.change_key}","parentFolderId":"{c.folder_id}",'
    )
    found = _extended(c, view)
    tail = f',"{P.EXTENDED}":{json.dumps(found, separators=(",", ":"))}}}' if found else "}"
    return head + c.props_text[1:-1] + tail


def partial_json(c: Contact, view: View, changed: list[str]) -> str:
    """A delta item of an updated contact as Graph may send it: its id, changeKey,
    lastModifiedDateTime and only the properties changed since the token (null when
    cleared); learn.microsoft.com/graph/delta-query-overview, "Resource representation
    in the delta query response"."""
    full = render_contact(c, view)
    keep = {"@odata.etag", "id", "changeKey", "lastModifiedDateTime", *changed}
    if view.select is not None:
        keep &= {"@odata.etag", "id", *view.select} | {"changeKey", "lastModifiedDateTime"}
    body = {"@odata.type": CONTACT_TYPE, **{k: v for k, v in full.items() if k in keep}}
    if P.EXTENDED in changed and view.expand is not None:
        body[P.EXTENDED] = full.get(P.EXTENDED, [])
    return json.dumps(body, separators=(",", ":"))


def render_folder(f: Folder) -> dict[str, Any]:
    return {"id": f.id, "displayName": f.name, "parentFolderId": f.parent_id}


def int_option(req: GraphRequest, name: str, default: int) -> int:
    raw = req.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"Invalid value '{raw}' for {name}.", "BadRequest") from None
    if value < 0:
        raise bad_request(f"Invalid value '{raw}' for {name}.", "BadRequest")
    return value


def link(req: GraphRequest, path: str, params: dict[str, str]) -> str:
    """An absolute paging link, with ``$`` left readable as Graph writes it."""
    return f"{req.base_url}{quote(path, safe='/@')}?{urlencode(params, safe='$@(),= ', quote_via=quote)}"


def contact_filter(text: str) -> Callable[[Contact], bool]:
    """The ``$filter`` forms clients use on contacts: by extended property, email, or a string property."""
    if match := _EXT_FILTER.match(text):
        pid, value = (g.replace("''", "'") for g in match.group(2, 3))
        return lambda c: any(k.lower() == pid.lower() and v == value for k, v in c.ext.items())
    if match := _EMAIL_FILTER.match(text):
        address = match.group(2).replace("''", "'").lower()
        return lambda c: any((e.get("address") or "").lower() == address for e in c.props.get("emailAddresses", []))
    match = _PROP_FILTER.match(text)
    if match and P.WRITABLE.get(match.group(1)) == P.STRING:
        name, value = match.group(1), match.group(2).replace("''", "'").lower()
        return lambda c: (c.props.get(name) or "").lower() == value
    raise bad_request(f"Unsupported $filter on contacts: {text}", "ErrorInvalidUrlQueryFilter")


_SORTABLE = {"createdDateTime": "created", "lastModifiedDateTime": "modified"}


def order_contacts(contacts: list[Contact], text: str) -> list[Contact]:
    """``$orderby=name [asc|desc]`` (O365 sends it) on a string property or a timestamp."""
    parts = text.split()
    name = parts[0] if parts else ""
    desc = len(parts) > 1 and parts[1].lower() == "desc"
    if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise bad_request(f"Unsupported $orderby: {text}", "ErrorInvalidUrlQuery")
    if name in _SORTABLE:
        attr = _SORTABLE[name]
        return sorted(contacts, key=lambda c: getattr(c, attr), reverse=desc)
    if P.WRITABLE.get(name) != P.STRING:
        raise bad_request(f"Unsupported $orderby: {text}", "ErrorInvalidUrlQuery")
    return sorted(contacts, key=lambda c: ((c.props.get(name) or "").lower(), c.pk), reverse=desc)


# -- delta tokens -----------------------------------------------------------------------


class Tokens:
    """Signed delta and skip tokens: a token from elsewhere or tampered with is refused (410)."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def encode(self, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        sig = hmac.new(self._key, raw, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(sig + raw).decode().rstrip("=")

    def decode(self, token: str) -> dict[str, Any] | None:
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            sig, raw = blob[:12], blob[12:]
            if not hmac.compare_digest(sig, hmac.new(self._key, raw, hashlib.sha256).digest()[:12]):
                return None
            payload = json.loads(raw)
            return payload if isinstance(payload, dict) else None
        except (ValueError, TypeError):
            return None


def sync_state_gone() -> GraphError:
    return GraphError(410, "SyncStateNotFound",
                      "The sync state generation is invalid or expired; start over with a full delta.")


def page_json(items: list[str], extra: dict[str, str]) -> str:
    """``{"value": [...], "@odata.nextLink"|"@odata.deltaLink": ...}`` from JSON fragments."""
    links = "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in extra.items())
    return '{"value":[' + ",".join(items) + "]" + links + "}"


def split_for_create(body: Any) -> tuple[dict[str, Any], dict[str, str | None]]:
    """A POST body's stored values (displayName filled as Outlook does) and extended properties."""
    values, ext = P.split_body(body)
    values = {k: v for k, v in values.items() if v not in (None, [], {})}
    if not values.get("displayName"):
        values["displayName"] = P.default_display_name(values)
    return values, {k: v for k, v in (ext or {}).items() if v is not None}
