"""A Microsoft Graph client for one mailbox, built on the O365 library.

O365 gives us the account, the protocol, token backends, MSAL client credentials and the
contact-folder objects; the transport rooms add what a sync needs and O365 lacks: auth
(``auth``: tokens, refreshed on a 401), pacing (``pacing``), retries against one deadline
(``retries``), ``$batch`` (``batch``), all over one session (``transport``). This module
puts them together for one mailbox, from :class:`~contactsync.config.OutlookSettings`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import orjson
from O365.utils.token import BaseTokenBackend, MemoryTokenBackend

from contactsync.config import OutlookSettings
from contactsync.errors import ConfigError
from contactsync.outlook.auth import GRAPH_SCOPE, FixedTokenBackend, TokenSource
from contactsync.outlook.batch import BATCH_LIMIT, ResolveAmbiguous, send_batch
from contactsync.outlook.connection import GraphAccount, GraphConnection, GraphProtocol
from contactsync.outlook.errors import CredentialsRefused, GraphRequestError, GraphTransientError
from contactsync.outlook.pacing import MAX_CONCURRENT, Pacer, pacer_for
from contactsync.outlook.retries import RetryPolicy
from contactsync.outlook.transport import PREFER_IMMUTABLE, GraphSession, new_session

__all__ = [
    "BATCH_LIMIT",
    "GRAPH_SCOPE",
    "MAX_CONCURRENT",
    "PREFER_IMMUTABLE",
    "CredentialsRefused",
    "FixedTokenBackend",
    "GraphClient",
    "GraphConnection",
    "GraphRequestError",
    "GraphTransientError",
    "Pacer",
    "RetryPolicy",
    "split_graph_url",
]


# --- the client --------------------------------------------------------------------------
def split_graph_url(graph_url: str) -> tuple[str, str | None]:
    """``https://host/v1.0[/users/{upn}]`` -> (base ending in the version, mailbox or None)."""
    url = graph_url.rstrip("/")
    parts = urlsplit(url)
    segments = parts.path.split("/")
    if len(segments) >= 3 and segments[-2] == "users":
        mailbox = unquote(segments[-1])
        base = url[: url.rfind("/users/")]
        return base, mailbox
    return url, None


class GraphClient:
    """Graph access to one mailbox: plain JSON calls, ``$batch``, delta paging, O365 objects."""

    def __init__(
        self,
        settings: OutlookSettings,
        mailbox: str | None = None,
        *,
        max_wait_s: float = 120.0,
        backoff_base_s: float = 0.5,
        concurrent: int = MAX_CONCURRENT,
        request_timeout: float = 60.0,
    ) -> None:
        base, url_mailbox = split_graph_url(settings.graph_url)
        mailbox = (mailbox or url_mailbox or "").strip()
        if not mailbox:
            raise ConfigError(
                "no mailbox given for the Graph client",
                hint="configure [[users]] mailbox, or a graph_url ending in /users/{upn}",
            )
        self.base_url = base
        self.mailbox = mailbox
        self.user_path = f"/users/{quote(mailbox, safe='')}"
        token = settings.token.get_secret_value()
        if token:
            backend: BaseTokenBackend = FixedTokenBackend(settings.token)
            credentials = (settings.client_id or "contact-sync", "")
            tenant = settings.tenant_id or "fixed-token"
        else:
            missing = [
                k
                for k, v in (
                    ("tenant_id", settings.tenant_id),
                    ("client_id", settings.client_id),
                    ("client_secret", settings.client_secret.get_secret_value()),
                )
                if not v
            ]
            if missing:
                raise ConfigError(
                    f"Outlook credentials incomplete: {', '.join('outlook.' + m for m in missing)} not set",
                    hint="set them (the secret best as CONTACT_SYNC_OUTLOOK__CLIENT_SECRET), "
                    "or outlook.token for the emulator",
                )
            backend = MemoryTokenBackend()
            credentials = (settings.client_id, settings.client_secret.get_secret_value())
            tenant = settings.tenant_id
        self.pacer = pacer_for(base, mailbox, concurrent)
        #: The side's retry budget lives here, in the per-cycle client: a Prefect task
        #: retried with the same client meets the same deadline (outlook.retries).
        self.policy = RetryPolicy(max_wait_s=max_wait_s, backoff_base_s=backoff_base_s,
                                  read_timeout_s=request_timeout)
        self.account = GraphAccount(
            credentials,
            protocol=GraphProtocol(base),
            main_resource=self.user_path.lstrip("/"),
            auth_flow_type="credentials",
            tenant_id=tenant,
            token_backend=backend,
        )
        self.con: GraphConnection = self.account.con
        con = self.con
        self.session = GraphSession(
            tokens=TokenSource(fixed=settings.token if token else None, msal=lambda: con.msal_client,
                               client_id=credentials[0]),
            pacer=self.pacer,
            policy=self.policy,
            batch_url=f"{base}/$batch",
            session=new_session(con.verify_ssl, con.proxy),
            json_encoder=con.json_encoder,
        )
        self.session.default_headers = con.default_headers
        con.graph = self.session

    def __repr__(self) -> str:
        return f"GraphClient(base_url={self.base_url!r}, mailbox={self.mailbox!r})"

    # -- URLs ---------------------------------------------------------------------------
    def path(self, rel: str) -> str:
        """Mailbox-relative path -> path relative to the base (``/users/{upn}/...``)."""
        return f"{self.user_path}/{rel.lstrip('/')}"

    def url(self, rel: str) -> str:
        """Mailbox-relative path -> absolute URL."""
        return f"{self.base_url}{self.path(rel)}"

    # -- JSON calls -----------------------------------------------------------------------
    def get_json(self, url: str, *, params: dict | None = None, headers: dict | None = None) -> dict:
        """GET an absolute URL (or a mailbox-relative path) and return its JSON."""
        response = self.session.request("get", self._abs(url), params=params, headers=headers)
        return orjson.loads(response.content)  # half json's CPU on 100,000-contact reads (issue 15)

    def post_json(self, url: str, body: dict, *, retry: bool = True) -> dict:
        response = self.session.request("post", self._abs(url), data=body, retry=retry)
        return response.json() if response.content else {}

    def patch_json(self, url: str, body: dict) -> dict:
        response = self.session.request("patch", self._abs(url), data=body)
        return response.json() if response.content else {}

    def delete(self, url: str) -> None:
        self.session.request("delete", self._abs(url))

    def batch(self, requests_: Sequence[dict], *, resolve_ambiguous: ResolveAmbiguous | None = None) -> list[dict]:
        """See :func:`~contactsync.outlook.batch.send_batch`; inner URLs may be mailbox paths from :meth:`path`."""
        return send_batch(self.session, requests_, resolve_ambiguous=resolve_ambiguous)

    def iter_pages(
        self, url: str, *, params: dict | None = None, page_size: int | None = None
    ) -> Iterator[dict]:
        """Follow ``@odata.nextLink`` (absolute) from ``url``; yield each page's JSON.

        Delta pages are sized with ``Prefer: odata.maxpagesize`` (Graph rejects ``$top``
        on delta); the last page carries ``@odata.deltaLink``.

        The pages are a chain (each link comes with the page before it), so the next one
        is asked for as soon as its link is known, before the caller works through this
        one: a chain of 8 delta pages at 100 ms each no longer waits for the parsing of
        each page in between (issue 12, bench/graph_limits.py). A failure of the next page
        is raised where the caller asks for it, after this page, as before.
        """
        headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else None
        page = self.get_json(self._abs(url), params=params, headers=dict(headers or {}))
        with ThreadPoolExecutor(1, thread_name_prefix="graph-pages") as pool:
            while True:
                link = page.get("@odata.nextLink")
                ahead = None if not link else pool.submit(
                    contextvars.copy_context().run, self.get_json, link, headers=dict(headers or {}))
                yield page
                if ahead is None:
                    return
                page = ahead.result()

    def address_book(self) -> Any:
        """O365's personal address book of the mailbox (folder listing and creation)."""
        return self.account.address_book(resource=self.user_path.lstrip("/"))

    def _abs(self, url: str) -> str:
        if url.startswith(("http://", "https://")):
            return url
        if url.startswith("/users/"):
            return f"{self.base_url}{url}"
        return self.url(url)
