"""The Graph v1.0 contacts API as a plain function: a request in, a response out.

Kept free of HTTP so that a top-level request and each request inside a ``$batch`` go
through exactly the same code (spec/GRAPH_API.md). The HTTP shell, throttling and faults
live in ``server.py`` and ``controls.py``; query options and JSON shapes in ``odata.py``.
"""

from __future__ import annotations

import json
from typing import Any

from contactsync.emulator import props as P
from contactsync.emulator.odata import (
    DEFAULT_DELTA_PAGE,
    DEFAULT_TOP,
    FOLDER_FILTER,
    MAX_DELTA_PAGE,
    MAX_TOP,
    PREFER_PAGE,
    GraphError,
    GraphRequest,
    GraphResponse,
    Tokens,
    View,
    bad_request,
    contact_filter,
    contact_json,
    error_response,
    immutable_ids,
    int_option,
    link,
    not_found,
    order_contacts,
    page_json,
    parse_expand,
    parse_select,
    partial_json,
    render_contact,
    render_folder,
    split_for_create,
    sync_state_gone,
    view_of,
)
from contactsync.emulator.store import (
    Contact,
    DistinguishedFolder,
    Folder,
    FolderExists,
    Mailbox,
    Removed,
    Store,
)


class GraphApi:
    """Routes a :class:`GraphRequest` to the store and shapes the answer as Graph does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tokens = Tokens(store.secret)
        self.reset_modes()

    def reset_modes(self) -> None:
        """How delta answers (``POST /_emulator/delta``) and which sync states still live."""
        #: "full": an updated contact comes whole; "changed": as its id, changeKey,
        #: lastModifiedDateTime and the properties changed since the token
        #: (learn.microsoft.com/graph/delta-query-overview, "Resource representation").
        self.delta_updates = "full"
        #: "honour" | "ignore" | "reject" ``$expand`` on contact delta, which Graph
        #: documents with ``$select`` only (learn.microsoft.com/graph/api/contact-delta;
        #: microsoft-graph-docs issues 7929, 2270: ignored or 500 on other Outlook deltas).
        self.delta_expand = "honour"
        #: Per mailbox (lower-case UPN): the generation of its sync state; a token of an
        #: older one answers 410 SyncStateNotFound (delta-query-overview, "Token duration").
        self.sync_generation: dict[str, int] = {}

    def expire_sync_state(self, upn: str) -> int:
        """Every delta and skip token issued for ``upn`` so far is gone (410) from now on."""
        key = upn.lower()
        self.sync_generation[key] = self.sync_generation.get(key, 0) + 1
        return self.sync_generation[key]

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
            match = FOLDER_FILTER.match(flt)
            if not match:
                raise bad_request(f"Unsupported $filter: {flt}", "ErrorInvalidUrlQueryFilter")
            wanted = match.group(1).replace("''", "'").lower()
            folders = [f for f in folders if f.name.lower() == wanted]
        skip, top = int_option(req, "$skip", 0), min(int_option(req, "$top", DEFAULT_TOP), MAX_TOP)
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
        if m in ("PATCH", "DELETE"):
            _check_if_match(req, contact)
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
        # The stored text as it is (contact_json), not parsed back into an object.
        return GraphResponse(201, raw=contact_json(contact, view))

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
        skip, top = int_option(req, "$skip", 0), min(int_option(req, "$top", DEFAULT_TOP), MAX_TOP)
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
        if "$expand" in req.query:
            if self.delta_expand == "reject":
                raise bad_request("$expand is not supported on contact delta: use $select.", "ErrorInvalidUrlQuery")
            if self.delta_expand == "ignore":
                req.query = {k: v for k, v in req.query.items() if k != "$expand"}
        match = PREFER_PAGE.search(req.headers.get("prefer", ""))
        page = min(max(int(match.group(1)), 1), MAX_DELTA_PAGE) if match else DEFAULT_DELTA_PAGE
        raw = req.query.get("$skiptoken") or req.query.get("$deltatoken")
        generation = self.sync_generation.get(mbx.upn.lower(), 0)
        if raw == "latest" and "$deltatoken" in req.query:
            # Graph's shortcut: no items, just a delta link from now on.
            token = {"m": mbx.mid, "f": folder.id, "a": self.store.current_seq(mbx), "i": 1, "g": generation,
                     "s": req.query.get("$select"), "x": req.query.get("$expand")}
            return GraphResponse(200, {"value": [], "@odata.deltaLink": link(
                req, path, {"$deltatoken": self.tokens.encode(token)})})
        if raw is not None:
            state = self.tokens.decode(raw)
            if (state is None or state.get("m") != mbx.mid or state.get("f") != folder.id
                    or not isinstance(state.get("a"), int) or state["a"] > self.store.current_seq(mbx)
                    or state.get("g", 0) != generation):
                raise sync_state_gone()
            if self.delta_expand == "ignore":
                state = {**state, "x": None}
        else:
            # "z": where a full pass started; its delta token resumes from there, so a
            # contact that leaves the folder while the pages are read is still reported.
            state = {"m": mbx.mid, "f": folder.id, "a": 0, "i": 0, "z": self.store.current_seq(mbx),
                     "g": generation, "s": req.query.get("$select"), "x": req.query.get("$expand")}
        view = View(immutable_ids(req),
                    parse_select(req.query.get("$select") or state.get("s")),
                    parse_expand(req.query.get("$expand") or state.get("x")))
        items, more, seq = self.store.delta_page(mbx, folder.id, state["a"], bool(state["i"]), page)
        partial: dict[int, list[str] | None] = {}
        if self.delta_updates == "changed" and state["i"]:
            partial = self.store.changes_since([i for i in items if isinstance(i, Contact)], state["a"])
        value = [
            json.dumps({"id": i.iid if view.immutable else i.id, "@removed": {"reason": i.reason}})
            if isinstance(i, Removed)
            else partial_json(i, view, partial[i.pk]) if partial.get(i.pk) is not None
            else contact_json(i, view, odata_type=True)
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


def _etag_key(etag: str) -> str:
    """``W/"<changeKey>"``, ``"<changeKey>"`` or the bare key -> the key."""
    text = etag.strip()
    if text[:2].upper() == "W/":
        text = text[2:]
    return text.strip('"')


def _check_if_match(req: GraphRequest, contact: Contact) -> None:
    """A PATCH or DELETE whose ``If-Match`` names an older version of the contact: 412.

    Every contact has ``@odata.etag`` ``W/"<changeKey>"``; a write carrying a stale one
    answers 412 ErrorIrresolvableConflict (spec/GRAPH_API.md, "Concurrent edits";
    learn.microsoft.com/graph/api/resources/contact, Outlook's change keys). ``*`` and
    no header match any version.
    """
    wanted = req.headers.get("if-match")
    if wanted is None or wanted.strip() == "*":
        return
    keys = {_etag_key(part) for part in wanted.split(",") if part.strip()}
    if contact.change_key not in keys:
        raise GraphError(412, "ErrorIrresolvableConflict",
                         "The send or update operation could not be performed because the change key "
                         "passed in the request does not match the current change key for the item.")


_KEYWORDS = {k.lower(): k for k in ("users", "contacts", "contactFolders", "childFolders", "delta",
                                     "permanentDelete")}


def _function_name(segment: str) -> str:
    """``delta()`` and ``microsoft.graph.delta()`` are ``delta``; Graph's segment names ignore case."""
    name = segment[:-2] if segment.endswith("()") else segment
    name = name.removeprefix("microsoft.graph.")
    return _KEYWORDS.get(name.lower(), name)
