"""The Graph emulator's HTTP face: ``/v1.0`` through what a real tenant does to a client.

``/v1.0/...`` is Graph (``graph.py``); around every Graph call (and every request inside a
``$batch``) this module applies the Bearer check, Outlook's throttling, injected faults
and network latency. The control endpoints (``/_emulator/...``, spec/INTERFACE.md) are in
``endpoints.py``; running it (uvicorn, a thread, the foreground) in ``server.py``.

Faults apply to single requests and to each request inside a ``$batch`` (by its method),
never to the ``$batch`` envelope itself, except 401 (an expired token travels with the HTTP
request); an inner ``"drop"`` drops the whole batch's connection.
"""

from __future__ import annotations

import asyncio
import heapq
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from contactsync.emulator.batch import batch_answer, parse_batch, split_url
from contactsync.emulator.controls import Controls, Fault, retry_after_header
from contactsync.emulator.endpoints import ControlEndpoints, http_headers, json_response
from contactsync.emulator.graph import GraphApi
from contactsync.emulator.odata import (
    GraphRequest,
    GraphResponse,
    error_response,
)
from contactsync.emulator.store import Store

ALL_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
#: Requests of one ``$batch`` that Graph hands to Outlook at once (json-batching,
#: throttling-limits "Outlook service limits").
BATCH_PARALLEL = 4
_CYCLE_KEY = "contactsync.emulator.cycle"


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """Sleep until ``when`` on the loop's clock (at once if it has passed)."""
    wait = when - loop.time()
    if wait > 0:
        await asyncio.sleep(wait)


class _Dropped(Exception):
    """The connection was closed on purpose (fault "drop"): nothing may be sent."""


class _NoAnswer(Response):
    """What a dropped request "answers": nothing at all."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


def _mailbox_key(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return parts[1].lower() if len(parts) >= 2 and parts[0].lower() == "users" else ""


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
    return json_response(error_response(status, code, f"{request.method} {request.url.path}: {exc}"))


class _KeepCycle:
    """Keeps uvicorn's request cycle at hand: the "drop" fault closes its transport."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_CYCLE_KEY] = getattr(receive, "__self__", None)
        await self.app(scope, receive, send)


class Emulator(ControlEndpoints):
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
            return json_response(error_response(
                401, "InvalidAuthenticationToken", "Access token is empty."))
        expired = self.controls.pick_fault(method, http=True)
        if expired is not None:
            return json_response(fault_response(expired))
        try:
            body = await self._body(request)
        except ValueError as exc:
            return json_response(error_response(400, "BadRequest", f"Invalid JSON body: {exc}"))
        base = str(request.base_url).rstrip("/") + "/v1.0"
        try:
            if is_batch:
                if method != "POST":
                    return json_response(error_response(405, "BadRequest", "$batch takes POST."))
                return json_response(await self._batch(request, body, base))
            req = GraphRequest(method, path, dict(request.query_params),
                               http_headers(request), body, base)
            return json_response(await self._single(request, req))
        except _Dropped:
            return _NoAnswer()

    async def _single(self, request: Request, req: GraphRequest, placed: float | None = None) -> GraphResponse:
        mailbox = _mailbox_key(req.path)
        if not self.controls.acquire_slot(mailbox):
            self.controls.count_throttled()
            return throttled(1, "MailboxConcurrency")
        try:
            return await self._served(request, req, mailbox, placed)
        finally:
            self.controls.release_slot(mailbox)

    async def _served(self, request: Request, req: GraphRequest, mailbox: str,
                      placed: float | None = None) -> GraphResponse:
        """The request with the latency added (``POST /_emulator/latency``): its work done
        half-way (a write commits while the request is in flight), its answer ``latency``
        after it took its place (``placed``, on the loop's clock; None: now).

        The latency stands for all the time a request holds its place at Graph, Outlook's
        own work included. The emulator's own work and the slop of its timers are not
        Graph's (issue 12: ~0.3-1 ms of SQLite per write, and ~1 ms late per timer on a
        loaded machine): they fall inside the latency, as long as the work takes less
        than half of it, instead of adding to it. The emulator serves every request on one
        thread, so the requests of a ``$batch`` that Graph runs 4 at once
        (learn.microsoft.com/graph/json-batching; learn.microsoft.com/graph/
        throttling-limits, "Outlook service limits") do not queue behind each other's
        work either: each answer comes when its own latency is over.
        """
        latency = self.controls.latency_ms / 1000.0
        if latency <= 0:
            return self._execute(request, req, mailbox)
        loop = asyncio.get_running_loop()
        placed = loop.time() if placed is None else placed
        await _sleep_until(loop, placed + latency / 2)
        resp = self._execute(request, req, mailbox)
        await _sleep_until(loop, placed + latency)
        return resp

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
        latency = max(0.0, self.controls.latency_ms / 1000.0)
        loop = asyncio.get_running_loop()
        # By Graph's clock (the loop's): when each request's answer is due, and when each
        # of the batch's places is free again. A request that follows another in its
        # place (or waited for one it depends on) starts when that one's latency was
        # over, not when the emulator's timer woke it: the slop of 5 requests in a row
        # would otherwise add up in every batch (issue 12; _served).
        due: dict[str, float] = {}
        free_at: list[float] = []

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
                    now = loop.time()
                    placed = now
                    if free_at:  # a place of this batch, free since the due time of its last request
                        placed = min(now, max([heapq.heappop(free_at), *(due[d] for d in deps if d in due)]))
                    due[rid] = placed + latency
                    results[rid] = await self._single(request, req, placed)
                    # (a request refused at once, 429, frees its place at once)
                    heapq.heappush(free_at, min(due[rid], loop.time()))
            finally:
                finished[rid].set()

        await asyncio.gather(*(run(rid) for rid in order))
        return GraphResponse(200, raw=batch_answer(order, results))
