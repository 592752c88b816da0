"""The O365 extension: a Graph Connection with bounded retries, pacing, $batch.

O365's ``Connection`` retries only GET/PUT/DELETE, sleeps 200 ms before every request,
and has no ``$batch`` (spec/GRAPH_API.md, "as found"). :class:`GraphConnection` is the one
small subclass that fixes that; every request of the client (the O365 objects' own
included) goes through its :meth:`GraphConnection._internal_request`.

Errors: a 4xx other than 429 raises :class:`GraphRequestError` (a ``FatalError``); 429,
5xx and dropped connections are retried honouring ``Retry-After`` (else exponential
backoff with jitter) for at most ``max_wait_s`` seconds from the first failure, then
:class:`~contactsync.errors.SideUnreachable`. Secrets never reach a log or a repr.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from O365 import Account
from O365.connection import Connection, MSGraphProtocol
from O365.utils.token import BaseTokenBackend
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from contactsync.errors import FatalError, SideUnreachable, TransientError

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
#: Graph's Outlook limit: 4 concurrent requests per app and mailbox.
MAX_CONCURRENT = 4
#: Graph's limit of inner requests in one ``$batch``.
BATCH_LIMIT = 20
#: Ask for ids that survive moves between folders (spec/GRAPH_API.md: Ids).
PREFER_IMMUTABLE = 'IdType="ImmutableId"'

ResolveAmbiguous = Callable[[list[dict]], dict[str, dict]]


# --- errors --------------------------------------------------------------------------------
def _error_of(body: Any) -> tuple[str, str]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("code", "")), str(err.get("message", ""))
    return "", ""


class GraphRequestError(FatalError):
    """Graph answered a 4xx other than 429: re-sending the same request will not help."""

    def __init__(self, method: str, url: str, status: int, code: str, message: str) -> None:
        super().__init__(
            f"Graph answered {status} {code or ''} to {method.upper()} {url}: {message}".strip(),
            hint="check the request's record and the mailbox permissions (Contacts.ReadWrite)",
        )
        self.status = status
        self.code = code


class GraphTransientError(TransientError):
    """One attempt got 429, 5xx or no answer (raised only when retries are off)."""

    def __init__(self, message: str, *, status: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


# --- token backends --------------------------------------------------------------------
class FixedTokenBackend(BaseTokenBackend):
    """Hands out one configured bearer token (the emulator accepts any); never expires.

    Nothing calls the identity platform: O365 only asks the backend for the access token.
    """

    def __init__(self, token: SecretStr) -> None:
        super().__init__()
        self._token = token

    @property
    def has_data(self) -> bool:
        return True

    def load_token(self) -> bool:
        return True

    def save_token(self, force: bool = False) -> bool:
        return True

    def get_access_token(self, *, username: str | None = None) -> dict | None:
        return {"secret": self._token.get_secret_value(), "expires_on": "32503680000"}

    def token_is_expired(self, *, username: str | None = None) -> bool:
        return False

    def __repr__(self) -> str:
        return "FixedTokenBackend(token=**********)"


# --- the pacer -------------------------------------------------------------------------
#: Graph's per-mailbox request window (spec/GRAPH_API.md): 10,000 requests in 600 s, each
#: request inside a ``$batch`` counted. New pacers use it; a test or a benchmark against a
#: scaled-down emulator may set it before the first client of a mailbox is made.
MAILBOX_WINDOW: tuple[int, float] = (10_000, 600.0)
#: Seconds added to the window for clock granularity (places are freed by completion time).
WINDOW_MARGIN_S = 0.05


class Pacer:
    """At most ``concurrent`` places in use per mailbox (a ``$batch`` takes one per inner
    request Graph runs at once, up to 4), at most ``window[0]`` requests
    (inner ``$batch`` requests each counted) in any ``window[1]`` seconds; after a 429
    everybody waits.

    Keeping to the window on the client side is what makes a bulk load run at the
    throttle-limited rate without a storm of 429s (each of which costs a ``Retry-After``
    wait and a re-send). A request holds its places from the moment it leaves until its
    answer is back, and then for one window from that answer: the server counted it at
    some moment in between, so its place is surely free again when the pacer re-uses it.
    Shared by every client of the same mailbox in this process (see :func:`pacer_for`), so
    parallel loads of one user cannot exceed Graph's per-mailbox limit between them.
    """

    def __init__(
        self,
        concurrent: int = MAX_CONCURRENT,
        spacing_s: float = 0.05,
        window: tuple[int, float] | None = None,
    ) -> None:
        self.concurrent = concurrent
        self.spacing_s = spacing_s
        self.window_limit, self.window_s = window or MAILBOX_WINDOW
        self._lock = threading.Lock()
        self._places_free = threading.Condition(self._lock)
        self._places = 0  # concurrent places held (a $batch holds up to 4, one per running inner request)
        self._not_before = 0.0
        self._spaced_until = 0.0
        self._next_slot = 0.0
        self._done: deque[float] = deque()  # answer time of each counted request in the window
        self._in_flight = 0  # places held by requests not answered yet

    def _window_wait(self, now: float, weight: int) -> float:
        """Seconds until ``weight`` more requests fit in the window (lock held)."""
        horizon = self.window_s + WINDOW_MARGIN_S
        done = self._done
        while done and done[0] <= now - horizon:
            done.popleft()
        weight = min(weight, self.window_limit)
        over = len(done) + self._in_flight + weight - self.window_limit
        if over <= 0:
            return 0.0
        if over <= len(done):
            return max(0.0, done[over - 1] + horizon - now)
        return 0.05  # places held by requests in flight: look again shortly

    def places_for(self, weight: int) -> int:
        """Concurrent places a request of ``weight`` inner requests takes at Graph.

        Graph runs up to 4 requests of a ``$batch`` at once, each in one of the mailbox's
        4 places (spec/GRAPH_API.md, "Batches run in parallel inside"): a batch of 20
        takes all 4, so two batches in flight would overrun the mailbox.
        """
        return max(1, min(weight, self.concurrent))

    @contextmanager
    def slot(self, weight: int = 1) -> Iterator[None]:
        """Hold the concurrent places of a request counting ``weight`` in the window."""
        places = self.places_for(weight)
        with self._places_free:
            while self._places + places > self.concurrent:
                self._places_free.wait()
            self._places += places
        try:
            while True:
                with self._lock:
                    now = time.monotonic()
                    start = max(now, self._not_before, now + self._window_wait(now, weight))
                    if start <= now:
                        if now < self._spaced_until:
                            start = max(now, self._next_slot)
                            self._next_slot = start + self.spacing_s
                        self._in_flight += weight
                        break
                time.sleep(start - now)
            if start > now:
                time.sleep(start - now)
            try:
                yield
            finally:
                with self._lock:
                    self._in_flight -= weight
                    self._done.extend([time.monotonic()] * weight)
        finally:
            with self._places_free:
                self._places -= places
                self._places_free.notify_all()

    def throttled(self, retry_after: float) -> None:
        """A 429: hold every request of this mailbox for ``retry_after``, then space them."""
        with self._lock:
            now = time.monotonic()
            self._not_before = max(self._not_before, now + retry_after)
            self._spaced_until = max(self._spaced_until, self._not_before + 10.0)


_PACERS: dict[str, Pacer] = {}
_PACERS_LOCK = threading.Lock()


def pacer_for(base_url: str, mailbox: str, concurrent: int = MAX_CONCURRENT) -> Pacer:
    """The process-wide pacer of one mailbox."""
    key = f"{base_url.lower()}|{mailbox.lower()}"
    with _PACERS_LOCK:
        pacer = _PACERS.get(key)
        if pacer is None or pacer.concurrent != concurrent:
            pacer = _PACERS[key] = Pacer(concurrent)
        return pacer


# --- retry policy ----------------------------------------------------------------------
@dataclass
class RetryPolicy:
    """Bounded retrying: a request is given up once retrying it would take longer than
    ``max_wait_s`` from its first failure (waits, timeouts and attempts included)."""

    max_wait_s: float = 120.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (attempt 1, 2, ...)."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def _is_transient(status: int) -> bool:
    return status == 429 or status >= 500


# --- the O365 extension ----------------------------------------------------------------
class GraphProtocol(MSGraphProtocol):
    """MSGraphProtocol at a configurable base URL (its constructor refuses ``protocol_url``)."""

    def __init__(self, graph_url: str) -> None:
        root, _, version = graph_url.rstrip("/").rpartition("/")
        self._protocol_url = root + "/"
        super().__init__(api_version=version, timezone="UTC")


class GraphConnection(Connection):
    """O365's Connection with bounded retries of every method, pacing, $batch and paging."""

    def __init__(
        self,
        credentials: tuple[str, str],
        *,
        pacer: Pacer,
        policy: RetryPolicy,
        batch_url: str,
        fixed_token: bool,
        request_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        kwargs["requests_delay"] = 0  # O365 sleeps 200 ms per request otherwise
        kwargs["request_retries"] = 0  # our loop retries; urllib3 must not retry as well
        super().__init__(credentials, **kwargs)
        self.pacer = pacer
        self.policy = policy
        self.batch_url = batch_url
        self.request_timeout = request_timeout
        self._fixed_token = fixed_token
        self._token_lock = threading.Lock()
        self.default_headers = {"Prefer": PREFER_IMMUTABLE}

    def __repr__(self) -> str:
        return f"GraphConnection(client_id={self.auth[0]!r}, tenant={self.tenant_id!r})"

    # -- auth ---------------------------------------------------------------------------
    def _bearer(self) -> str:
        if self._fixed_token:
            return self.token_backend.get_access_token()["secret"]
        with self._token_lock:  # MSAL answers from its cache until the token nears expiry
            try:
                result = self.msal_client.acquire_token_for_client(scopes=[GRAPH_SCOPE])
            except requests.RequestException as exc:
                raise TransientError(
                    f"the identity platform could not be reached: {type(exc).__name__}"
                ) from None
        if "access_token" not in result:
            raise FatalError(
                f"no Graph access token for client {self.auth[0]!r}: {result.get('error')}",
                hint="check outlook.tenant_id, client_id and client_secret, and that the "
                "app has the Contacts.ReadWrite application permission",
            )
        return result["access_token"]

    def get_session(self, load_token: bool = False) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = self.verify_ssl
        session.proxies = self.proxy
        return session

    def oauth_request(self, url: str, method: str, **kwargs: Any) -> requests.Response:
        if self.session is None:
            self.session = self.get_session()
        return self._internal_request(self.session, url, method, **kwargs)

    # -- one request, retried -----------------------------------------------------------
    def _internal_request(  # one retry loop, kept in one place on purpose
        self,
        session_obj: requests.Session,
        url: str,
        method: str,
        ignore40x: bool = False,
        *,
        retry: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        method = method.lower()
        if method not in self._allowed_methods:
            raise ValueError(f"Method must be one of: {self._allowed_methods}")
        headers = dict(kwargs.pop("headers", None) or {})
        prefer = [v for v in (headers.pop("Prefer", None), self.default_headers.get("Prefer")) if v]
        if prefer:
            headers["Prefer"] = ", ".join(dict.fromkeys(prefer))
        data = kwargs.pop("data", None)
        if method in ("post", "put", "patch") and data is not None:
            headers.setdefault("Content-Type", "application/json")
            kwargs["data"] = json.dumps(data, cls=self.json_encoder) if not isinstance(data, (str, bytes)) else data
        kwargs.setdefault("timeout", self.request_timeout)
        # A $batch counts once per inner request in Graph's window (spec/GRAPH_API.md).
        weight = len(data["requests"]) if url == self.batch_url and isinstance(data, dict) and data.get("requests") else 1
        first_failure: float | None = None  # the budget runs from the first failure
        attempt = 0
        while True:
            attempt += 1
            headers["Authorization"] = f"Bearer {self._bearer()}"
            status: int | None = None
            retry_after: float | None = None
            with self.pacer.slot(weight):
                try:
                    log.debug("Graph %s %s (attempt %d)", method.upper(), url, attempt)
                    response = session_obj.request(method, url, headers=headers, **kwargs)
                except requests.RequestException as exc:
                    response = None
                    reason = f"no answer ({type(exc).__name__})"
            if response is not None:
                status = response.status_code
                if status < 400:
                    return response
                retry_after = _retry_after(response.headers)
                try:
                    body = response.json()
                except ValueError:
                    body = None
                code, message = _error_of(body)
                if not _is_transient(status):
                    raise GraphRequestError(method, url, status, code, message)
                reason = f"{status} {code}".strip()
                if status == 429:
                    self.pacer.throttled(retry_after if retry_after is not None else 1.0)
            if not retry:
                raise GraphTransientError(
                    f"{method.upper()} {url}: {reason}", status=status, retry_after=retry_after
                )
            wait = retry_after if retry_after is not None else self.policy.backoff(attempt)
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            if now - first_failure + wait > self.policy.max_wait_s:
                raise SideUnreachable(
                    f"Microsoft Graph did not answer {method.upper()} {url} after {attempt} "
                    f"attempts in {now - first_failure:.1f} s (last: {reason})",
                    hint="check the network and Graph's service health; the next cycle "
                    "resumes where this one stopped",
                )
            log.info("Graph %s %s: %s; retrying in %.2f s", method.upper(), url, reason, wait)
            time.sleep(wait)

    # -- $batch ---------------------------------------------------------------------------
    def batch(
        self,
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
            inner = _inner_request(req, self.batch_url.rsplit("/", 1)[0])
            pending[inner["id"]] = inner
        final: dict[str, dict] = {}
        ambiguous: set[str] = set()
        first_failure: float | None = None  # the budget runs from the first failure
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
                response = self._internal_request(
                    self.session or self._new_session(),
                    self.batch_url,
                    "post",
                    data={"requests": list(pending.values())},
                    retry=False,
                )
                answers = response.json().get("responses", [])
            except GraphTransientError as exc:
                outer_failed = True
                answers = []
                if exc.status != 429:  # no clear answer: any write in it may have committed
                    ambiguous.update(i for i, r in pending.items() if r["method"] != "GET")
                wait = exc.retry_after or 0.0
            seen: set[str] = set()
            for answer in answers:
                rid = str(answer.get("id"))
                if rid not in pending:
                    continue
                seen.add(rid)
                status = int(answer.get("status", 0))
                if _is_transient(status):
                    if status != 429 and pending[rid]["method"] != "GET":
                        ambiguous.add(rid)
                    wait = max(wait, _retry_after(answer.get("headers")) or 0.0)
                    if status == 429:  # the mailbox is throttled: every request waits, not just this batch
                        self.pacer.throttled(_retry_after(answer.get("headers")) or 1.0)
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
            wait = wait or self.policy.backoff(attempt)
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            if now - first_failure + wait > self.policy.max_wait_s:
                if outer_failed:
                    raise SideUnreachable(
                        f"Microsoft Graph did not answer a $batch of {len(pending)} request(s) "
                        f"after {attempt} attempts in {now - first_failure:.1f} s",
                        hint="check the network and Graph's service health; the next cycle "
                        "resumes where this one stopped",
                    )
                for rid in pending:
                    final.setdefault(rid, {"id": rid, "status": 503, "headers": {}, "body": None})
                    final[rid]["ambiguous"] = rid in ambiguous
                break
            log.info("$batch: %d inner request(s) to re-send in %.2f s", len(pending), wait)
            time.sleep(wait)
        order = [str(_inner_id(r)) for r in requests_]
        return [final[rid] for rid in order]

    def _new_session(self) -> requests.Session:
        self.session = self.get_session()
        return self.session


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


class GraphAccount(Account):
    """O365 Account whose connection is :class:`GraphConnection`."""

    connection_constructor = GraphConnection
