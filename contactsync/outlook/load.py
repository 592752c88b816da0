"""Outlook load: the plan's Outlook actions as ``$batch`` requests, one result per record.

Creates, updates (only the planned fields) and deletes go out 20 to a ``$batch``; Graph
runs 4 requests of a batch at once, each in one of the mailbox's 4 places, so the pacer
lets one batch of 20 be in flight (outlook.pacing); each inner request is retried on its
own after its ``Retry-After``. Updates and deletes carry ``If-Match`` with the etag this
cycle read, and a 412 is settled by ``outlook.conflicts`` (a person's edit is never
overwritten). No retry can make a duplicate (R18): every create
carries the CrmContactId tag (R7a), and a create whose earlier attempt got no clear
answer (5xx, dropped: it may have been committed) is first looked up by that tag.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
import pandas as pd

from contactsync.model import FIELDS
from contactsync.outlook.client import BATCH_LIMIT, MAX_CONCURRENT, GraphClient, GraphRequestError
from contactsync.outlook.conflicts import etag_header, settle_412s
from contactsync.outlook.mapping import (
    CRM_TAG_EXPAND,
    CRM_TAG_PROPERTY_ID,
    contact_to_row,
    crm_tag_of,
    frame_records,
    row_to_payload,
    rows_to_frame,
    text_or_none,
)

log = logging.getLogger(__name__)

RESULT_COLUMNS: tuple[str, ...] = ("action_id", "status", "outlook_id", "change_key", "error")
#: The result of a write left out because the contact changed since it was read (412):
#: not an error, not applied (its pair is not snapshotted; the next cycle merges).
STALE = "stale"
#: Fields whose Graph property is a collection: an update of one of them reads the
#: contact's current collection first, so unmapped entries (names, other phones) stay.
_COLLECTION_FIELDS = frozenset({"email1", "email2", "email3", "work_phone", "home_phone"})
_RAW_SELECT = "emailAddresses,businessPhones,homePhones"
#: The operations that become a request (the others answer at once).
_SENT_OPS = ("create", "update", "delete")
#: Action rows turned into dicts at a time, as the batches go out (``_batches``).
ROWS_AT_ONCE = 1000


def _text(value: Any) -> str | None:
    """Ids and keys of an action row: outer spaces never meant (mapping.text_or_none)."""
    return text_or_none(value, strip=True)


def _fields_of(row: dict) -> list[str]:
    listed = [f.strip() for f in (_text(row.get("fields")) or "").split(",") if f.strip()]
    return [f for f in listed if f in FIELDS]


def _graph_error(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('code', '')}: {err.get('message', '')}".strip(": ")
    return ""


def tag_filter(crm_id: str) -> str:
    """OData filter of the contacts carrying the CrmContactId tag ``crm_id`` (R7a)."""
    value = crm_id.replace("'", "''")
    return (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{CRM_TAG_PROPERTY_ID}' "
        f"and ep/value eq '{value}')"
    )


class OutlookWriter:
    """Executes the ``side == "outlook"`` rows of a plan in one mailbox folder."""

    def __init__(
        self,
        client: GraphClient,
        folder_id: str,
        *,
        batch_size: int = BATCH_LIMIT,
        max_in_flight: int = MAX_CONCURRENT,
    ) -> None:
        self.client = client
        self.folder_id = folder_id
        self.batch_size = min(batch_size, BATCH_LIMIT)
        self.max_in_flight = max_in_flight
        self._folder_path = client.path(f"contactFolders/{quote(folder_id, safe='')}/contacts")
        #: Whether the server filters contacts by the tag (Graph does; None = not tried yet).
        self._tag_filter_ok: bool | None = None
        #: Canonical rows of the contacts as this writer's committed writes left them.
        self._written: list[dict] = []
        #: how many kept rows ``forget_written`` dropped (``written``'s start counts them)
        self._forgotten = 0
        self._written_lock = threading.Lock()

    # -- public ---------------------------------------------------------------------------
    def apply(
        self,
        actions: pd.DataFrame,
        current: pd.DataFrame,
        *,
        on_result: Callable[[dict], None] | None = None,
        progress: Callable[[int, int], None] | None = None,
        crm_ids: Mapping[str, str] | None = None,
    ) -> pd.DataFrame:
        """Apply ``actions``; return one row per action (``RESULT_COLUMNS``).

        ``current`` is the Outlook frame (by ``outlook_id``, as index or column): the
        untouched parts of an updated address come from it. ``on_result`` gets each
        record's result as soon as it is known (for the journal); ``progress(done,
        total)`` is called after each batch. ``crm_ids`` maps a ``new_key`` to the
        CONTACTID the CRM loader allocated (pairs whose CRM side this cycle made). Creates
        and updates write the CrmContactId tag (R7a); an update with no fields writes
        only the tag. A record that fails is reported and the rest goes on; only an unreachable Graph (SideUnreachable) stops the load.
        """
        total = len(actions)
        results: list[dict] = []
        done = 0

        def finish(result: dict) -> None:
            results.append(result)
            if on_result is not None:
                on_result(result)

        ops = actions["op"] if total else pd.Series(dtype=object)
        sent = ops.isin(_SENT_OPS).to_numpy()
        for row in frame_records(actions[~sent]):
            op = row.get("op")
            if op == "skip":
                finish(self._result(row, "noop", outlook_id=_text(row.get("outlook_id"))))
            else:
                finish(self._result(row, "failed", error=f"action {row.get('action_id')}: unknown Outlook operation {op!r}; fix the plan"))
        done = len(results)
        if progress is not None and done:
            progress(done, total)
        # Only updates and deletes read the stored copy (untouched address lines, etag):
        # a first sync's creates need none of the folder's rows turned into dicts.
        stored = actions.loc[sent & (ops != "create").to_numpy(), "outlook_id"] if total else []
        current_by_id = self._index(current, {_text(v) for v in stored})
        batches = self._batches(actions, np.flatnonzero(sent))
        crm_map = dict(crm_ids or {})
        with ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="graph-batch") as pool:
            upcoming = next(batches, None)
            running: set[Future] = set()
            try:
                while upcoming is not None or running:
                    while upcoming is not None and len(running) < self.max_in_flight:
                        running.add(pool.submit(self._run_chunk, upcoming, current_by_id, crm_map))
                        upcoming = next(batches, None)
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        for result in fut.result():
                            finish(result)
                        done = len(results)
                        if progress is not None:
                            progress(done, total)
            except BaseException:
                for fut in running:
                    fut.cancel()
                raise
        frame = pd.DataFrame(results, columns=list(RESULT_COLUMNS))
        return frame.astype(object).where(frame.notna(), None)

    def _batches(self, actions: pd.DataFrame, at: np.ndarray) -> Iterator[list[dict]]:
        """The writes (the rows of ``actions`` at positions ``at``) as batches of row dicts,
        in plan order, made ``ROWS_AT_ONCE`` rows at a time as the batches go out: a first
        sync's 25,000 creates as dicts at once were tens of MB of its peak (issue 15 goal
        3), and a batch needs its own 20 only."""
        for start in range(0, len(at), ROWS_AT_ONCE):
            rows = frame_records(actions.iloc[at[start : start + ROWS_AT_ONCE]])
            for i in range(0, len(rows), self.batch_size):
                yield rows[i : i + self.batch_size]

    # -- one batch ----------------------------------------------------------------------
    def _run_chunk(
        self, chunk: Sequence[dict], current_by_id: dict[str, dict], crm_ids: dict[str, str]
    ) -> list[dict]:
        raw = self._fetch_collections(chunk)
        requests: list[dict] = []
        by_req: dict[str, dict] = {}
        tags: dict[str, str] = {}
        deletes: dict[str, str] = {}
        immediate: list[dict] = []
        for n, row in enumerate(chunk):
            rid = str(n + 1)
            by_req[rid] = row
            op = row["op"]
            oid = _text(row.get("outlook_id"))
            crm_id = _text(row.get("crm_id")) or crm_ids.get(_text(row.get("new_key")) or "")
            if op == "create":
                fields = _fields_of(row) or [f for f in FIELDS if _text(row.get(f)) is not None]
                body = row_to_payload(row, fields, None, crm_id)
                if crm_id:
                    tags[rid] = crm_id
                requests.append({"id": rid, "method": "POST", "url": self._folder_path, "body": body})
            elif op == "update":
                cur = dict(current_by_id.get(oid or "", {}))
                cur.update(raw.get(oid or "", {}))
                body = row_to_payload(row, _fields_of(row), cur, crm_id)
                if not body:  # nothing to write (no fields, no tag): no request
                    immediate.append(self._result(row, "noop", outlook_id=oid))
                    continue
                requests.append({"id": rid, "method": "PATCH", "url": self.client.path(f"contacts/{quote(oid or '', safe='')}"),
                                 "body": body, "headers": etag_header(cur.get("change_key"))})
            else:
                deletes[rid] = oid or ""
                requests.append({"id": rid, "method": "DELETE", "url": self.client.path(f"contacts/{quote(oid or '', safe='')}"),
                                 "headers": etag_header(current_by_id.get(oid or "", {}).get("change_key"))})

        def resolve(unclear: list[dict]) -> dict[str, dict]:
            found = self._find_committed_creates(unclear, tags)
            found.update(self._find_committed_deletes(unclear, deletes))
            return found

        if not requests:
            return immediate
        try:
            answers = settle_412s(self.client, requests, self.client.batch(requests, resolve_ambiguous=resolve))
        except GraphRequestError as exc:
            if exc.status in (401, 403):
                raise  # credentials or permissions: nothing else will work either
            # Graph refused the batch as a whole (a malformed item): report its records
            # and go on with the other batches.
            answers = [
                {"id": r["id"], "status": exc.status, "body": {"error": {"code": exc.code, "message": exc.message}}}
                for r in requests
            ]
        self._record_written(requests, answers, current_by_id)
        return immediate + [self._interpret(by_req[a["id"]], a) for a in answers]

    def _record_written(self, requests: list[dict], answers: list[dict], current_by_id: dict[str, dict]) -> None:
        """Keep each committed create's and update's contact as Graph answered it (its body
        is the whole contact, with the new changeKey: learn.microsoft.com/graph/api/
        user-post-contacts, contact-update), its tag being the one the request wrote."""
        sent = {r["id"]: r for r in requests if r["method"] in ("POST", "PATCH")}
        rows = []
        for answer in answers:
            req = sent.get(str(answer.get("id")))
            body = answer.get("body")
            if req is None or not 200 <= int(answer.get("status", 0)) < 300 or not isinstance(body, dict) \
                    or not body.get("id") or not body.get("changeKey"):
                continue
            row = contact_to_row(body)
            written_tag = crm_tag_of(req.get("body") or {})
            if written_tag is not None:
                row["crm_tag"] = written_tag
            elif row["crm_tag"] is None:  # the answer carries no $expand: the tag stays as read
                row["crm_tag"] = _text(current_by_id.get(str(body["id"]), {}).get("crm_tag"))
            rows.append(row)
        with self._written_lock:
            self._written.extend(rows)

    def written(self, start: int = 0) -> pd.DataFrame:
        """The contacts this writer's committed creates and updates left in the folder, as
        mirror rows (model.OUTLOOK_COLUMNS): stored in the mirror, their echo in the next
        delta is known by its changeKey and skipped (outlook.extract.known_versions).
        ``start``: from the start-th kept (the list only grows: cycle.load stores it in rounds)."""
        with self._written_lock:
            rows = self._written[max(0, start - self._forgotten):]
        return rows_to_frame(rows)

    def forget_written(self, upto: int) -> None:
        """Drop the kept contacts before the ``upto``-th (counted from the first ever
        kept): the caller has stored them in the mirror (cycle.record), so a first sync's
        25,000 created contacts are not all held to the load's end (issue 15 goal 3).
        ``written(start)`` keeps counting from the first row ever kept."""
        with self._written_lock:
            drop = min(len(self._written), upto - self._forgotten)
            if drop > 0:
                del self._written[:drop]
                self._forgotten += drop

    def _fetch_collections(self, chunk: Sequence[dict]) -> dict[str, dict]:
        """The current email/phone collections of the updates that write one of them."""
        ids = [
            oid
            for row in chunk
            if row["op"] == "update"
            and (oid := _text(row.get("outlook_id")))
            and _COLLECTION_FIELDS & set(_fields_of(row))
        ]
        if not ids:
            return {}
        gets = [
            {"id": str(n + 1), "method": "GET", "url": self.client.path(f"contacts/{quote(oid, safe='')}?$select={_RAW_SELECT}")}
            for n, oid in enumerate(ids)
        ]
        out: dict[str, dict] = {}
        for oid, answer in zip(ids, self.client.batch(gets), strict=True):
            if 200 <= int(answer.get("status", 0)) < 300 and isinstance(answer.get("body"), dict):
                body = answer["body"]
                out[oid] = {k: body[k] for k in ("emailAddresses", "businessPhones", "homePhones") if k in body}
        return out

    def _find_committed_creates(self, unclear: list[dict], tags: dict[str, str]) -> dict[str, dict]:
        """Creates whose unclear attempt was committed after all: found by their tag (R18)."""
        found: dict[str, dict] = {}
        for r in unclear:  # no tag to look for: never re-send, report it instead
            if r["method"] == "POST" and r["id"] not in tags:
                found[r["id"]] = {"status": 503, "headers": {}, "body": {"error": {
                    "code": "OutcomeUnknown",
                    "message": "the create got no clear answer and carries no CRM tag, so it "
                    "is not re-sent (it may exist); the next cycle matches it by email (R7)"}}}
        creates = [r for r in unclear if r["method"] == "POST" and r["id"] in tags]
        if not creates:
            return found
        if self._tag_filter_ok is not False:
            answers = self._lookup_by_filter(creates, tags)
            if answers is not None:
                self._tag_filter_ok = True
                found.update(answers)
                return found
            self._tag_filter_ok = False  # this server cannot filter by the tag: list instead
        wanted = {tags[r["id"]]: r["id"] for r in creates}
        for page in self.client.iter_pages(
            self.client.base_url + self._folder_path, params={"$top": "999", "$expand": CRM_TAG_EXPAND}
        ):
            for contact in page.get("value", []):
                rid = wanted.get(crm_tag_of(contact) or "")
                if rid is not None and rid not in found:
                    found[rid] = {"status": 201, "headers": {}, "body": contact}
        for rid in found:
            if rid in tags:
                log.info("create for CRM %s was committed without an answer: found it by its tag", tags[rid])
        return found

    def _find_committed_deletes(self, unclear: list[dict], deletes: dict[str, str]) -> dict[str, dict]:
        """Deletes whose unclear attempt was committed after all: the contact left the folder.

        A contact deleted once sits in Deleted Items under the same (immutable) id, where a
        second DELETE would remove it for good: R12/R13 promise a copy the user can recover,
        so a delete is re-sent only while the contact is still in the sync folder.
        """
        asked = [r for r in unclear if r["method"] == "DELETE" and deletes.get(r["id"])]
        if not asked:
            return {}
        gets = [{"id": r["id"], "method": "GET",
                 "url": self.client.path(f"contacts/{quote(deletes[r['id']], safe='')}?$select=parentFolderId")}
                for r in asked]
        found: dict[str, dict] = {}
        for answer in self.client.batch(gets):
            status = int(answer.get("status", 0))
            body = answer.get("body") if isinstance(answer.get("body"), dict) else {}
            moved = 200 <= status < 300 and body.get("parentFolderId") not in (None, self.folder_id)
            if status == 404 or moved:
                log.info("delete of Outlook contact %s was committed without an answer: not re-sent",
                         deletes[answer["id"]])
                found[answer["id"]] = {"status": 204, "headers": {}, "body": None}
        return found

    def _lookup_by_filter(self, creates: list[dict], tags: dict[str, str]) -> dict[str, dict] | None:
        """Look the tags up with ``$filter`` (Graph); None if the server refuses the filter."""
        gets = []
        for r in creates:
            query = urlencode({"$filter": tag_filter(tags[r["id"]]), "$expand": CRM_TAG_EXPAND}, quote_via=quote)
            gets.append({"id": r["id"], "method": "GET", "url": f"{self._folder_path}?{query}"})
        found: dict[str, dict] = {}
        for answer in self.client.batch(gets):
            status = int(answer.get("status", 0))
            body = answer.get("body") if isinstance(answer.get("body"), dict) else {}
            if status == 400:
                return None
            if 200 <= status < 300 and body.get("value"):
                found[answer["id"]] = {"status": 201, "headers": {}, "body": body["value"][0]}
            elif not 200 <= status < 300:
                log.warning("could not look up CRM %s by its tag (%s): re-sending the create", tags[answer["id"]], status)
        return found

    # -- results ------------------------------------------------------------------------
    @staticmethod
    def _index(current: pd.DataFrame | None, ids: set[str | None]) -> dict[str, dict]:
        ids.discard(None)
        if current is None or current.empty or not ids:
            return {}
        frame = current if "outlook_id" in current.columns else current.reset_index(names="outlook_id")
        stored = frame["outlook_id"]
        if pd.api.types.infer_dtype(stored, skipna=True) != "string":
            stored = stored.astype(str)  # ids of another type: compared as their text
        # (as object: astype(str) of the 100,000 ids made an Arrow copy per load, pandas 3)
        frame = frame[stored.isin(ids).to_numpy()]
        return {str(r["outlook_id"]): r for r in frame_records(frame) if r.get("outlook_id") is not None}

    @staticmethod
    def _result(row: dict, status: str, *, outlook_id: str | None = None, change_key: str | None = None, error: str | None = None) -> dict:
        return {
            "action_id": row.get("action_id"),
            "status": status,
            "outlook_id": outlook_id,
            "change_key": change_key,
            "error": error,
        }

    def _interpret(self, row: dict, answer: dict) -> dict:
        op = row["op"]
        status = int(answer.get("status", 0))
        body = answer.get("body") if isinstance(answer.get("body"), dict) else {}
        oid = _text(row.get("outlook_id"))
        who = f"Outlook contact {oid}" if oid else f"new Outlook contact for CRM {_text(row.get('crm_id')) or '?'}"
        if 200 <= status < 300:
            if op == "create":
                return self._result(row, "applied", outlook_id=body.get("id"), change_key=body.get("changeKey"))
            return self._result(row, "applied", outlook_id=oid, change_key=body.get("changeKey"))
        if op == "delete" and status == 404:
            return self._result(row, "applied", outlook_id=oid)  # already gone: the aim is met
        if status == 412 and answer.get("stale"):
            return self._result(row, STALE, outlook_id=oid, error=(
                f"{op} of {who} (action {row.get('action_id')}, rule {row.get('rule')}) not written: the "
                "contact changed in Outlook since this cycle read it (412); the next cycle merges the "
                "new value (R8/R9)"))
        detail = _graph_error(answer.get("body")) or f"HTTP {status}"
        if status == 429 or status >= 500:
            hint = "Graph kept refusing it within the retry budget; the next cycle retries it"
        elif status == 404:
            hint = "it no longer exists in Outlook; the next cycle sees it as removed (R11)"
        else:
            hint = "fix the record's values (see the Graph message) and run the cycle again"
        error = f"{op} of {who} (action {row.get('action_id')}, rule {row.get('rule')}) failed: {detail}; {hint}"
        return self._result(row, "failed", outlook_id=oid, error=error)
