"""``$batch`` envelopes: what makes one valid, and the order its requests run in.

Graph refuses a whole batch that is malformed (400) but answers each valid inner request
on its own; the running itself (throttling, faults, the call) is the server's.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from contactsync.emulator.odata import GraphResponse

MAX_BATCH = 20


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """A batch item's relative url -> (decoded path, decoded query)."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.scheme and "/v1.0/" in path:  # absolute under this server's base (checked)
        path = path[path.index("/v1.0/"):]
    if path.startswith("/v1.0/"):
        path = path[5:]
    if not path.startswith("/"):
        path = "/" + path
    return path, dict(parse_qsl(parts.query, keep_blank_values=True))


def check_item(item: Any, seen: dict[str, Any], base: str = "") -> str | None:
    if not isinstance(item, dict):
        return "Each $batch request must be an object."
    for key in ("id", "method", "url"):
        if not item.get(key):
            return f"A $batch request lacks '{key}'."
    rid = str(item["id"])
    if rid in seen:
        return f"Duplicate $batch request id '{rid}'."
    url = str(item["url"])
    # Relative, or absolute under this server's own base: Microsoft's SDK (msgraph-core's
    # BatchRequestItem) sends its request URLs whole, and Graph takes them.
    if urlsplit(url).scheme and not (base and url.startswith(base.rstrip("/") + "/")):
        return f"$batch request '{rid}': the url must be relative, not '{url}'."
    headers = item.get("headers") or {}
    if not isinstance(headers, dict):
        return f"$batch request '{rid}': headers must be an object."
    if item.get("body") is not None and not any(str(k).lower() == "content-type" for k in headers):
        return f"$batch request '{rid}' has a body but no Content-Type header."
    # Only the camelCase ``dependsOn`` orders requests. Graph takes an item's other keys
    # without a word and runs it unordered: msgraph-sdk-python-core sent ``depends_on``
    # and its requests ran in parallel (github.com/microsoftgraph/msgraph-sdk-python-core
    # pull 996, tried in Graph Explorer), so ``depends_on`` is ignored here too.
    deps = item.get("dependsOn") or []
    if not isinstance(deps, list):
        return f"$batch request '{rid}': dependsOn must be a list."
    # A request may depend only on one listed before it: Graph answers 400 "Invalid
    # dependency for request Id ..." otherwise (github.com/microsoftgraph/
    # msgraph-sdk-dotnet-core issue 891), a cycle included.
    for dep in deps:
        if str(dep) not in seen:
            return f"Invalid dependency for request Id '{rid}': '{dep}' is not a request listed before it."
    return None


def dependency_order(items: dict[str, dict[str, Any]]) -> list[str] | None:
    """Request ids in an order where each comes after what it depends on; None if impossible."""
    order: list[str] = []
    done: set[str] = set()
    pending = list(items)
    while pending:
        ready = [r for r in pending if all(str(d) in done for d in items[r].get("dependsOn") or [])]
        if not ready:
            return None
        for rid in ready:
            order.append(rid)
            done.add(rid)
        pending = [r for r in pending if r not in done]
    return order


def parse_batch(body: Any, base: str = "") -> tuple[dict[str, dict[str, Any]], list[str]] | str:
    """(requests by id, the order to run them in), or why Graph would refuse the whole batch."""
    items = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        return "A $batch body needs a non-empty 'requests' list."
    if len(items) > MAX_BATCH:
        return f"A $batch holds at most {MAX_BATCH} requests; got {len(items)}."
    parsed: dict[str, dict[str, Any]] = {}
    for item in items:
        problem = check_item(item, parsed, base)
        if problem:
            return problem
        parsed[str(item["id"])] = item
    order = dependency_order(parsed)
    if order is None:
        return "dependsOn names an unknown request or forms a cycle."
    return parsed, order


def batch_answer(order: list[str], results: dict[str, GraphResponse]) -> str:
    """``{"responses": [...]}`` as JSON text, deliberately not in request order (Graph
    promises none). Each answer's own text goes in as it is: parsing 20 contacts back
    into objects to write them out again cost the emulator's one thread ~2 ms a batch,
    after the batch's last request, on the way of every next one (issue 12)."""
    parts = []
    for rid in reversed(order):
        r = results[rid]
        headers = dict(r.headers)
        text = r.text()
        if text is not None:
            headers.setdefault("Content-Type", "application/json")
        entry = (f'{{"id":{json.dumps(rid)},"status":{int(r.status)},'
                 f'"headers":{json.dumps(headers, separators=(",", ":"))}')
        parts.append(entry + (f',"body":{text}}}' if text is not None else "}"))
    return '{"responses":[' + ",".join(parts) + "]}"
