"""Auth: the bearer token of every Graph request, fixed or from MSAL, refreshed on a 401.

An app-only token lives about an hour; a request with an expired one gets 401
``InvalidAuthenticationToken`` ("Lifetime validation failed, the token is expired.",
spec/GRAPH_API.md "Tokens expire mid-run"). :class:`TokenSource` then fetches a fresh
one: MSAL refuses ``force_refresh`` for client credentials, so the cached access tokens
are dropped from its cache (its public ``TokenCache`` API) and it is asked again. A fixed
token (the emulator's) is simply sent again once. Secrets never reach a log or a repr.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import requests
from O365.utils.token import BaseTokenBackend
from pydantic import SecretStr

from contactsync.errors import FatalError, TransientError

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


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


class TokenSource:
    """The bearer token: ``fixed`` (a configured one) or MSAL client credentials.

    ``msal`` returns the MSAL ConfidentialClientApplication (O365 makes it from the
    configured tenant, client id and secret, on first use).
    """

    def __init__(self, *, fixed: SecretStr | None, msal: Callable[[], Any], client_id: str) -> None:
        self._fixed = fixed
        self._msal = msal
        self._client_id = client_id
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenSource(client_id={self._client_id!r}, fixed={self._fixed is not None})"

    def bearer(self) -> str:
        if self._fixed is not None:
            return self._fixed.get_secret_value()
        with self._lock:  # MSAL answers from its cache until the token nears expiry
            try:
                result = self._msal().acquire_token_for_client(scopes=[GRAPH_SCOPE])
            except requests.RequestException as exc:
                raise TransientError(
                    f"the identity platform could not be reached: {type(exc).__name__}"
                ) from None
        if "access_token" not in result:
            raise FatalError(
                f"no Graph access token for client {self._client_id!r}: {result.get('error')}",
                hint="check outlook.tenant_id, client_id and client_secret, and that the "
                "app has the Contacts.ReadWrite application permission",
            )
        return str(result["access_token"])

    def refresh(self) -> None:
        """Forget the cached token, so the next :meth:`bearer` fetches a fresh one."""
        if self._fixed is not None:
            return
        with self._lock:
            cache = getattr(self._msal(), "token_cache", None)
            if cache is None:
                return
            for token in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(token)
