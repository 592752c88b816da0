"""Writes that met a 412: a person's edit since this cycle read the contact, or a race.

Every PATCH and DELETE of the Outlook load carries ``If-Match`` with the ``@odata.etag``
(``W/"<changeKey>"``) that this cycle read (spec/GRAPH_API.md, "Concurrent edits"), so a
person's edit made between the sync's read and its write is never silently overwritten.
Graph answers 412 ``ErrorIrresolvableConflict`` then, and also when two writes of one
item race, If-Match or not. Which of the two it was is told by reading the contact again:

- its changeKey is still the one sent (or none was sent): the 412 was a race; the write
  is sent again (a few rounds at most);
- it already holds what the write sent: an earlier attempt of this write committed
  without a clear answer (R18); the write counts as applied;
- otherwise the contact changed since the read: the write is left out (``stale``), its
  pair is not snapshotted, and the next cycle merges the new Outlook value (R8/R9).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from contactsync.outlook.client import GraphClient
from contactsync.outlook.mapping import text_or_none

log = logging.getLogger(__name__)

#: Rounds of re-sending writes whose 412 was a race, before they are reported.
RACE_ROUNDS = 3
_META = frozenset({"singleValueExtendedProperties", "@odata.type"})


def etag_header(change_key: Any) -> dict[str, str]:
    """``If-Match`` for a contact whose changeKey this cycle read ({} if none was read)."""
    key = text_or_none(change_key, strip=True)
    return {"If-Match": f'W/"{key}"'} if key else {}


def _sent_key(request: dict) -> str | None:
    for name, value in (request.get("headers") or {}).items():
        if name.lower() == "if-match":
            return str(value).strip().removeprefix("W/").strip('"')
    return None


def _same(sent: Any, now: Any) -> bool:
    """Whether a written property reads back as sent (unset = None, [] or {})."""
    if isinstance(sent, dict) or isinstance(now, dict):
        a = {k: v for k, v in (sent or {}).items() if v not in (None, "")}
        b = {k: v for k, v in (now or {}).items() if v not in (None, "")}
        return a == b
    if isinstance(sent, list) or isinstance(now, list):
        return list(sent or []) == list(now or [])
    return (sent or None) == (now or None)


def already_written(body: dict | None, contact: dict) -> bool:
    """The contact holds every property ``body`` wrote (the tag aside: not read back here)."""
    return all(_same(v, contact.get(k)) for k, v in (body or {}).items() if k not in _META)


def settle_412s(client: GraphClient, requests_: Sequence[dict], answers: list[dict]) -> list[dict]:
    """``answers`` with every 412 resolved: re-sent (race), applied (committed) or stale."""
    by_id = {str(r["id"]): r for r in requests_}
    out = {str(a["id"]): a for a in answers}
    for _ in range(RACE_ROUNDS):
        conflicted = [rid for rid, a in out.items() if int(a.get("status", 0)) == 412 and not a.get("stale")]
        if not conflicted:
            break
        resend: list[dict] = []
        for rid, now in zip(conflicted, _read_again(client, [by_id[r] for r in conflicted]), strict=True):
            req, status = by_id[rid], int(now.get("status", 0))
            body = now.get("body") if isinstance(now.get("body"), dict) else {}
            if req["method"] == "DELETE" and status == 404:
                out[rid] = {"id": rid, "status": 204, "headers": {}, "body": None}  # already gone
            elif 200 <= status < 300 and req["method"] == "PATCH" and already_written(req.get("body"), body):
                out[rid] = {"id": rid, "status": 200, "headers": {}, "body": body}
            elif 200 <= status < 300 and _sent_key(req) not in (None, body.get("changeKey")):
                log.info("Outlook contact %s changed since this cycle read it: not overwritten", _target(req))
                out[rid] = {**out[rid], "stale": True}
            else:
                resend.append(req)
        if resend:
            log.info("412 without a newer version (a race) for %d write(s): sending them again", len(resend))
            for answer in client.batch(resend):
                out[str(answer["id"])] = answer
    return [out[str(a["id"])] for a in answers]


def _target(req: dict) -> str:
    return unquote(str(req["url"]).split("?")[0].rsplit("/", 1)[-1])


def _read_again(client: GraphClient, writes: list[dict]) -> list[dict]:
    """The written contacts as they are now (with the properties each write sent)."""
    gets = []
    for req in writes:
        props = sorted({"changeKey", *(k for k in (req.get("body") or {}) if k not in _META)})
        url = f"{str(req['url']).split('?')[0]}?$select={','.join(props)}"
        gets.append({"id": req["id"], "method": "GET", "url": url})
    answers: list[dict] = []
    for start in range(0, len(gets), 20):
        answers += client.batch(gets[start : start + 20])
    return answers
