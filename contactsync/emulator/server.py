"""The Graph emulator over real HTTP: a Starlette app on uvicorn, state in SQLite.

``/v1.0/...`` is Graph (``graph.py``); ``/_emulator/...`` are the control endpoints of
spec/INTERFACE.md. Around every Graph call (and every request inside a ``$batch``) this
module applies what a real tenant does to a client: the Bearer check, Outlook's
throttling, injected faults and network latency.

Faults apply to single requests and to each request inside a ``$batch`` (by its method),
never to the ``$batch`` envelope itself; an inner ``"drop"`` drops the whole batch's
connection after the inner requests before it were applied, as a lost answer would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from contactsync.emulator.batch import batch_answer, parse_batch, split_url
from contactsync.emulator.controls import Controls, Fault, retry_after_header
from contactsync.emulator.graph import GraphApi
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
from contactsync.emulator.store import Store

ALL_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
#: Requests of one ``$batch`` that Graph hands to Outlook at once (json-batching,
#: throttling-limits "Outlook service limits").
BATCH_PARALLEL = 4
_CYCLE_KEY = "contactsync.emulator.cycle"


class _Dropped(Exception):
    """The connection was closed on purpose (fault "drop"): nothing may be sent."""


class _NoAnswer(Response):
    """What a dropped request "answers": nothing at all."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


def _headers(request: Request) -> dict[str, str]:
    """Lower-case names; a header sent twice (two ``Prefer`` lines) keeps both values."""
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _mailbox_key(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return parts[1].lower() if len(parts) >= 2 and parts[0].lower() == "users" else ""


def _json_response(resp: GraphResponse) -> Response:
    text = resp.text()
    if text is None:
        return Response(status_code=resp.status, headers=resp.headers)
    return Response(
        text,
        status_code=resp.status,
        headers=resp.headers,
        media_type="application/json",
    )


def throttled(retry_after: float, why: str) -> GraphResponse:
    return error_response(429, "TooManyRequests", f"Application is over its {why} limit.",
                          {"Retry-After": retry_after_header(retry_after)})


def fault_response(fault: Fault) -> GraphResponse:
    headers = {"Retry-After": retry_after_header(fault.retry_after, 0)} if fault.retry_after is not None else {}
    if fault.status == 429:
        headers.setdefault("Retry-After", "1")
        return error_response(429, "TooManyRequests", "Injected throttling (emulator fault).", headers)
    if fault.status == 401:
        # An expired app-only token (learn.microsoft.com/graph/resolve-auth-errors; the
        # message Graph sends, spec/GRAPH_API.md "Tokens expire mid-run").
        return error_response(401, "InvalidAuthenticationToken",
                              "Lifetime validation failed, the token is expired.",
                              {"WWW-Authenticate": 'Bearer realm="", authorization_uri='
                               '"https://login.microsoftonline.com/common/oauth2/authorize", '
                               'error="invalid_token", error_description="The access token has expired"'})
    if fault.status == 412:
        # Outlook answers 412 when two writes of one item race, If-Match or not
        # (spec/GRAPH_API.md, "Concurrent edits").
        return error_response(412, "ErrorIrresolvableConflict",
                              "The send or update operation could not be performed because the change key "
                              "passed in the request does not match the current change key for the item.")
    if fault.status == 500:
        return error_response(500, "InternalServerError", "Injected server error (emulator fault).", headers)
    return error_response(503, "ServiceUnavailable", "Injected unavailability (emulator fault).", headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in Graph's error shape too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "ResourceNotFound", 405: "MethodNotAllowed"}.get(status, "BadRequest")
    return _json_response(error_response(status, code, f"{request.method} {request.url.path}: {exc}"))


class _KeepCycle:
    """Keeps uvicorn's request cycle at hand: the "drop" fault closes its transport."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_CYCLE_KEY] = getattr(receive, "__self__", None)
        await self.app(scope, receive, send)


class Emulator:
    """One emulator: its store, its controls, and the ASGI app that serves them."""

    def __init__(self, db_path: str | Path | None = None) -> None:
        self.store = Store(db_path)
        self.api = GraphApi(self.store)
        self.controls = Controls()
        self.app = Starlette(routes=[
            Route("/_emulator/health", self.health, methods=["GET"]),
            Route("/_emulator/stats", self.get_stats, methods=["GET"]),
            Route("/_emulator/stats/reset", self.reset_stats, methods=["POST"]),
            Route("/_emulator/faults", self.faults, methods=["POST", "DELETE"]),
            Route("/_emulator/limits", self.set_limits, methods=["POST"]),
            Route("/_emulator/latency", self.set_latency, methods=["POST"]),
            Route("/_emulator/reset", self.reset, methods=["POST"]),
            Route("/_emulator/delta", self.set_delta, methods=["POST"]),
            Route("/_emulator/users/{upn}/expire-sync-state", self.expire_sync_state, methods=["POST"]),
            Route("/_emulator/users/{upn}/contacts/{cid}/move", self.move, methods=["POST"]),
            Route("/_emulator/users/{upn}/deleted", self.deleted, methods=["GET"]),
            Route("/_emulator/users/{upn}/seed", self.seed, methods=["POST"]),
            Route("/v1.0/{rest:path}", self.graph, methods=ALL_METHODS),
        ], middleware=[Middleware(_KeepCycle)], exception_handlers={HTTPException: _http_error})
        self.app.state.emulator = self


    # -- Graph -----------------------------------------------------------------------------

    async def graph(self, request: Request) -> Response:
        path = "/" + request.path_params["rest"]
        method = request.method
        is_batch = path.rstrip("/") == "/$batch"
        self.controls.count_request(method, batch=is_batch and method == "POST")
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return _json_response(error_response(
                401, "InvalidAuthenticationToken", "Access token is empty."))
        expired = self.controls.pick_fault(method, http=True)
        if expired is not None:
            return _json_response(fault_response(expired))
        try:
            body = await self._body(request)
        except ValueError as exc:
            return _json_response(error_response(400, "BadRequest", f"Invalid JSON body: {exc}"))
        base = str(request.base_url).rstrip("/") + "/v1.0"
        try:
            if is_batch:
                if method != "POST":
                    return _json_response(error_response(405, "BadRequest", "$batch takes POST."))
                return _json_response(await self._batch(request, body, base))
            req = GraphRequest(method, path, dict(request.query_params),
                               _headers(request), body, base)
            return _json_response(await self._single(request, req))
        except _Dropped:
            return _NoAnswer()

    @staticmethod
    async def _body(request: Request) -> Any:
        raw = await request.body()
        return json.loads(raw) if raw.strip() else None

    async def _latency(self) -> None:
        if self.controls.latency_ms > 0:
            await asyncio.sleep(self.controls.latency_ms / 1000.0)

    async def _single(self, request: Request, req: GraphRequest) -> GraphResponse:
        mailbox = _mailbox_key(req.path)
        if not self.controls.acquire_slot(mailbox):
            self.controls.count_throttled()
            return throttled(1, "MailboxConcurrency")
        try:
            await self._latency()
            return self._execute(request, req, mailbox)
        finally:
            self.controls.release_slot(mailbox)

    def _execute(self, request: Request, req: GraphRequest, mailbox: str) -> GraphResponse:
        """Window, fault, then the call itself: the same for single and inner requests."""
        wait = self.controls.take_window(mailbox)
        if wait is not None:
            self.controls.count_throttled()
            return throttled(wait, "ApplicationRequests")
        fault = self.controls.pick_fault(req.method)
        if fault is not None:
            if fault.status == "drop":
                self._drop(request)
            if fault.status != "commit-then-fail":
                if fault.status == 429:
                    self.controls.count_throttled()
                return fault_response(fault)
        resp = self.api.handle(req)
        if fault is not None:  # commit-then-fail: the write happened, the answer is lost
            return error_response(503, "ServiceUnavailable",
                                  "The request was applied but its answer was lost (emulator fault).",
                                  {"Retry-After": retry_after_header(
                                      1 if fault.retry_after is None else fault.retry_after, 0)})
        return resp

    @staticmethod
    def _drop(request: Request) -> None:
        cycle = request.scope.get(_CYCLE_KEY)
        transport = getattr(cycle, "transport", None)
        if transport is not None:
            # Mark the answer as sent so uvicorn does not try to write a 500 afterwards.
            for attr in ("response_started", "response_complete"):
                if hasattr(cycle, attr):
                    setattr(cycle, attr, True)
            transport.abort()
        raise _Dropped()

    async def _batch(self, request: Request, body: Any, base: str) -> GraphResponse:
        """Run a ``$batch``'s requests as Outlook does: up to 4 at a time, each in a place.

        Graph hands up to 4 requests of a batch to Outlook at once and each takes one of
        the mailbox's concurrent places; an inner request that finds none gets its own 429
        MailboxConcurrency (learn.microsoft.com/graph/throttling-limits, "Outlook service
        limits"; learn.microsoft.com/graph/json-batching). The envelope itself holds no
        place: four batches of 20 in flight are up to 16 concurrent requests, not 4.
        """
        envelope = parse_batch(body, base)
        if isinstance(envelope, str):
            return error_response(400, "BadRequest", envelope)
        parsed, order = envelope
        results: dict[str, GraphResponse] = {}
        finished = {rid: asyncio.Event() for rid in order}
        gate = asyncio.Semaphore(BATCH_PARALLEL)

        async def run(rid: str) -> None:
            item = parsed[rid]
            deps = [str(d) for d in item.get("dependsOn") or []]
            try:
                for dep in deps:  # dependsOn orders requests (a dependant waits for its request)
                    await finished[dep].wait()
                self.controls.count_inner()
                if any(results[d].status >= 400 for d in deps):
                    results[rid] = error_response(424, "FailedDependency",
                                                  "A request this one depends on failed.")
                    return
                path, query = split_url(item["url"])
                headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
                req = GraphRequest(str(item["method"]).upper(), path, query, headers, item.get("body"), base)
                async with gate:
                    results[rid] = await self._single(request, req)
            finally:
                finished[rid].set()

        await asyncio.gather(*(run(rid) for rid in order))
        return GraphResponse(200, batch_answer(order, results))

    # -- control endpoints ------------------------------------------------------------

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
            return _json_response(error_response(404, "ErrorItemNotFound",
                                                 "The contact or the destination folder was not found."))
        moved = self.store.move_contact(contact, folder.id)
        view = View(immutable=immutable_ids(GraphRequest("POST", "", headers=_headers(request))))
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
            return _json_response(error_response(404, "ErrorItemNotFound", "No such folder."))
        try:
            pairs = [split_for_create(c) for c in body["contacts"]]
        except BodyError as exc:
            return _json_response(error_response(400, "ErrorInvalidRequest", str(exc)))
        made = self.store.create_contacts(mbx, folder.id, [p for p, _ in pairs], [e for _, e in pairs])
        imm = immutable_ids(GraphRequest("POST", "", headers=_headers(request)))
        return JSONResponse({"ids": [c.iid if imm else c.id for c in made]}, status_code=201)

    async def deleted(self, request: Request) -> Response:
        mbx = self.store.mailbox(request.path_params["upn"])
        view = View(immutable=immutable_ids(GraphRequest("GET", "", headers=_headers(request))))
        return JSONResponse({"value": [render_contact(c, view) for c in self.store.folder_contacts(mbx.deleted_id)]})


def create_app(db_path: str | Path | None = None) -> Starlette:
    """The ASGI app of a fresh emulator; ``app.state.emulator`` holds its store and controls.

    ``db_path`` None keeps the mailboxes in memory; a path keeps them across restarts.
    """
    return Emulator(db_path).app


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          lifespan="off", loop="asyncio", http="h11", timeout_graceful_shutdown=2)


class _ForegroundServer(uvicorn.Server):
    """uvicorn, but a Ctrl-C or SIGTERM ends it with exit code 0 once it has shut down.

    (uvicorn re-raises the signal after its graceful shutdown, so a supervised emulator
    would look killed rather than stopped.)
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(host: str = "127.0.0.1", port: int = 8765, db_path: Path | None = None) -> None:
    """Run in the foreground until Ctrl-C or SIGTERM, then shut down cleanly (exit code 0)."""
    emulator = Emulator(db_path)
    server = _ForegroundServer(_config(emulator.app, host, port))
    print(f"Graph emulator: http://{host}:{port}/v1.0 (db: {db_path or 'in memory'})", flush=True)
    try:
        server.run()
    finally:
        emulator.store.close()


class EmulatorHandle:
    """A running emulator in a background thread; a context manager that stops it."""

    def __init__(self, emulator: Emulator, server: uvicorn.Server, thread: threading.Thread,
                 host: str, port: int) -> None:
        self.emulator, self._server, self._thread = emulator, server, thread
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"
        self.graph_url = self.url + "/v1.0"

    @property
    def store(self) -> Store:
        return self.emulator.store

    def stop(self, wait: bool = True) -> None:
        """Stop serving; the store closes when the server thread ends.

        ``wait=False`` returns at once (uvicorn needs ~0.2 s to wind down): handy for
        per-test emulators; the port is not reused, since each picks a free one.
        """
        self._server.should_exit = True
        if wait:
            self._thread.join(timeout=10)

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(host: str = "127.0.0.1", port: int = 0, db_path: str | Path | None = None) -> EmulatorHandle:
    """Start an emulator on ``host:port`` (0: a free port) in a daemon thread; returns when it listens."""
    emulator = Emulator(db_path)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that name it, and
    # without it every answer waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    server = uvicorn.Server(_config(emulator.app, host, sock.getsockname()[1]))
    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            emulator.store.close()

    thread = threading.Thread(target=run, daemon=True, name="graph-emulator")
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the Graph emulator failed to start")
        thread.join(0.01)
    return EmulatorHandle(emulator, server, thread, host, sock.getsockname()[1])


@contextmanager
def running(db_path: str | Path | None = None) -> Iterator[EmulatorHandle]:
    """``with running() as emu:`` a throw-away emulator on a free port."""
    handle = start_in_thread(db_path=db_path)
    try:
        yield handle
    finally:
        handle.stop()
