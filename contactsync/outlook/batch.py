"""``$batch``: up to 20 requests in one, each answered (and retried) on its own.

Graph answers a batch's inner requests each with its own status, 429 included, in any
order (spec/GRAPH_API.md, "Batching"); the inner requests that got 429/5xx are sent
again after their ``Retry-After``. Writes whose earlier attempt had no clear answer may
have been committed: ``resolve_ambiguous`` looks them up first, so no retry makes a
duplicate (R18). An inner 401 is sent again once with a fresh token (auth).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from contactsync.outlook.errors import GraphTransientError, is_transient, retry_after
from contactsync.outlook.transport import PREFER_IMMUTABLE, GraphSession

log = logging.getLogger(__name__)

#: Graph's limit of inner requests in one ``$batch``.
BATCH_LIMIT = 20

ResolveAmbiguous = Callable[[list[dict]], dict[str, dict]]


def send_batch(
    session: GraphSession,
    requests_: Sequence[dict],
    *,
    resolve_ambiguous: ResolveAmbiguous | None = None,
) -> list[dict]:
    """Send up to 20 inner requests as one ``$batch``; return one final response each.

    Inner requests that got 429/5xx (or a batch that got no answer) are re-sent after
    their ``Retry-After`` within the retry budget. A non-GET whose earlier attempt had
    no clear answer (5xx, dropped) may have been committed: before re-sending it,
    ``resolve_ambiguous`` (given those requests) may answer some of them itself, so a
    create is never made twice. Each returned response carries ``ambiguous: True``
    when an earlier attempt of it had no clear answer. Inner requests still failing
    when the budget is spent are returned with their last (429/5xx) response.
    """
    if len(requests_) > BATCH_LIMIT:
        raise ValueError(f"a $batch holds at most {BATCH_LIMIT} requests, got {len(requests_)}")
    pending: dict[str, dict] = {}
    for req in requests_:
        inner = _inner_request(req, session.batch_url.rsplit("/", 1)[0])
        pending[inner["id"]] = inner
    final: dict[str, dict] = {}
    ambiguous: set[str] = set()
    first_failure: float | None = None  # inner failures' budget runs from the first
    refreshed = False
    reason = ""
    attempt = 0
    while pending:
        unclear = [pending[i] for i in pending if i in ambiguous and pending[i]["method"] != "GET"]
        if unclear and resolve_ambiguous is not None:
            for rid, resp in resolve_ambiguous(unclear).items():
                if rid in pending:
                    final[rid] = {**resp, "id": rid, "ambiguous": True}
                    del pending[rid]
            if not pending:
                break
        attempt += 1
        wait = 0.0
        outer_failed = False
        try:
            sent = time.monotonic()
            response = session.request("post", session.batch_url, data={"requests": list(pending.values())},
                                       retry=False)
            answers = response.json().get("responses", [])
        except GraphTransientError as exc:
            outer_failed = True
            reason = str(exc).split(": ", 1)[-1]
            answers = []
            if exc.status != 429:  # no clear answer: any write in it may have committed
                ambiguous.update(i for i, r in pending.items() if r["method"] != "GET")
            wait = exc.retry_after or 0.0
        seen: set[str] = set()
        refreshed_now = False
        for answer in answers:
            rid = str(answer.get("id"))
            if rid not in pending:
                continue
            seen.add(rid)
            status = int(answer.get("status", 0))
            if status == 401 and not refreshed:  # the token expired under the batch (auth)
                refreshed = refreshed_now = True
                session.tokens.refresh()
                final[rid] = {**answer, "id": rid, "ambiguous": rid in ambiguous}
            elif is_transient(status):
                if status != 429 and pending[rid]["method"] != "GET":
                    ambiguous.add(rid)
                wait = max(wait, retry_after(answer.get("headers")) or 0.0)
                if status == 429:  # the mailbox is throttled: every request waits, not just this batch
                    session.pacer.throttled(retry_after(answer.get("headers")) or 1.0)
                final[rid] = {**answer, "id": rid, "ambiguous": rid in ambiguous}
            else:
                final[rid] = {**answer, "id": rid, "ambiguous": rid in ambiguous}
                del pending[rid]
        if not outer_failed:
            for rid in set(pending) - seen:  # an answer missing: treat as no answer
                if pending[rid]["method"] != "GET":
                    ambiguous.add(rid)
        if not pending:
            break
        if refreshed_now:
            continue  # inner 401s: sent again at once with the fresh token
        wait = wait or session.policy.backoff(attempt)
        if outer_failed and session.policy.deadline.exceeded_by(wait):
            raise session.policy.unreachable(f"a $batch of {len(pending)} request(s)", attempt, reason)
        # Inner failures under an answered batch: the same budget, from this batch's first.
        first_failure = sent if first_failure is None else first_failure
        if time.monotonic() - first_failure + wait > session.policy.max_wait_s:
            for rid in pending:
                final.setdefault(rid, {"id": rid, "status": 503, "headers": {}, "body": None})
                final[rid]["ambiguous"] = rid in ambiguous
            break
        log.info("$batch: %d inner request(s) to re-send in %.2f s", len(pending), wait)
        time.sleep(wait)
    order = [str(_inner_id(r)) for r in requests_]
    return [final[rid] for rid in order]


def _inner_id(req: dict) -> str:
    return str(req["id"])


def _inner_request(req: dict, root: str) -> dict:
    """A ``$batch`` item: relative URL, JSON body with its Content-Type, immutable ids."""
    url = str(req["url"])
    if url.startswith(root):
        url = url[len(root) :]
    headers = dict(req.get("headers") or {})
    if not any(k.lower() == "prefer" for k in headers):
        headers["Prefer"] = PREFER_IMMUTABLE
    inner: dict[str, Any] = {"id": _inner_id(req), "method": str(req["method"]).upper(), "url": url}
    if req.get("body") is not None:
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        inner["body"] = req["body"]
    inner["headers"] = headers
    if req.get("dependsOn"):
        inner["dependsOn"] = list(req["dependsOn"])
    return inner


