"""The Graph v1.0 contacts API as a plain function: a request in, a response out.

Kept free of HTTP so that a top-level request and each request inside a ``$batch`` go
through exactly the same code (spec/GRAPH_API.md). The HTTP shell, throttling and faults
live in ``server.py`` and ``controls.py``.
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
from contactsync.emulator.store import (
    Contact,
    DistinguishedFolder,
    Folder,
    FolderExists,
    Mailbox,
    Removed,
    Store,
)

DEFAULT_TOP = 10
MAX_TOP = 1000
DEFAULT_DELTA_PAGE = 100
MAX_DELTA_PAGE = 1000
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

_PREFER_PAGE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.I)
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
_FOLDER_FILTER = re.compile(r"^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$", re.I)


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
        **P.full_shape(c.props),
    }
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


def render_folder(f: Folder) -> dict[str, Any]:
    return {"id": f.id, "displayName": f.name, "parentFolderId": f.parent_id}


def _int_option(req: GraphRequest, name: str, default: int) -> int:
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


# -- the API ------------------------------------------------------------------------------


class GraphApi:
    """Routes a :class:`GraphRequest` to the store and shapes the answer as Graph does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tokens = Tokens(store.secret)

    def handle(self, req: GraphRequest) -> GraphResponse:
        try:
            return self._route(req)
        except GraphError as exc:
            return exc.response()
        except P.BodyError as exc:
            return error_response(400, "ErrorInvalidRequest", str(exc))

    def _route(self, req: GraphRequest) -> GraphResponse:
        segs = [s for s in req.path.split("/") if s]
        segs = [_function_name(s) for s in segs]
        if len(segs) < 3 or segs[0].lower() != "users":
            raise bad_request(f"Resource not found for the segment '{'/'.join(segs) or '/'}'.", "BadRequest")
        mbx = self.store.mailbox(segs[1])
        rest, m = segs[2:], req.method
        head = rest[0]
        if head == "contacts":
            folder = self._folder(mbx, mbx.contacts_id)
            return self._contacts(req, mbx, folder, rest[1:], f"/users/{segs[1]}/contacts")
        if head != "contactFolders":
            raise bad_request(f"Resource not found for the segment '{head}'.", "BadRequest")
        base = f"/users/{segs[1]}/contactFolders"
        if len(rest) == 1:
            return self._folders(req, mbx, mbx.contacts_id, m)
        folder = self._folder(mbx, rest[1])
        tail = rest[2:]
        if not tail:
            return self._one_folder(req, mbx, folder, m)
        if tail[0] == "childFolders":
            if len(tail) == 1:
                return self._folders(req, mbx, folder.id, m)
            child = self._folder(mbx, tail[1])
            if child.parent_id != folder.id:
                raise not_found()
            if len(tail) == 2:
                return self._one_folder(req, mbx, child, m)
            if tail[2] == "contacts":
                return self._contacts(req, mbx, child, tail[3:], f"{base}/{rest[1]}/childFolders/{tail[1]}/contacts")
        if tail[0] == "contacts":
            return self._contacts(req, mbx, folder, tail[1:], f"{base}/{rest[1]}/contacts")
        raise bad_request(f"Resource not found for the segment '{tail[0]}'.", "BadRequest")

    # folders

    def _folder(self, mbx: Mailbox, folder_id: str) -> Folder:
        folder = self.store.folder(mbx, folder_id)
        if folder is None:
            raise not_found()
        return folder

    def _folders(self, req: GraphRequest, mbx: Mailbox, parent_id: str, method: str) -> GraphResponse:
        if method == "POST":
            body = req.body if isinstance(req.body, dict) else {}
            name = body.get("displayName")
            if not isinstance(name, str) or not name.strip():
                raise bad_request("A folder needs a displayName.")
            try:
                folder = self.store.create_folder(mbx, parent_id, name)
            except FolderExists:
                raise GraphError(409, "ErrorFolderExists",
                                 "A folder with the specified name already exists.") from None
            return GraphResponse(201, render_folder(folder))
        if method != "GET":
            raise GraphError(405, "ErrorInvalidRequest", f"The {method} method is not allowed here.")
        folders = self.store.child_folders(mbx, parent_id)
        flt = req.query.get("$filter")
        if flt:
            match = _FOLDER_FILTER.match(flt)
            if not match:
                raise bad_request(f"Unsupported $filter: {flt}", "ErrorInvalidUrlQueryFilter")
            wanted = match.group(1).replace("''", "'").lower()
            folders = [f for f in folders if f.name.lower() == wanted]
        skip, top = _int_option(req, "$skip", 0), min(_int_option(req, "$top", DEFAULT_TOP), MAX_TOP)
        page = folders[skip: skip + top]
        body: dict[str, Any] = {"value": [render_folder(f) for f in page]}
        if skip + top < len(folders):
            params = {k: v for k, v in req.query.items() if k in ("$filter", "$top")}
            params["$skip"] = str(skip + top)
            body["@odata.nextLink"] = link(req, req.path, params)
        return GraphResponse(200, body)

    def _one_folder(self, req: GraphRequest, mbx: Mailbox, folder: Folder, method: str) -> GraphResponse:
        if method == "GET":
            return GraphResponse(200, render_folder(folder))
        try:
            if method == "PATCH":
                name = (req.body or {}).get("displayName") if isinstance(req.body, dict) else None
                if name is None:
                    return GraphResponse(200, render_folder(folder))
                if not isinstance(name, str) or not name.strip():
                    raise bad_request("displayName must be a non-empty string.")
                return GraphResponse(200, render_folder(self.store.rename_folder(folder, name)))
            if method == "DELETE":
                self.store.delete_folder(mbx, folder)
                return GraphResponse(204)
        except FolderExists:
            raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.") from None
        except DistinguishedFolder:
            raise GraphError(403, "ErrorDeleteDistinguishedFolder",
                             "Distinguished folders cannot be deleted or renamed.") from None
        raise GraphError(405, "ErrorInvalidRequest", f"The {method} method is not allowed here.")

    # contacts

    def _contacts(self, req: GraphRequest, mbx: Mailbox, folder: Folder, tail: list[str],
                  path: str) -> GraphResponse:
        m = req.method
        if not tail:
            if m == "POST":
                return self._create(req, mbx, folder)
            if m == "GET":
                return self._list(req, folder, path)
            raise GraphError(405, "ErrorInvalidRequest", f"The {m} method is not allowed here.")
        if tail == ["delta"]:
            if m != "GET":
                raise GraphError(405, "ErrorInvalidRequest", "delta is a function: use GET.")
            return self._delta(req, mbx, folder, path + "/delta")
        contact = self.store.contact(mbx, tail[0])
        if contact is None:
            raise not_found()
        if len(tail) == 2 and tail[1] == "permanentDelete" and m == "POST":
            self.store.permanent_delete(contact)
            return GraphResponse(204)
        if len(tail) != 1:
            raise bad_request(f"Resource not found for the segment '{tail[1]}'.", "BadRequest")
        if m == "GET":
            return GraphResponse(200, render_contact(contact, view_of(req)))
        if m == "PATCH":
            return self._update(req, contact)
        if m == "DELETE":
            if contact.folder_id == mbx.deleted_id:
                self.store.permanent_delete(contact)
            else:
                self.store.move_contact(contact, mbx.deleted_id, reason="deleted")
            return GraphResponse(204)
        raise GraphError(405, "ErrorInvalidRequest", f"The {m} method is not allowed here.")

    def _create(self, req: GraphRequest, mbx: Mailbox, folder: Folder) -> GraphResponse:
        values, ext = split_for_create(req.body)
        contact = self.store.create_contact(mbx, folder.id, values, ext)
        view = View(immutable=immutable_ids(req))
        return GraphResponse(201, render_contact(contact, view))

    def _update(self, req: GraphRequest, contact: Contact) -> GraphResponse:
        values, ext = P.split_body(req.body)
        old_auto = P.default_display_name(contact.props)
        merged = P.merge(contact.props, values)
        if "displayName" not in values and contact.props.get("displayName") == old_auto:
            merged["displayName"] = P.default_display_name(merged)
        merged = {k: v for k, v in merged.items() if v not in (None, [], {})}
        # A property sent with a null value is removed; the others are set or replaced.
        new_ext = {k: v for k, v in {**contact.ext, **ext}.items() if v is not None} if ext else contact.ext
        updated = self.store.update_contact(contact, merged, new_ext)
        return GraphResponse(200, render_contact(updated, View(immutable=immutable_ids(req))))

    def _list(self, req: GraphRequest, folder: Folder, path: str) -> GraphResponse:
        view = view_of(req)
        skip, top = _int_option(req, "$skip", 0), min(_int_option(req, "$top", DEFAULT_TOP), MAX_TOP)
        flt, order = req.query.get("$filter"), req.query.get("$orderby")
        if flt or order:
            matching = self.store.folder_contacts(folder.id)
            if flt:
                keep = contact_filter(flt)
                matching = [c for c in matching if keep(c)]
            if order:
                matching = order_contacts(matching, order)
            contacts, more = matching[skip: skip + top], len(matching) > skip + top
        else:
            contacts, more = self.store.list_contacts(folder.id, skip, top)
        extra: dict[str, str] = {}
        if more:
            params = {k: v for k, v in req.query.items()
                      if k in ("$top", "$select", "$expand", "$filter", "$orderby")}
            params["$skip"] = str(skip + top)
            extra["@odata.nextLink"] = link(req, req.path, params)
        return GraphResponse(200, raw=page_json([contact_json(c, view) for c in contacts], extra))

    # delta

    def _delta(self, req: GraphRequest, mbx: Mailbox, folder: Folder, path: str) -> GraphResponse:
        if "$top" in req.query:
            raise bad_request("$top is not supported on delta: use the header Prefer: odata.maxpagesize.",
                              "ErrorInvalidUrlQuery")
        if "$filter" in req.query:
            raise bad_request("$filter is not supported on contact delta.", "ErrorInvalidUrlQuery")
        match = _PREFER_PAGE.search(req.headers.get("prefer", ""))
        page = min(max(int(match.group(1)), 1), MAX_DELTA_PAGE) if match else DEFAULT_DELTA_PAGE
        raw = req.query.get("$skiptoken") or req.query.get("$deltatoken")
        if raw == "latest" and "$deltatoken" in req.query:
            # Graph's shortcut: no items, just a delta link from now on.
            token = {"m": mbx.mid, "f": folder.id, "a": self.store.current_seq(mbx), "i": 1,
                     "s": req.query.get("$select"), "x": req.query.get("$expand")}
            return GraphResponse(200, {"value": [], "@odata.deltaLink": link(
                req, path, {"$deltatoken": self.tokens.encode(token)})})
        if raw is not None:
            state = self.tokens.decode(raw)
            if (state is None or state.get("m") != mbx.mid or state.get("f") != folder.id
                    or not isinstance(state.get("a"), int) or state["a"] > self.store.current_seq(mbx)):
                raise sync_state_gone()
        else:
            # "z": where a full pass started; its delta token resumes from there, so a
            # contact that leaves the folder while the pages are read is still reported.
            state = {"m": mbx.mid, "f": folder.id, "a": 0, "i": 0, "z": self.store.current_seq(mbx),
                     "s": req.query.get("$select"), "x": req.query.get("$expand")}
        view = View(immutable_ids(req),
                    parse_select(req.query.get("$select") or state.get("s")),
                    parse_expand(req.query.get("$expand") or state.get("x")))
        items, more, seq = self.store.delta_page(mbx, folder.id, state["a"], bool(state["i"]), page)
        value = [
            json.dumps({"id": i.iid if view.immutable else i.id, "@removed": {"reason": i.reason}})
            if isinstance(i, Removed) else contact_json(i, view, odata_type=True)
            for i in items
        ]
        extra: dict[str, str] = {}
        if more:
            extra["@odata.nextLink"] = link(req, path, {"$skiptoken": self.tokens.encode({**state, "a": items[-1].seq})})
        else:
            resume = seq if state["i"] else int(state.get("z", 0))
            extra["@odata.deltaLink"] = link(req, path, {"$deltatoken": self.tokens.encode({**state, "a": resume, "i": 1})})
        headers = {"Preference-Applied": f"odata.maxpagesize={page}"} if match else {}
        return GraphResponse(200, headers=headers, raw=page_json(value, extra))


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


_KEYWORDS = {k.lower(): k for k in ("users", "contacts", "contactFolders", "childFolders", "delta",
                                     "permanentDelete")}


def _function_name(segment: str) -> str:
    """``delta()`` and ``microsoft.graph.delta()`` are ``delta``; Graph's segment names ignore case."""
    name = segment[:-2] if segment.endswith("()") else segment
    name = name.removeprefix("microsoft.graph.")
    return _KEYWORDS.get(name.lower(), name)
