"""One session to Graph: every request of a mailbox's client goes through :class:`GraphSession`.

It puts the rooms together over one ``requests.Session``: the bearer token
(:mod:`~contactsync.outlook.auth`, refreshed once on a 401), the mailbox's pacing
(:mod:`~contactsync.outlook.pacing`), and bounded retries against the side's deadline
(:mod:`~contactsync.outlook.retries`). O365's own objects (the folder lookups) reach it
through the public ``Connection.oauth_request`` (:mod:`~contactsync.outlook.connection`).

Errors: a 4xx other than 429 raises :class:`GraphRequestError` (a ``FatalError``); 429,
5xx and no answer are retried honouring ``Retry-After`` within the deadline, then
:class:`~contactsync.errors.SideUnreachable`; a 401 that persists after a fresh token
raises :class:`CredentialsRefused`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from contactsync.outlook.auth import TokenSource
from contactsync.outlook.errors import (
    CredentialsRefused,
    GraphRequestError,
    GraphTransientError,
    error_of,
    is_transient,
    retry_after,
)
from contactsync.outlook.pacing import Pacer
from contactsync.outlook.retries import RetryPolicy, retrying

log = logging.getLogger(__name__)

#: Ask for ids that survive moves between folders (spec/GRAPH_API.md: Ids).
PREFER_IMMUTABLE = 'IdType="ImmutableId"'


def new_session(verify: bool | str = True, proxies: dict | None = None) -> requests.Session:
    """A pooled session; urllib3 never retries behind the deadline."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.verify = verify
    if proxies:
        session.proxies = proxies
    return session


class GraphSession:
    """Requests to one mailbox: token, pacing, retries, over one ``requests.Session``."""

    def __init__(self, *, tokens: TokenSource, pacer: Pacer, policy: RetryPolicy, batch_url: str,
                 session: requests.Session | None = None, json_encoder: type[json.JSONEncoder] | None = None) -> None:
        self.tokens = tokens
        self.pacer = pacer
        self.policy = policy
        self.batch_url = batch_url
        self.http = session or new_session()
        self.json_encoder = json_encoder
        self.default_headers = {"Prefer": PREFER_IMMUTABLE}

    def __repr__(self) -> str:
        return f"GraphSession(batch_url={self.batch_url!r}, tokens={self.tokens!r})"

    def request(self, method: str, url: str, *, data: Any = None, headers: dict | None = None,
                params: dict | None = None, retry: bool = True, **kwargs: Any) -> requests.Response:
        """One request; retried within the deadline unless ``retry`` is False (then one
        transient failure raises :class:`GraphTransientError`)."""
        method = method.lower()
        headers = dict(headers or {})
        prefer = [v for v in (headers.pop("Prefer", None), self.default_headers.get("Prefer")) if v]
        if prefer:
            headers["Prefer"] = ", ".join(dict.fromkeys(prefer))
        if method in ("post", "put", "patch") and data is not None:
            headers.setdefault("Content-Type", "application/json")
            kwargs["data"] = data if isinstance(data, (str, bytes)) else json.dumps(data, cls=self.json_encoder)
        if params is not None:
            kwargs["params"] = params
        # A $batch counts once per inner request in Graph's window and takes up to 4 places.
        inner = data.get("requests") if url == self.batch_url and isinstance(data, dict) else None
        weight = len(inner) if inner else 1
        what = f"{method.upper()} {url}"
        attempts = [0]

        def once() -> requests.Response:
            attempts[0] += 1
            return self._send(method, url, headers, weight, attempts[0], kwargs)

        if not retry:
            return once()
        return retrying(self.policy, what, once)

    def _send(self, method: str, url: str, headers: dict, weight: int, attempt: int,
              kwargs: dict[str, Any]) -> requests.Response:
        """One attempt (and, after a 401, one more with a fresh token)."""
        for fresh in (False, True):
            headers["Authorization"] = f"Bearer {self.tokens.bearer()}"
            sent = time.monotonic()
            with self.pacer.slot(weight):
                try:
                    log.debug("Graph %s %s (attempt %d)", method.upper(), url, attempt)
                    response = self.http.request(
                        method, url, headers=headers, timeout=kwargs.get("timeout") or self.policy.timeout(),
                        **{k: v for k, v in kwargs.items() if k != "timeout"})
                except requests.RequestException as exc:
                    self.policy.deadline.failed(sent)
                    raise GraphTransientError(f"{method.upper()} {url}: no answer ({type(exc).__name__})",
                                              status=None, retry_after=None) from None
            status = response.status_code
            if status < 400:
                self.policy.deadline.succeeded()
                return response
            try:
                body = response.json()
            except ValueError:
                body = None
            code, message = error_of(body)
            if status == 401:
                if fresh:
                    raise CredentialsRefused(method, url, code, message)
                log.info("Graph %s %s: 401 %s; fetching a fresh token", method.upper(), url, code)
                self.tokens.refresh()
                continue
            if not is_transient(status):
                self.policy.deadline.succeeded()  # Graph answered: the side is reachable
                raise GraphRequestError(method, url, status, code, message)
            self.policy.deadline.failed(sent)
            wait = retry_after(response.headers)
            if status == 429:
                self.pacer.throttled(wait if wait is not None else 1.0)
            raise GraphTransientError(f"{method.upper()} {url}: {status} {code}".strip(),
                                      status=status, retry_after=wait)
        raise AssertionError("unreachable")  # pragma: no cover
