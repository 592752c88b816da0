"""The emulator's control endpoints (``/_emulator/...``, spec/INTERFACE.md): not Graph.

Stats, faults, limits, latency, delta modes, sync-state expiry, and what the Outlook
application can do that Graph v1.0 cannot (move, Deleted Items), plus extras for tests
and benchmarks (health, reset, seed). Not counted in the stats.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contactsync.emulator.controls import Fault
from contactsync.emulator.odata import (
    GraphRequest,
    GraphResponse,
    View,
    error_response,
    immutable_ids,
    render_contact,
    split_for_create,
)
from contactsync.emulator.props import BodyError

if TYPE_CHECKING:
    from contactsync.emulator.controls import Controls
    from contactsync.emulator.graph import GraphApi
    from contactsync.emulator.store import Store


def http_headers(request: Request) -> dict[str, str]:
    """Lower-case names; a header sent twice (two ``Prefer`` lines) keeps both values."""
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def json_response(resp: GraphResponse) -> Response:
    text = resp.text()
    if text is None:
        return Response(status_code=resp.status, headers=resp.headers)
    return Response(
        text,
        status_code=resp.status,
        headers=resp.headers,
        media_type="application/json",
    )


class ControlEndpoints:
    """Handlers of ``/_emulator/...``; mixed into :class:`~contactsync.emulator.app.Emulator`."""

    store: Store
    api: GraphApi
    controls: Controls

    @staticmethod
    async def _body(request: Request) -> Any:
        raw = await request.body()
        return json.loads(raw) if raw.strip() else None


    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def get_stats(self, request: Request) -> Response:
        return JSONResponse(self.controls.stats())

    async def reset_stats(self, request: Request) -> Response:
        self.controls.reset_stats()
        return JSONResponse(self.controls.stats())

    async def faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.controls.set_fault(None)
            return Response(status_code=204)
        try:
            fault = Fault.parse(await self._body(request))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": {"code": "BadRequest", "message": str(exc)}}, status_code=400)
        self.controls.set_fault(fault)
        return JSONResponse(fault.describe())

    async def set_limits(self, request: Request) -> Response:
        try:
            limits = self.controls.set_limits(await self._body(request) or {})
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": {"code": "BadRequest", "message": str(exc)}}, status_code=400)
        return JSONResponse(limits.__dict__)

    async def set_latency(self, request: Request) -> Response:
        try:
            ms = float((await self._body(request) or {}).get("ms", 0))
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": {"code": "BadRequest", "message": str(exc)}}, status_code=400)
        self.controls.latency_ms = max(0.0, ms)
        return JSONResponse({"ms": self.controls.latency_ms})

    async def set_delta(self, request: Request) -> Response:
        """``{"updated_items": "full"|"changed", "expand": "honour"|"ignore"|"reject"}``."""
        body = await self._body(request) or {}
        choices = {"updated_items": ("full", "changed"), "expand": ("honour", "ignore", "reject")}
        if not isinstance(body, dict) or any(body.get(k, v[0]) not in v for k, v in choices.items()):
            return JSONResponse({"error": {"code": "BadRequest", "message": f"choose from {choices}"}},
                                status_code=400)
        self.api.delta_updates = body.get("updated_items", self.api.delta_updates)
        self.api.delta_expand = body.get("expand", self.api.delta_expand)
        return JSONResponse({"updated_items": self.api.delta_updates, "expand": self.api.delta_expand})

    async def expire_sync_state(self, request: Request) -> Response:
        """Every delta and skip token issued for the mailbox so far answers 410 from now on."""
        generation = self.api.expire_sync_state(request.path_params["upn"])
        return JSONResponse({"upn": request.path_params["upn"], "generation": generation})

    async def reset(self, request: Request) -> Response:
        """Not in the contract: forget all mailboxes, stats, faults, limits, latency, delta modes."""
        self.store.wipe()
        self.controls.reset()
        self.api.reset_modes()
        return Response(status_code=204)

    async def move(self, request: Request) -> Response:
        upn, cid = request.path_params["upn"], request.path_params["cid"]
        body = await self._body(request)
        dest = body.get("destinationId") if isinstance(body, dict) else None
        mbx = self.store.mailbox(upn)
        contact = self.store.contact(mbx, cid)
        folder = self.store.folder(mbx, dest) if isinstance(dest, str) else None
        if contact is None or folder is None:
            return json_response(error_response(404, "ErrorItemNotFound",
                                                 "The contact or the destination folder was not found."))
        moved = self.store.move_contact(contact, folder.id)
        view = View(immutable=immutable_ids(GraphRequest("POST", "", headers=http_headers(request))))
        return JSONResponse(render_contact(moved, view), status_code=201)

    async def seed(self, request: Request) -> Response:
        """Not in the contract: ``{"folderId", "contacts": [contact, ...]}`` stored in one go.

        For benchmarks that need a big mailbox fast; bodies are validated as a POST's.
        Answers ``{"ids": [...]}`` (immutable ids with ``Prefer: IdType="ImmutableId"``).
        """
        body = await self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("contacts"), list):
            return JSONResponse({"error": {"code": "BadRequest", "message": "needs 'contacts'"}}, status_code=400)
        mbx = self.store.mailbox(request.path_params["upn"])
        folder = self.store.folder(mbx, str(body.get("folderId") or "contacts"))
        if folder is None:
            return json_response(error_response(404, "ErrorItemNotFound", "No such folder."))
        try:
            pairs = [split_for_create(c) for c in body["contacts"]]
        except BodyError as exc:
            return json_response(error_response(400, "ErrorInvalidRequest", str(exc)))
        made = self.store.create_contacts(mbx, folder.id, [p for p, _ in pairs], [e for _, e in pairs])
        imm = immutable_ids(GraphRequest("POST", "", headers=http_headers(request)))
        return JSONResponse({"ids": [c.iid if imm else c.id for c in made]}, status_code=201)

    async def deleted(self, request: Request) -> Response:
        mbx = self.store.mailbox(request.path_params["upn"])
        view = View(immutable=immutable_ids(GraphRequest("GET", "", headers=http_headers(request))))
        return JSONResponse({"value": [render_contact(c, view) for c in self.store.folder_contacts(mbx.deleted_id)]})
