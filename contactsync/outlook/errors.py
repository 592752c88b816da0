"""What Graph's answers mean to the sync: fatal (4xx), worth retrying (429, 5xx, none), or a token.

Kept apart from the transport so the writer, the extract and the ``$batch`` room classify
answers the same way (STYLE.md: retriable vs fatal vs skippable).
"""

from __future__ import annotations

from typing import Any

from contactsync.errors import FatalError, TransientError


def error_of(body: Any) -> tuple[str, str]:
    """(code, message) of Graph's ``{"error": {...}}`` body, or empty strings."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("code", "")), str(err.get("message", ""))
    return "", ""


def retry_after(headers: Any) -> float | None:
    """Seconds of a ``Retry-After`` header (any letter case), if there is a usable one."""
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def is_transient(status: int) -> bool:
    return status == 429 or status >= 500


class GraphRequestError(FatalError):
    """Graph answered a 4xx other than 429: re-sending the same request will not help."""

    def __init__(self, method: str, url: str, status: int, code: str, message: str) -> None:
        super().__init__(
            f"Graph answered {status} {code or ''} to {method.upper()} {url}: {message}".strip(),
            hint="check the request's record and the mailbox permissions (Contacts.ReadWrite)",
        )
        self.status = status
        self.code = code
        self.message = message


class GraphTransientError(TransientError):
    """One attempt got 429, 5xx or no answer (raised only when retries are off)."""

    def __init__(self, message: str, *, status: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class CredentialsRefused(FatalError):
    """Graph refused the access token (401) even after a fresh one was fetched."""

    def __init__(self, method: str, url: str, code: str, message: str) -> None:
        super().__init__(
            f"Graph refused the access token to {method.upper()} {url} (401 {code}: {message}), "
            "also after a fresh token was fetched",
            hint="check the credentials: outlook.tenant_id, client_id and client_secret (or "
            "outlook.token), and that the app still has the Contacts.ReadWrite permission",
        )
