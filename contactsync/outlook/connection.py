"""O365 wired to the sync's transport: protocol at any base URL, connection, account.

O365 gives the account, the protocol and the contact-folder objects; its ``Connection``
retries only GET/PUT/DELETE, sleeps 200 ms before every request and has no ``$batch``
(spec/GRAPH_API.md, "as found"). :class:`GraphConnection` overrides only O365's public
``oauth_request`` and ``get_session``: every request of O365's own objects goes through
the client's :class:`~contactsync.outlook.transport.GraphSession` and its one
``requests.Session`` (token, pacing, retries), none of O365's private methods.
"""

from __future__ import annotations

from typing import Any

import requests
from O365 import Account
from O365.connection import Connection, MSGraphProtocol

from contactsync.outlook.auth import FixedTokenBackend
from contactsync.outlook.transport import PREFER_IMMUTABLE, GraphSession

__all__ = ["FixedTokenBackend", "GraphAccount", "GraphConnection", "GraphProtocol"]  # FixedTokenBackend: bench/baseline.py


class GraphProtocol(MSGraphProtocol):
    """MSGraphProtocol at a configurable base URL (its constructor refuses ``protocol_url``)."""

    def __init__(self, graph_url: str) -> None:
        root, _, version = graph_url.rstrip("/").rpartition("/")
        self._protocol_url = root + "/"
        super().__init__(api_version=version, timezone="UTC")


class GraphConnection(Connection):
    """O365's Connection whose requests go through a :class:`GraphSession` (set as ``graph``)."""

    def __init__(self, credentials: tuple[str, str], **kwargs: Any) -> None:
        kwargs["requests_delay"] = 0  # O365 sleeps 200 ms per request otherwise
        kwargs["request_retries"] = 0  # the session retries; urllib3 must not retry as well
        super().__init__(credentials, **kwargs)
        self.default_headers = {"Prefer": PREFER_IMMUTABLE}
        self.graph: GraphSession | None = None

    def __repr__(self) -> str:
        return f"GraphConnection(client_id={self.auth[0]!r}, tenant={self.tenant_id!r})"

    def get_session(self, load_token: bool = False) -> requests.Session:
        """The client's one session (O365 would make its own, with its own retries)."""
        if self.graph is None:
            raise RuntimeError("GraphConnection used before its GraphSession was set")
        return self.graph.http

    def oauth_request(self, url: str, method: str, **kwargs: Any) -> requests.Response:
        """Every O365 request: through the session's token, pacing and retries."""
        if self.graph is None:
            raise RuntimeError("GraphConnection used before its GraphSession was set")
        return self.graph.request(method, url, **kwargs)


class GraphAccount(Account):
    """O365 Account whose connection is :class:`GraphConnection`."""

    connection_constructor = GraphConnection
